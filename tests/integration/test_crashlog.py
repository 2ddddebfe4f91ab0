"""CrashLog `/notify` and the location look-ups: real HTTP, stream, worker step and PostgreSQL."""

from __future__ import annotations

import gzip
import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.conftest import ProjectInfo, drain

FULL: dict[str, Any] = {
    "notifier": {"name": "crashlog-nodejs", "version": "1.0.0"},
    "event": {
        "message": "Some one line error description",
        "class_name": "RuntimeError",
        "created_at": "2012-08-03T12:34:19+10:00",
    },
    "backtrace": [
        {
            "file": "/home/deploy/my_app/current/lib/somewhere.js",
            "number": 14,
            "method": "raiseTheRoof",
            "context_line": "throw new Error('roof')",
            "pre_context": ["function raiseTheRoof() {"],
            "post_context": ["}"],
        },
        {"file": "/home/deploy/my_app/current/lib/somewhere_else.js", "number": 192, "method": "setup"},
    ],
    "environment": {
        "project_root": "/home/deploy/my_app/current",
        "platform": "Node.js 0.6.x",
        "name": "production",
        "system": {"distribution": "Ubuntu 12.04 LTS"},
        "browser": {"ident": "Usual browser tag"},
        "plugins": [],
    },
    "context": {
        "hostname": "app01.myhostname.com",
        "current_user": {"id": 1, "email": "ivan@crashlog.io"},
        "controller": {"name": "usersController", "action": "index"},
    },
}
MINIMAL: dict[str, Any] = {"notifier": {"name": "crashlog"}, "event": {"class_name": "E", "message": "m"}}
FORM = "application/x-www-form-urlencoded"


