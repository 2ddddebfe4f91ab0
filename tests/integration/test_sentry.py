"""Sentry envelopes and store requests over real HTTP, a real stream, the worker step and PostgreSQL.

What was stored is read back through the query API. The real SDKs are driven in test_sentry_airbrake_sdks.py.
"""

from __future__ import annotations

import gzip
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import brotli
import orjson
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain, make_project, reload_keys

ENVELOPE_TYPE = "application/x-sentry-envelope"


def auth(key: str, **extra: str) -> dict[str, str]:
    fields = ", ".join(f"{k}={v}" for k, v in {"sentry_key": key, "sentry_version": "7", **extra}.items())
    return {"X-Sentry-Auth": f"Sentry {fields}"}


def event(value: str = "card declined", eid: str | None = None, **more: Any) -> dict[str, Any]:
    return {
        "event_id": eid or uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "environment": "production",
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": "42",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "shop.py",
                                "function": "charge",
                                "module": "shop",
                                "lineno": 7,
                                "in_app": True,
                            }
                        ]
                    },
                },
                {
                    "type": "PaymentError",
                    "value": value,
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "shop.py",
                                "function": "run",
                                "module": "shop",
                                "lineno": 19,
                                "in_app": True,
                            },
                            {
                                "filename": "shop.py",
                                "function": "checkout",
                                "module": "shop",
                                "lineno": 14,
                                "in_app": True,
                                "context_line": "raise PaymentError(msg) from e",
                            },
                        ]
                    },
                },
            ]
        },
        **more,
    }


def envelope(
    *items: tuple[dict[str, Any], Any],
    header: dict[str, Any] | None = None,
    lengths: bool = True,
    final_newline: bool = True,
) -> bytes:
    lines = [orjson.dumps(header if header is not None else {"sent_at": time.time()})]
    for item_header, payload in items:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        lines.append(orjson.dumps({**item_header, "length": len(data)} if lengths else item_header))
        lines.append(data)
    body = b"\n".join(lines)
    return body + b"\n" if final_newline else body


async def send(
    gateway: TestClient,
    project: ProjectInfo,
    body: bytes,
    headers: dict[str, str] | None = None,
    path: str = "envelope",
    project_id: int | None = None,
    **kw: Any,
) -> tuple[int, Any, Any]:
    resp = await gateway.post(
        f"/api/{project_id or project.id}/{path}/",
        data=body,
        headers={"Content-Type": ENVELOPE_TYPE, **auth(project.key), **(headers or {})},
        **kw,
    )
    return resp.status, await resp.json(), resp.headers


async def stored(query: TestClient, token: str, project_id: int) -> list[dict[str, Any]]:
    """Every notice of the project in full, via the query API (errors, then their notices)."""
    h = {"Api-Key": token}
    errors = await (await query.get(f"/v1/errors?project_id={project_id}&resolved=true", headers=h)).json()
    out = []
    for e in errors:
        for n in await (await query.get(f"/v1/errors/{e['id']}/notices", headers=h)).json():
            resp = await query.get(f"/v1/errors/{e['id']}/notices/{n['id']}", headers=h)
            out.append(await resp.json())
    return out


async def test_envelope_event_is_stored_and_readable(gateway, query, consumer, project, user_token):
    ev = event(
        user={"id": "u1", "email": "u1@example.com"},
        tags={"region": "eu"},
        release="shop@1.0",
        server_name="web-1",
        extra={"order": 7},
        request={"method": "POST", "url": "http://x/pay"},
    )
    status, body, _ = await send(gateway, project, envelope(({"type": "event"}, ev)))
    assert (status, body) == (200, {"id": ev["event_id"]})
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["protocol"] == "sentry" and n["exception"] == "PaymentError" and n["message"] == "card declined"
    assert n["mode"] == "production" and n["reference_id"] == ev["event_id"]
    assert [e["type"] for e in n["exceptions"]] == ["PaymentError", "KeyError"]
    assert n["backtrace"] == ["shop.py:14:in `checkout`", "shop.py:19:in `run`"]
    assert n["user"] == {"id": "u1", "email": "u1@example.com"} and n["tags"] == ["region:eu"]
    assert n["release"] == "shop@1.0" and n["hostname"] == "web-1" and n["data"] == {"order": 7}
    assert n["environment"] == {"REQUEST_METHOD": "POST", "REQUEST_URI": "http://x/pay"}


