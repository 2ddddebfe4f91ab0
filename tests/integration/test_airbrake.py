"""Airbrake v3 notices over real HTTP, a real stream, the worker step and PostgreSQL.

What was stored is read back through the query API. The real notifiers are driven in
test_sentry_airbrake_sdks.py.
"""

from __future__ import annotations

import gzip
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain, make_project, reload_keys
from tests.unit.test_airbrake_parse import NODE, PYBRAKE


def path(project_id: int) -> str:
    return f"/api/v3/projects/{project_id}/notices"


async def post(
    gateway: TestClient,
    project: ProjectInfo,
    body: Any,
    headers: dict[str, str] | None = None,
    query_string: str = "",
    project_id: int | None = None,
) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await gateway.post(
        path(project_id or project.id) + query_string,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return resp.status, await resp.json(), resp.headers


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_pybrake_notice_is_201_with_id_and_locate_url(
    gateway, query, consumer, project, user_token, settings
):
    status, body, _ = await post(gateway, project, PYBRAKE, bearer(project.key))
    assert status == 201 and set(body) == {"id", "url"}
    assert body["url"].startswith(f"{settings.public_url}/locate/")
    location_id = body["url"].rsplit("/", 1)[1]
    await drain(consumer)
    resp = await query.get(f"/api/locate/{location_id}", headers={"Api-Key": user_token})
    located = await resp.json()
    assert located["notice_id"] == body["id"] and located["protocol"] == "airbrake"
    resp = await query.get(f"/locate/{location_id}", allow_redirects=False)
    assert resp.status == 301
    error_id = located["error_id"]
    h = {"Api-Key": user_token}
    error = await (await query.get(f"/v1/errors/{error_id}", headers=h)).json()
    assert error["exception"] == "PaymentError" and error["message"] == "card declined for 42"
    assert error["mode"] == "production" and error["file"] == "/PROJECT_ROOT/shop.py"
    assert error["backtrace"] == [
        "/PROJECT_ROOT/shop.py:14:in `checkout`",
        "/PROJECT_ROOT/shop.py:19:in `run`",
    ]
    assert error["parameters"] == {"sys_executable": "/usr/bin/python3"} and error["session"] == {"cart": "3"}
    n = await (await query.get(f"/v1/errors/{error_id}/notices/{body['id']}", headers=h)).json()
    assert [e["type"] for e in n["exceptions"]] == ["PaymentError", "KeyError"]
    assert n["exceptions"][0]["frames"][0]["context_line"] == "        raise PaymentError(...) from e"
    assert n["hostname"] == "vm" and n["release"] == "abc123" and n["user"]["email"] == "u@x.io"


async def test_every_key_form_and_any_content_type(gateway, query, consumer, project, user_token):
    for headers, query_string in (
        ({"Content-Type": "text/plain;charset=UTF-8"}, f"?key={project.key}"),  # @airbrake/node
        ({"X-Airbrake-Token": project.key}, ""),  # Errbit's clients
        ({**bearer(project.key), "Content-Type": "application/x-www-form-urlencoded"}, ""),
        ({"Api-Key": project.key}, ""),
        ({"Content-Encoding": "gzip", **bearer(project.key)}, ""),
    ):
        body = gzip.compress(orjson.dumps(NODE)) if "Content-Encoding" in headers else NODE
        status, answer, _ = await post(gateway, project, body, headers, query_string)
        assert status == 201 and answer["id"], (headers, answer)
    await drain(consumer)
    errors = await (
        await query.get(f"/v1/errors?project_id={project.id}", headers={"Api-Key": user_token})
    ).json()
    assert [(e["exception"], e["notices_count"]) for e in errors] == [("RangeError", 5)]


async def test_auth_failures_answer_json_messages(gateway, pool, query, project, user_token):
    status, body, _ = await post(gateway, project, PYBRAKE)
    assert (status, body) == (401, {"message": "Requires authentication: send the project's API key"})
    status, body, _ = await post(gateway, project, PYBRAKE, query_string="?key=" + "0" * 32)
    assert status == 401 and "unknown" in body["message"]
    status, body, _ = await post(gateway, project, PYBRAKE, bearer(user_token))
    assert status == 403 and set(body) == {"message"}
    other = await make_project(pool)
    await reload_keys(gateway, query)
    status, body, _ = await post(gateway, project, PYBRAKE, bearer(other.key))
    assert status == 403 and str(project.id) in body["message"]


async def test_bad_bodies_answer_400_json(gateway, project):
    for body, message in (
        (b"{", "Notice body is not valid JSON"),
        ({"errors": []}, "errors should be a non-empty array"),
        ({"errors": [{"type": "E"}], "params": [1]}, "params should be a JSON object"),
    ):
        assert (await post(gateway, project, body, bearer(project.key)))[:2] == (400, {"message": message})


async def test_rate_limit_answers_429_with_delay_and_message(gateway, query, consumer, project, user_token):
    h = {"Api-Key": user_token}
    settings = {"settings": {"rate_limit_per_minute": 1}}
    await query.patch(f"/v1/projects/{project.id}", json=settings, headers=h)
    await reload_keys(gateway, query)
    assert (await post(gateway, project, NODE, bearer(project.key)))[0] == 201
    status, body, headers = await post(gateway, project, NODE, bearer(project.key))
    assert status == 429 and set(body) == {"message"}
    assert 1 <= int(headers["X-RateLimit-Delay"]) <= 60
    await drain(consumer)
