"""Exceptioner API v1 over real HTTP, a real stream, a real worker step and real PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def notice(
    exception: str = "RuntimeError",
    message: str = "Run Forrest, run!",
    mode: str = "production",
    backtrace: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "message": f"{exception}: {message}",
        "error": {
            "exception": exception,
            "backtrace": backtrace
            if backtrace is not None
            else [
                "[PROJECT_ROOT]/app/controllers/home_controller.rb:7:in `run'",
                "/usr/lib/ruby/gems/2.7.0/gems/actionpack-6.0/lib/abstract_controller/base.rb:195:in `process'",
            ],
            "parameters": {"controller": "home", "action": "run"},
            "session": {"key": "value"},
            "environment": {"HTTP_USER_AGENT": "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1"},
            "file": "[PROJECT_ROOT]/app/controllers/home_controller.rb",
            "mode": mode,
        },
    }


async def post(gateway: TestClient, key: str, body: Any) -> tuple[int, Any]:
    resp = await gateway.post("/v1/notices", json=body, headers={"Api-Key": key})
    return resp.status, await resp.json()


async def test_post_notice_answers_201_with_the_real_error_id(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    status, body = await post(gateway, project.key, notice())
    assert status == 201
    assert set(body) == {"id", "error_id", "message", "created_at", "updated_at"}
    assert body["message"] == "RuntimeError: Run Forrest, run!"
    assert STAMP.match(body["created_at"]) and STAMP.match(body["updated_at"])
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{body['error_id']}", headers={"Api-Key": user_token})
    assert resp.status == 200
    error = await resp.json()
    assert error["id"] == body["error_id"]
    assert error["exception"] == "RuntimeError"
    assert error["mode"] == "production"
    assert error["notices_count"] == 1
    assert error["parameters"] == {"controller": "home", "action": "run"}
    assert error["session"] == {"key": "value"}
    assert error["environment"]["HTTP_USER_AGENT"].startswith("Mozilla/4.0")
    assert error["backtrace"][0] == "[PROJECT_ROOT]/app/controllers/home_controller.rb:7:in `run'"
    assert re.fullmatch(r"[0-9a-f]{40}", error["fingerprint"])
    assert error["resolved"] is False and error["project_id"] == project.id

    resp = await query.get(
        f"/v1/errors/{body['error_id']}/notices/{body['id']}", headers={"Api-Key": user_token}
    )
    assert resp.status == 200
    stored = await resp.json()
    assert stored["id"] == body["id"] and stored["error_id"] == body["error_id"]
    assert stored["message"] == body["message"] and stored["created_at"] == body["created_at"]


async def test_moved_lines_group_together_and_a_new_class_does_not(
    gateway, query, consumer, project, user_token
):
    _, first = await post(gateway, project.key, notice())
    moved = notice(
        message="other text",
        backtrace=[
            "[PROJECT_ROOT]/app/controllers/home_controller.rb:42:in `run'",
            "/usr/lib/ruby/gems/2.7.0/gems/actionpack-6.0/lib/abstract_controller/base.rb:200:in `process'",
        ],
    )
    _, second = await post(gateway, project.key, moved)
    _, third = await post(gateway, project.key, notice(exception="ArgumentError"))
    _, staging = await post(gateway, project.key, notice(mode="staging"))
    assert first["error_id"] == second["error_id"]
    assert len({first["error_id"], third["error_id"], staging["error_id"]}) == 3
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{first['error_id']}", headers={"Api-Key": user_token})
    assert (await resp.json())["notices_count"] == 2


async def test_list_errors_resolve_and_reopen(gateway, query, consumer, project, user_token):
    auth = {"Api-Key": user_token}
    _, a = await post(gateway, project.key, notice(exception="AError"))
    _, b = await post(gateway, project.key, notice(exception="BError"))
    await drain(consumer)
    resp = await query.get(f"/v1/errors?project_id={project.id}", headers=auth)
    assert resp.status == 200
    listed = await resp.json()
    assert [e["id"] for e in listed] == [b["error_id"], a["error_id"]]  # most recent first
    assert {
        "id",
        "exception",
        "fingerprint",
        "file",
        "mode",
        "created_at",
        "updated_at",
        "notices_count",
        "most_recent_notice_at",
        "resolved",
    } <= set(listed[0])

    resp = await query.patch(f"/v1/errors/{a['error_id']}", json={"resolved": True}, headers=auth)
    assert resp.status == 200 and (await resp.json())["resolved"] is True
    resp = await query.get(f"/v1/errors?project_id={project.id}", headers=auth)
    assert [e["id"] for e in await resp.json()] == [b["error_id"]]
    resp = await query.get(f"/v1/errors?project_id={project.id}&resolved=true", headers=auth)
    assert {e["id"] for e in await resp.json()} == {a["error_id"], b["error_id"]}

    # POST works like PATCH, as the seed allows.
    resp = await query.post(f"/v1/errors/{b['error_id']}", json={"resolved": True}, headers=auth)
    assert resp.status == 200 and (await resp.json())["resolved"] is True

    # A new notice reopens a resolved error.
    await post(gateway, project.key, notice(exception="AError"))
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{a['error_id']}", headers=auth)
    reopened = await resp.json()
    assert reopened["resolved"] is False and reopened["notices_count"] == 2
    assert reopened["regressed_at"] is not None


async def test_pagination_and_link_header(gateway, query, consumer, project, user_token):
    auth = {"Api-Key": user_token}
    ids = []
    for i in range(5):
        _, body = await post(gateway, project.key, notice(exception=f"Paged{i}Error"))
        ids.append(body["error_id"])
    for _ in range(4):
        await post(gateway, project.key, notice(exception="Paged0Error"))
    await drain(consumer)
    resp = await query.get(f"/v1/errors?project_id={project.id}&per_page=2&page=2", headers=auth)
    assert resp.status == 200
    page = await resp.json()
    assert len(page) == 2
    link = resp.headers["Link"]
    for rel, n in (("first", 1), ("prev", 1), ("next", 3), ("last", 3)):
        assert re.search(rf"<[^>]*[?&]page={n}&per_page=2[^>]*>; rel=\"{rel}\"", link), (rel, link)
    assert f"project_id={project.id}" in link

    resp = await query.get(f"/v1/errors/{ids[0]}/notices?per_page=2", headers=auth)
    notices = await resp.json()
    assert len(notices) == 2 and all(n["error_id"] == ids[0] for n in notices)
    assert 'rel="last"' in resp.headers["Link"] and "page=3" in resp.headers["Link"]

    resp = await query.get("/v1/errors?per_page=1000", headers=auth)
    assert resp.status == 200 and len(await resp.json()) <= 100
    for bad in ("page=0", "page=x", "per_page=-1"):
        resp = await query.get(f"/v1/errors?{bad}", headers=auth)
        assert resp.status == 422, bad
        assert (await resp.json())["errors"][0]["code"] == "invalid"


async def test_head_on_every_get_resource(gateway, query, consumer, project, user_token):
    auth = {"Api-Key": user_token}
    _, body = await post(gateway, project.key, notice())
    await drain(consumer)
    resp = await query.post(
        "/v1/deploys", json={"environment": "production", "project_id": project.id}, headers=auth
    )
    deploy = await resp.json()
    for path in (
        "/",
        "/healthz",
        "/v1/errors",
        f"/v1/errors/{body['error_id']}",
        f"/v1/errors/{body['error_id']}/notices",
        f"/v1/errors/{body['error_id']}/notices/{body['id']}",
        "/v1/deploys",
        f"/v1/deploys/{deploy['id']}",
    ):
        resp = await query.head(path, headers=auth)
        assert resp.status == 200, path
        assert await resp.read() == b""
    assert (await gateway.head("/")).status == 200


async def test_root_answers_empty_object(gateway, query):
    for client in (gateway, query):
        resp = await client.get("/")
        assert resp.status == 200 and await resp.json() == {}
        assert resp.content_type == "application/json"


async def test_deploys(query, project, user_token):
    auth = {"Api-Key": user_token}
    payload = {
        "environment": "production",
        "author": "pawelpacana",
        "repository": "git@github.com:drugpl/exceptioner-api.git",
        "revision": "e3b62dbc4e7b6301d37c591772d9aa76bd230cb6",
        "project_id": project.id,
    }
    resp = await query.post("/v1/deploys", json=payload, headers=auth)
    assert resp.status == 201
    created = await resp.json()
    assert {k: created[k] for k in ("environment", "author", "repository", "revision")} == {
        k: payload[k] for k in ("environment", "author", "repository", "revision")
    }
    assert STAMP.match(created["created_at"])
    resp = await query.get(f"/v1/deploys/{created['id']}", headers=auth)
    assert await resp.json() == created
    resp = await query.get(f"/v1/deploys?project_id={project.id}", headers=auth)
    assert [d["id"] for d in await resp.json()] == [created["id"]]

    resp = await query.post("/v1/deploys", json={"author": "x", "project_id": project.id}, headers=auth)
    assert resp.status == 422
    assert (await resp.json())["errors"] == [
        {"resource": "Deploy", "field": "environment", "code": "missing_field"}
    ]
    resp = await query.post("/v1/deploys", json={"environment": 7, "project_id": project.id}, headers=auth)
    assert resp.status == 422 and (await resp.json())["errors"][0]["code"] == "invalid"
    resp = await query.post("/v1/deploys", json={"environment": "x", "project_id": 999999}, headers=auth)
    assert resp.status == 422 and (await resp.json())["errors"][0]["code"] == "missing"
    resp = await query.get("/v1/deploys/999999", headers=auth)
    assert resp.status == 404


async def test_bad_input_gets_the_seed_answers(gateway, project):
    headers = {"Api-Key": project.key, "Content-Type": "application/json"}
    cases = [
        (b"{not json", 400, {"message": "Problems parsing JSON"}),
        (b"", 400, {"message": "Problems parsing JSON"}),
        (b"[1, 2]", 400, {"message": "Body should be a JSON Hash"}),
        (b'"text"', 400, {"message": "Body should be a JSON Hash"}),
        (
            b'{"message": "x"}',
            422,
            {
                "message": "Validation failed",
                "errors": [
                    {"resource": "Notice", "field": "error", "code": "missing_field"},
                    {"resource": "Error", "field": "exception", "code": "missing_field"},
                ],
            },
        ),
        (
            b'{"message": 5, "error": {"exception": "E"}}',
            422,
            {
                "message": "Validation failed",
                "errors": [{"resource": "Notice", "field": "message", "code": "invalid"}],
            },
        ),
        (
            b'{"message": "m", "error": {"exception": "E", "backtrace": "not a list"}}',
            422,
            {
                "message": "Validation failed",
                "errors": [{"resource": "Error", "field": "backtrace", "code": "invalid"}],
            },
        ),
        (
            b'{"message": "m", "error": {"exception": "E", "parameters": [1]}}',
            422,
            {
                "message": "Validation failed",
                "errors": [{"resource": "Error", "field": "parameters", "code": "invalid"}],
            },
        ),
    ]
    for raw, status, expected in cases:
        resp = await gateway.post("/v1/notices", data=raw, headers=headers)
        assert resp.status == status, raw
        assert await resp.json() == expected, raw


async def test_body_over_the_limit_is_413(gateway, project, settings):
    import io

    import orjson

    big = {"message": "E: x", "error": {"exception": "E", "parameters": {"blob": "x" * settings.max_body}}}
    resp = await gateway.post(
        "/v1/notices",
        data=io.BytesIO(orjson.dumps(big)),
        headers={"Api-Key": project.key, "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert "limit" in (await resp.json())["message"]


async def test_unknown_ids_are_404(query, user_token):
    auth = {"Api-Key": user_token}
    for path in (
        "/v1/errors/123",
        "/v1/errors/abc",
        "/v1/errors/123/notices",
        "/v1/errors/123/notices/01900000-0000-7000-8000-000000000000",
        "/v1/errors/123/notices/not-a-uuid",
        "/v1/deploys/0",
        "/v1/nothing",
    ):
        resp = await query.get(path, headers=auth)
        assert resp.status == 404, path
        assert "message" in await resp.json()
    resp = await query.patch("/v1/errors/123", json={"resolved": True}, headers=auth)
    assert resp.status == 404


async def test_credentials_and_scopes(gateway, query, consumer, project, user_token, pool):
    from tests.conftest import make_project, reload_keys

    other = await make_project(pool)
    await reload_keys(gateway, query)
    # Every credential form the contract names works for ingest.
    for kwargs in (
        {"headers": {"Api-Key": project.key}},
        {"headers": {"Authorization": f"Bearer {project.key}"}},
        {"params": {"api_key": project.key}},
        {"params": {"access_token": project.key}},
        {"params": {"auth_token": project.key}},
        {"params": {"key": project.key}},
    ):
        resp = await gateway.post("/v1/notices", json=notice(), **kwargs)
        assert resp.status == 201, kwargs
    # No credential: 401. Unknown: 401. A user token cannot ingest: 403.
    assert (await gateway.post("/v1/notices", json=notice())).status == 401
    assert (await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": "nope" * 8})).status == 401
    assert (await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": user_token})).status == 403
    # Reads: user token only.
    _, body = await post(gateway, other.key, notice())
    await drain(consumer)
    for path in ("/v1/errors", f"/v1/errors/{body['error_id']}", "/v1/deploys"):
        assert (await query.get(path)).status == 401
        assert (await query.get(path, headers={"Api-Key": "x" * 32})).status == 401
        assert (await query.get(path, headers={"Api-Key": project.key})).status == 403
        assert (await query.get(path, headers={"Api-Key": other.key})).status == 403
        assert (await query.get(path, params={"api_key": user_token})).status == 200
        assert (await query.get(path, headers={"Authorization": f"Bearer {user_token}"})).status == 200
    resp = await query.patch(
        f"/v1/errors/{body['error_id']}", json={"resolved": True}, headers={"Api-Key": other.key}
    )
    assert resp.status == 403
    # A user token sees every project, and every error carries its project_id.
    resp = await query.get("/v1/errors?per_page=100", headers={"Api-Key": user_token})
    assert {e["project_id"] for e in await resp.json()} >= {other.id}


async def test_revoked_key_stops_working(gateway, query, project, pool):
    from shared.keys import revoke
    from tests.conftest import reload_keys

    assert (await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})).status == 201
    async with pool.acquire() as conn:
        assert await revoke(conn, project.key)
    await reload_keys(gateway, query)
    assert (await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})).status == 401


async def test_patch_validation(gateway, query, consumer, project, user_token):
    auth = {"Api-Key": user_token, "Content-Type": "application/json"}
    _, body = await post(gateway, project.key, notice())
    await drain(consumer)
    path = f"/v1/errors/{body['error_id']}"
    assert (await query.patch(path, data=b"{", headers=auth)).status == 400
    assert (await query.patch(path, data=b"[]", headers=auth)).status == 400
    resp = await query.patch(path, data=b'{"resolved": "yes"}', headers=auth)
    assert resp.status == 422
    assert (await resp.json())["errors"] == [{"resource": "Error", "field": "resolved", "code": "invalid"}]
