"""Secrets in every free-form field of every protocol never reach storage or the API (issue 13, finding 6).

Each protocol's notice carries a secret in each field a client fills freely: under sensitive names
(also JSON-escaped), in URLs and query strings (the project's own client key too), in [name, value]
header pairs, tags, messages, card numbers as text and as integers. After the worker stored it, the
row (body, and the raw payload where the protocol keeps it) and the API's answers hold none of them; a thread id that passes Luhn is kept.
"""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from tests.conftest import drain

CARD = "4111 1111 1111 1111"
INT_CARD = 5555555555554444  # Mastercard's test number, as an integer
THREAD_ID = 4111111111111111  # passes Luhn, but it is an id


def secrets(tag: str) -> list[str]:
    return [f"pw-{tag}", f"qs-{tag}", f"url-{tag}", f"hdr-{tag}", f"ck-{tag}", f"sess-{tag}", f"tag-{tag}"]


def fields(tag: str, key: str) -> dict:
    """Free-form data carrying every kind of secret."""
    return {
        "pass\\u0077ord": f"pw-{tag}",  # JSON-escaped name: written raw below
        "next": f"https://shop.example/cb?api_key=url-{tag}&page=2",
        "QUERY_STRING": f"page=1&password=qs-{tag}",
        "REQUEST_URI": f"/pay?access_token=url-{tag}",
        "with_key": f"https://gw.example/api/1/store/?sentry_key={key}&key={key}",
        "login": f"https://admin:url-{tag}@db.example/",
        "session_id": f"sess-{tag}",
        "card": f"paid with {CARD}",
        "card_int": INT_CARD,
    }


def escaped(data: dict) -> bytes:
    return orjson.dumps(data).replace(b"pass\\\\u0077ord", b"pass\\u0077ord")


def assert_clean(blob: bytes, tag: str, key: str) -> None:
    for secret in [*secrets(tag), key, CARD, str(INT_CARD)]:
        assert secret.encode() not in blob, secret


async def _rows(pool, project_id):
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT id, body, raw, location_id FROM notices WHERE project_id = $1", project_id
        )


async def _check(pool, query, token, project, tag, expect=1):
    rows = await _rows(pool, project.id)
    assert len(rows) == expect
    for r in rows:
        assert_clean(orjson.dumps(r["body"]), tag, project.key)
        assert_clean(bytes(r["raw"] or b""), tag, project.key)
        resp = await query.get(
            f"/api/locate/{r['location_id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200
        assert_clean(await resp.read(), tag, project.key)
    return rows


async def test_exceptioner(gateway, query, consumer, pool, project, user_token):
    tag = uuid.uuid4().hex[:8]
    f = fields(tag, project.key)
    body = {
        "message": f"E: failed for {CARD} at https://x.example/?token=url-{tag}",
        "error": {
            "exception": "E",
            "backtrace": [f"app/x.rb:1:in `f' https://x.example/a.js?key={project.key}"],
            "parameters": f,
            "session": {"session_id": f"sess-{tag}", "user": {"password": f"pw-{tag}"}},
            "environment": {"QUERY_STRING": f"password=qs-{tag}", "HTTP_COOKIE": f"sid=ck-{tag}"},
        },
    }
    resp = await gateway.post(
        "/v1/notices",
        data=escaped(body),
        headers={"Api-Key": project.key, "Content-Type": "application/json"},
    )
    assert resp.status == 201
    await drain(consumer)
    await _check(pool, query, user_token, project, tag)


async def test_crashlog(gateway, query, consumer, pool, project, user_token):
    tag = uuid.uuid4().hex[:8]
    f = fields(tag, project.key)
    body = {
        "notifier": {"name": "crashlog"},
        "event": {"class_name": "E", "message": f"card {CARD} token=url-{tag}"},
        "backtrace": [{"file": f"https://cdn.example/a.js?api_key=url-{tag}", "number": 1, "method": "f"}],
        "environment": {"name": "production", **f},
        "context": {"current_user": {"password": f"pw-{tag}"}, "url": f"https://x.example/?secret=url-{tag}"},
    }
    resp = await gateway.post(f"/notify?auth_token={project.key}", data=escaped(body))
    assert resp.status == 201
    await drain(consumer)
    [row] = await _check(pool, query, user_token, project, tag)
    assert orjson.loads(row["raw"])["event"]["class_name"] == "E"  # kept, scrubbed: locate answers with it


async def test_airbrake(gateway, query, consumer, pool, project, user_token):
    tag = uuid.uuid4().hex[:8]
    f = fields(tag, project.key)
    body = {
        "errors": [{"type": "E", "message": f"declined {CARD}", "backtrace": [{"file": "x.py", "line": 1}]}],
        "context": {"url": f"https://shop.example/checkout?password=url-{tag}&key={project.key}", "user": f},
        "params": f,
        "session": {"session_id": f"sess-{tag}"},
        "environment": {"HTTP_AUTHORIZATION": f"Bearer hdr-{tag}"},
    }
    resp = await gateway.post(f"/api/v3/projects/{project.id}/notices?key={project.key}", data=escaped(body))
    assert resp.status == 201
    await drain(consumer)
    await _check(pool, query, user_token, project, tag)


def sentry_event(tag: str, key: str) -> dict:
    f = fields(tag, key)
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "message": f"card {CARD}",
        "exception": {
            "values": [
                {
                    "type": "E",
                    "value": f"declined {CARD}",
                    "stacktrace": {"frames": [{"filename": f"https://app.example/a.js?sentry_key={key}"}]},
                }
            ]
        },
        "threads": {"values": [{"id": THREAD_ID, "current": True}]},
        "request": {
            "url": f"https://shop.example/pay?api_key=url-{tag}",
            "query_string": f"password=qs-{tag}&key={key}",
            "headers": [["Authorization", f"Bearer hdr-{tag}"], ["Cookie", f"sessionid=ck-{tag}"]],
            "cookies": [["csrftoken", f"ck-{tag}"], ["sessionid", f"ck-{tag}"]],
            "data": f,
        },
        "tags": {"password": f"tag-{tag}", "where": f"https://x.example/?token=tag-{tag}"},
        "breadcrumbs": {
            "values": [{"message": f"GET /?api_key=url-{tag}", "data": {"url": f"/?secret=url-{tag}"}}]
        },
        "extra": {**f, "number": INT_CARD, "thread_id": THREAD_ID},
        "user": {"id": "1", "password": f"pw-{tag}"},
        "contexts": {"app": {"session_id": f"sess-{tag}"}},
    }