async def test_envelope_framings_and_encodings(gateway, query, consumer, project, user_token):
    """With and without item lengths and final newline; gzip, deflate (zlib and raw), br, chunked."""
    ids = []

    def one(**kw: Any) -> bytes:
        ev = event()
        ids.append(ev["event_id"])
        return envelope(({"type": "event"}, ev), **kw)

    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    cases: list[tuple[bytes, dict[str, str]]] = [
        (one(lengths=False, final_newline=False), {}),
        (one(lengths=True, final_newline=False), {}),
        (gzip.compress(one()), {"Content-Encoding": "gzip"}),
        (zlib.compress(one()), {"Content-Encoding": "deflate"}),
        (raw_deflate.compress(one()) + raw_deflate.flush(), {"Content-Encoding": "deflate"}),
        (brotli.compress(one(lengths=False)), {"Content-Encoding": "br"}),
    ]
    for i, (body, headers) in enumerate(cases):
        assert (await send(gateway, project, body, headers))[:2] == (200, {"id": ids[i]}), headers

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    # @sentry/node: auth in the query string, chunked, no Content-Type at all
    body = one(lengths=False, final_newline=False)
    resp = await gateway.post(
        f"/api/{project.id}/envelope/?sentry_version=7&sentry_key={project.key}",
        data=chunks(body),
        skip_auto_headers=["Content-Type"],
    )
    assert resp.status == 200 and (await resp.json()) == {"id": ids[-1]}
    await drain(consumer)
    assert sorted(n["reference_id"] for n in await stored(query, user_token, project.id)) == sorted(ids)


async def test_other_item_types_are_accepted_and_skipped(gateway, query, consumer, project, user_token):
    ev = event()
    items = [
        ({"type": "session"}, {"sid": "x", "status": "ok"}),
        ({"type": "client_report"}, {"discarded_events": []}),
        ({"type": "transaction"}, {"type": "transaction", "spans": []}),
        ({"type": "span"}, {}),
        ({"type": "check_in"}, {"status": "ok"}),
        ({"type": "log"}, {"items": []}),
        ({"type": "attachment", "filename": "a.bin"}, b"\x00\x01\nbinary\n"),
        ({"type": "something_new"}, {}),
    ]
    status, body, _ = await send(gateway, project, envelope(*items, header={}))
    assert (status, body) == (200, {})
    status, body, _ = await send(gateway, project, envelope(*items, ({"type": "event"}, ev)))
    assert (status, body) == (200, {"id": ev["event_id"]})
    await drain(consumer)
    assert [n["reference_id"] for n in await stored(query, user_token, project.id)] == [ev["event_id"]]


async def test_repeated_event_id_is_stored_once(gateway, query, consumer, project, user_token):
    ev = event()
    for _ in range(3):
        assert (await send(gateway, project, envelope(({"type": "event"}, ev))))[:2] == (
            200,
            {"id": ev["event_id"]},
        )
    status, body, _ = await send(
        gateway, project, orjson.dumps(ev), {"Content-Type": "application/json"}, "store"
    )
    assert (status, body) == (200, {"id": ev["event_id"]})
    await drain(consumer)
    notices = await stored(query, user_token, project.id)
    assert len(notices) == 1
    resp = await query.get(f"/v1/errors/{notices[0]['error_id']}", headers={"Api-Key": user_token})
    assert (await resp.json())["notices_count"] == 1


async def test_same_event_id_in_two_projects_is_two_events(
    gateway, query, consumer, pool, project, user_token
):
    second = await make_project(pool)
    await reload_keys(gateway, query)
    ev = event()
    for p in (project, second):
        assert (await send(gateway, p, envelope(({"type": "event"}, ev))))[0] == 200
    await drain(consumer)
    assert len(await stored(query, user_token, project.id)) == 1
    assert len(await stored(query, user_token, second.id)) == 1


async def test_legacy_store_endpoint(gateway, query, consumer, project, user_token):
    ev = event(value="via store")
    status, body, _ = await send(
        gateway, project, orjson.dumps(ev), {"Content-Type": "application/json"}, "store"
    )
    assert (status, body) == (200, {"id": ev["event_id"]})
    ev2 = event(value="store takes envelopes too")
    status, body, _ = await send(gateway, project, envelope(({"type": "event"}, ev2)), path="store")
    assert (status, body) == (200, {"id": ev2["event_id"]})
    await drain(consumer)
    assert {n["message"] for n in await stored(query, user_token, project.id)} == {
        "via store",
        "store takes envelopes too",
    }