async def notify(
    gateway: TestClient,
    body: bytes,
    key: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    params = {"auth_token": key} if key else {}
    resp = await gateway.post(
        "/notify", params=params, data=body, headers={"Content-Type": content_type, **(headers or {})}
    )
    return resp.status, await resp.json()


def assert_accepted(status: int, body: Any) -> str:
    assert status == 201, body
    assert set(body) == {"location_id"}
    assert uuid.UUID(body["location_id"]).version == 4
    return str(body["location_id"])


async def located(query: TestClient, location_id: str, token: str) -> dict[str, Any]:
    resp = await query.get(f"/api/locate/{location_id}", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_full_payload_404_then_301_then_the_payload_exactly(
    gateway, query, consumer, settings: Settings, project: ProjectInfo, user_token: str
):
    raw = orjson.dumps(FULL)
    resp = await gateway.post(
        "/notify", params={"auth_token": project.key}, data=raw, headers={"Content-Type": "application/json"}
    )
    location_id = assert_accepted(resp.status, await resp.json())
    assert resp.headers["Location"] == f"{settings.public_url}/locate/{location_id}"

    before = await query.get(f"/locate/{location_id}", allow_redirects=False)
    assert before.status == 404  # not yet stored: nothing has drained the stream
    await drain(consumer)
    after = await query.get(f"/locate/{location_id}", allow_redirects=False)
    assert after.status == 301
    assert after.headers["Location"] == f"{settings.public_url}/notices/{location_id}"

    found = await located(query, location_id, user_token)
    assert found["payload"] == FULL
    assert found["location_id"] == location_id
    assert uuid.UUID(found["notice_id"]).version == 7
    assert found["protocol"] == "crashlog" and found["project_id"] == project.id
    error = found["error"]
    assert error["id"] == found["error_id"]
    assert (error["exception"], error["message"], error["mode"]) == (
        "RuntimeError",
        "Some one line error description",
        "production",
    )
    assert error["notices_count"] == 1 and error["project_id"] == project.id

    notice = await query.get(
        f"/v1/errors/{error['id']}/notices/{found['notice_id']}", headers={"Api-Key": user_token}
    )
    detail = await notice.json()
    assert detail["occurred_at"] == "2012-08-03T02:34:19Z"
    assert detail["hostname"] == "app01.myhostname.com"
    assert detail["context"] == FULL["context"]
    assert detail["environment"] == FULL["environment"]
    assert detail["backtrace"][0] == "[PROJECT_ROOT]/lib/somewhere.js:14:in `raiseTheRoof`"
    assert detail["exceptions"][0]["frames"][0]["context_line"] == "throw new Error('roof')"


async def test_minimal_wrapped_payload_with_a_bearer_key(gateway, query, consumer, project, user_token):
    status, body = await notify(
        gateway, orjson.dumps({"payload": MINIMAL}), headers={"Authorization": f"Bearer {project.key}"}
    )
    location_id = assert_accepted(status, body)
    await drain(consumer)
    found = await located(query, location_id, user_token)
    assert found["payload"] == MINIMAL  # the payload itself, not the wrapper
    assert (
        found["error"]["exception"] == "E" and found["error"]["mode"] == "production"
    )  # the project default


async def test_form_encoded_payload(gateway, query, consumer, project, user_token):
    form = urlencode({"auth_token": project.key, "payload": orjson.dumps(FULL).decode()}).encode()
    status, body = await notify(gateway, form, content_type=FORM)
    location_id = assert_accepted(status, body)
    await drain(consumer)
    assert (await located(query, location_id, user_token))["payload"] == FULL


async def test_ruby_client_shape_token_auth_json_labelled_as_form(
    gateway, query, consumer, project, user_token
):
    # The Ruby gem posts {"payload": ...} as JSON through Faraday's url_encoded + token_auth middleware.
    status, answer = await notify(
        gateway,
        orjson.dumps({"payload": FULL}),
        content_type=FORM,
        headers={"Authorization": f'Token token="{project.key}"'},
    )
    location_id = assert_accepted(status, answer)
    await drain(consumer)
    assert (await located(query, location_id, user_token))["payload"] == FULL


async def test_gzipped_payload(gateway, project):
    status, answer = await notify(
        gateway, gzip.compress(orjson.dumps(MINIMAL)), project.key, headers={"Content-Encoding": "gzip"}
    )
    assert_accepted(status, answer)


async def test_key_inside_a_json_body_is_accepted_and_not_stored(
    gateway, query, consumer, project, user_token
):
    status, body = await notify(gateway, orjson.dumps({**MINIMAL, "auth_token": project.key}))
    location_id = assert_accepted(status, body)
    await drain(consumer)
    found = await located(query, location_id, user_token)
    assert found["payload"] == MINIMAL
    assert project.key not in orjson.dumps(found).decode()


async def test_malformed_bodies(gateway, project):
    assert await notify(gateway, b'{"notifier": ', project.key) == (400, {"message": "Problems parsing JSON"})
    assert await notify(gateway, b"[1]", project.key) == (400, {"message": "Body should be a JSON Hash"})
    assert await notify(gateway, b"payload=%7B", project.key, FORM) == (
        400,
        {"message": "Problems parsing JSON"},
    )


async def test_missing_interfaces_are_named(gateway, project):
    for missing in ("notifier", "event"):
        payload = {k: v for k, v in FULL.items() if k != missing}
        assert await notify(gateway, orjson.dumps(payload), project.key) == (
            422,
            {
                "message": "Validation failed",
                "errors": [{"resource": "Payload", "field": missing, "code": "missing_field"}],
            },
        )
    status, body = await notify(gateway, b"auth_token=x", None, FORM)
    assert status == 401  # no usable key: the body is never judged
    status, body = await notify(gateway, urlencode({"auth_token": project.key}).encode(), None, FORM)
    assert (status, body["errors"]) == (
        422,
        [{"resource": "Payload", "field": "payload", "code": "missing_field"}],
    )


async def test_bad_keys(gateway, project, user_token):
    raw = orjson.dumps(MINIMAL)
    assert (await notify(gateway, raw))[0] == 401
    assert (await notify(gateway, raw, "0" * 32))[0] == 401
    assert (await notify(gateway, b"{broken", "0" * 32))[0] == 401  # refused before the body is read
    assert (await notify(gateway, raw, user_token))[0] == 403
    assert (await notify(gateway, raw, headers={"Authorization": "CrashLog 00000000:sig"}))[0] == 401
    status, _ = await notify(gateway, raw, headers={"Authorization": f"CrashLog {project.key}:sig"})
    assert status == 201


async def test_api_locate_credentials_and_bad_ids(query, project, user_token):
    missing = uuid.uuid4()
    assert (await query.get(f"/api/locate/{missing}")).status == 401
    assert (await query.get(f"/api/locate/{missing}", headers={"Api-Key": project.key})).status == 403
    assert (await query.get(f"/api/locate/{missing}", headers={"Api-Key": user_token})).status == 404
    assert (await query.get("/api/locate/not-a-uuid", headers={"Api-Key": user_token})).status == 404
    assert (await query.get("/locate/not-a-uuid", allow_redirects=False)).status == 404
    assert (await query.get(f"/locate/{missing}", allow_redirects=False)).status == 404


async def test_exceptioner_and_crashlog_reports_fold_into_one_error(
    gateway, query, consumer, project, user_token
):
    resp = await gateway.post(
        "/v1/notices",
        headers={"Api-Key": project.key},
        json={
            "message": "NoMethodError: undefined method `name' for nil",
            "error": {
                "exception": "NoMethodError",
                "mode": "production",
                "backtrace": [
                    "[PROJECT_ROOT]/app/models/user.rb:42:in `save'",
                    "/usr/lib/ruby/gems/3.2.0/gems/activerecord-7.1/lib/active_record/base.rb:9:in `call'",
                ],
                "environment": {"HTTP_HOST": "example.com"},
            },
        },
    )
    assert resp.status == 201
    exceptioner = await resp.json()
    status, body = await notify(
        gateway,
        orjson.dumps(
            {
                "notifier": {"name": "crashlog", "version": "1.0.0"},
                "event": {
                    "class_name": "NoMethodError",
                    "message": "undefined method `email' for nil",
                    "created_at": "2024-05-01T10:00:00-07:00",
                },
                "backtrace": [
                    {"file": "/home/deploy/app/current/app/models/user.rb", "number": 40, "method": "save"}
                ],
                "environment": {"name": "production", "project_root": "/home/deploy/app/current"},
            }
        ),
        project.key,
    )
    location_id = assert_accepted(status, body)
    await drain(consumer)

    found = await located(query, location_id, user_token)
    assert found["error_id"] == exceptioner["error_id"]
    assert found["error"]["notices_count"] == 2

    # The Exceptioner notice has a location id too, and /api/locate builds the interfaces for it.
    notices = await query.get(
        f"/v1/errors/{exceptioner['error_id']}/notices", headers={"Api-Key": user_token}
    )
    by_protocol = {n["protocol"]: n for n in await notices.json()}
    assert set(by_protocol) == {"crashlog", "exceptioner"}
    ex_location = by_protocol["exceptioner"]["location_id"]
    redirect = await query.get(f"/locate/{ex_location}", allow_redirects=False)
    assert redirect.status == 301 and redirect.headers["Location"].endswith(f"/notices/{ex_location}")
    other = await located(query, ex_location, user_token)
    assert other["notice_id"] == exceptioner["id"]
    assert other["payload"]["notifier"] == {"name": "exceptioner"}
    assert other["payload"]["event"]["class_name"] == "NoMethodError"
    assert other["payload"]["event"]["message"] == "undefined method `name' for nil"
    assert other["payload"]["backtrace"][0] == {
        "file": "[PROJECT_ROOT]/app/models/user.rb",
        "number": 42,
        "method": "save",
    }
    assert other["payload"]["environment"] == {"HTTP_HOST": "example.com", "name": "production"}