@pytest.mark.parametrize("route", ["envelope", "store"])
async def test_sentry(gateway, query, consumer, pool, project, user_token, route):
    tag = uuid.uuid4().hex[:8]
    event = escaped(sentry_event(tag, project.key))
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={project.key}"}
    if route == "envelope":
        data = b'{}\n{"type":"event"}\n' + event + b"\n"
        headers["Content-Type"] = "application/x-sentry-envelope"
    else:
        data, headers["Content-Type"] = event, "application/json"
    resp = await gateway.post(f"/api/{project.id}/{route}/", data=data, headers=headers)
    assert resp.status == 200, await resp.text()
    await drain(consumer)
    [row] = await _check(pool, query, user_token, project, tag)
    assert row["raw"] is None  # only CrashLog keeps its raw payload
    assert str(THREAD_ID).encode() in orjson.dumps(row["body"])  # an id that passes Luhn is not a card


async def test_exceptionless_events_and_descriptions(gateway, query, consumer, pool, project, user_token):
    tag = uuid.uuid4().hex[:8]
    f = fields(tag, project.key)
    ref = uuid.uuid4().hex
    event = {
        "type": "error",
        "message": f"declined {CARD}",
        "reference_id": ref,
        "tags": [f"password:tag-{tag}"],
        "data": {
            "@error": {"type": "E", "message": f"card {CARD}", "stack_trace": []},
            "@request": {
                "url": f"https://shop.example/pay?api_key=url-{tag}",
                "path": "/pay",
                "query_string": {"password": f"qs-{tag}", "key": project.key},
                "cookies": {"sessionid": f"ck-{tag}"},
                "headers": {"Authorization": [f"Bearer hdr-{tag}"]},
            },
            "@user": {"identity": "u1", "data": {"session_id": f"sess-{tag}"}},
            **f,
        },
    }
    auth = {"Authorization": f"Bearer {project.key}"}
    resp = await gateway.post(
        "/api/v2/events", data=escaped(event), headers={**auth, "Content-Type": "application/json"}
    )
    assert resp.status == 202
    log_line = f"login failed password=pw-{tag} card {CARD}".encode()
    resp = await gateway.post("/api/v2/events", data=log_line, headers={**auth, "Content-Type": "text/plain"})
    assert resp.status == 202
    description = {"description": f"it broke, my card is {CARD}", "data": f}
    resp = await gateway.post(
        f"/api/v2/events/by-ref/{ref}/user-description", data=escaped(description), headers=auth
    )
    assert resp.status == 202
    await drain(consumer)
    rows = await _check(pool, query, user_token, project, tag, expect=2)
    assert any("user_description" in r["body"] for r in rows)
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT data FROM user_descriptions WHERE project_id = $1 AND reference_id = $2", project.id, ref
        )
    assert_clean(orjson.dumps(stored), tag, project.key)


async def test_get_submit_query_string(gateway, query, consumer, pool, project, user_token):
    tag = uuid.uuid4().hex[:8]
    resp = await gateway.get(
        "/api/v2/events/submit",
        params={
            "message": f"see https://x.example/?token=url-{tag}",
            "password": f"pw-{tag}",
            "session_id": f"sess-{tag}",
            "access_token": project.key,
        },
    )
    assert resp.status == 200
    await drain(consumer)
    await _check(pool, query, user_token, project, tag)