async def test_clock_drift_is_corrected_from_sent_at(gateway, query, consumer, project, user_token):
    now = time.time()
    skewed = event(timestamp=now - 7200 - 30)  # the client's clock runs two hours behind
    status, _, _ = await send(
        gateway, project, envelope(({"type": "event"}, skewed), header={"sent_at": now - 7200})
    )
    assert status == 200
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    occurred = time.mktime(time.strptime(n["occurred_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(occurred - (now - 30)) < 5


async def test_auth_forms_and_their_failures(gateway, pool, query, consumer, project, user_token):
    body = envelope(({"type": "event"}, event()))
    url = f"/api/{project.id}/envelope/"
    plain = {"Content-Type": ENVELOPE_TYPE}
    for headers, query_string in (
        ({"Authorization": f"Sentry sentry_key={project.key}, sentry_version=7"}, ""),
        ({}, f"?sentry_key={project.key}&sentry_version=7"),
        ({"Authorization": f"Bearer {project.key}"}, ""),
        ({"Api-Key": project.key}, ""),
        (auth(project.key), f"?sentry_key={project.key}"),  # the same key twice does not conflict
    ):
        resp = await gateway.post(url + query_string, data=body, headers={**plain, **headers})
        assert resp.status == 200, (headers, query_string, await resp.text())

    async def status_of(headers: dict[str, str], query_string: str = "", path: str = url) -> tuple[int, Any]:
        resp = await gateway.post(path + query_string, data=body, headers={**plain, **headers})
        return resp.status, await resp.json()

    assert await status_of({}) == (401, {"detail": "Requires authentication: send the project's API key"})
    status, answer = await status_of(auth("0" * 32))  # looked up once, then refused in Relay's shape
    assert status == 401 and "unknown" in answer["detail"]
    assert (await status_of(auth(user_token)))[0] == 403
    status, answer = await status_of(auth(project.key), "?sentry_key=" + "f" * 32)
    assert status == 400 and "conflicting" in answer["detail"]
    status, answer = await status_of({**auth(project.key), "Authorization": "Bearer " + "f" * 32})
    assert status == 400
    other = await make_project(pool)
    await reload_keys(gateway, query)
    status, answer = await status_of(auth(other.key))
    assert status == 403 and str(project.id) in answer["detail"]
    assert (await status_of(auth(project.key), path="/api/abc/envelope/"))[0] == 404
    await drain(consumer)
    assert len(await stored(query, user_token, project.id)) == 1  # one event, however it was authenticated


async def test_malformed_requests(gateway, project):
    assert (await send(gateway, project, b"{not json\n"))[:2] == (
        400,
        {"detail": "Invalid envelope: envelope header is not JSON"},
    )
    assert (await send(gateway, project, envelope(({"type": "event"}, b"[1]"))))[0] == 400
    assert (await send(gateway, project, envelope(({"type": "event"}, {"event_id": "zz"}))))[0] == 400
    assert (await send(gateway, project, b"{}\n{}", {"Content-Encoding": "gzip"}))[0] == 400
    big = event(extra={"blob": "x" * (1 << 20)})
    status, answer, _ = await send(
        gateway, project, gzip.compress(envelope(({"type": "event"}, big))), {"Content-Encoding": "gzip"}
    )
    assert status == 413 and "detail" in answer


async def test_rate_limit_answers_429_with_headers_the_sdks_honour(
    gateway, query, consumer, project, user_token
):
    h = {"Api-Key": user_token}
    await query.patch(
        f"/v1/projects/{project.id}", json={"settings": {"rate_limit_per_minute": 1}}, headers=h
    )
    await reload_keys(gateway, query)
    first, limited = event(), event()
    assert (await send(gateway, project, envelope(({"type": "event"}, first))))[0] == 200
    status, body, headers = await send(gateway, project, envelope(({"type": "event"}, limited)))
    assert status == 429 and "detail" in body
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 60 and headers["X-Sentry-Rate-Limits"].startswith(f"{retry}:")
    # A rejected event was not remembered: once the limit is lifted, its retry is stored.
    await query.patch(
        f"/v1/projects/{project.id}", json={"settings": {"rate_limit_per_minute": None}}, headers=h
    )
    await reload_keys(gateway, query)
    assert (await send(gateway, project, envelope(({"type": "event"}, limited))))[0] == 200
    await drain(consumer)
    assert {n["reference_id"] for n in await stored(query, user_token, project.id)} == {
        first["event_id"],
        limited["event_id"],
    }
