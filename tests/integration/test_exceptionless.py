"""Exceptionless v2 over real HTTP, a real stream, a real worker step and real PostgreSQL.

Every endpoint's success and error answers; what was stored is read back through the query API.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import time
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain, reload_keys

EVENTS = "/api/v2/events"
CONFIG_VERSION = "X-Exceptionless-ConfigVersion"


@pytest.fixture(autouse=True)
async def _no_leftovers(consumer) -> None:
    """Store what earlier tests left queued, so the entry counts asserted here are this test's own."""
    await drain(consumer)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def dotnet_error(
    reference_id: str = "ab12cd34ef", message: str = "Object reference not set"
) -> dict[str, Any]:
    """What the .NET client sends for a wrapped exception (trimmed)."""
    return {
        "type": "error",
        "date": "2026-01-01T12:00:00.0000000-05:00",
        "reference_id": reference_id,
        "tags": ["web", "checkout", "web"],
        "data": {
            "@error": {
                "type": "System.InvalidOperationException",
                "message": "Checkout failed",
                "code": "E42",
                "stack_trace": [
                    {
                        "name": "Submit",
                        "declaring_namespace": "Shop.Web",
                        "declaring_type": "CheckoutController",
                        "file_name": "CheckoutController.cs",
                        "line_number": 41,
                        "column": 13,
                    },
                    {
                        "name": "Invoke",
                        "declaring_namespace": "Microsoft.AspNetCore.Mvc",
                        "declaring_type": "ActionInvoker",
                        "line_number": 0,
                        "column": 0,
                    },
                ],
                "inner": {
                    "type": "System.NullReferenceException",
                    "message": message,
                    "stack_trace": [
                        {
                            "name": "Total",
                            "declaring_namespace": "Shop.Domain",
                            "declaring_type": "Cart",
                            "file_name": "Cart.cs",
                            "line_number": 17,
                            "column": 9,
                        },
                    ],
                },
                "modules": [{"module_id": 1, "name": "Shop.Web", "version": "1.2.3", "is_entry": True}],
            },
            "@environment": {"machine_name": "web-01", "o_s_name": "Linux", "processor_count": 4},
            "@request": {
                "http_method": "POST",
                "host": "shop.example",
                "path": "/checkout",
                "port": 443,
                "is_secure": True,
                "user_agent": "Mozilla/5.0",
                "client_ip_address": "10.0.0.7",
                "query_string": {"step": "2"},
                "post_data": {"coupon": "SAVE10"},
            },
            "@user": {"identity": "u-1", "name": "Ada"},
            "@version": "1.2.3",
            "@submission_method": "onerror",
        },
        "order_id": 1234,  # unknown top-level property: kept as data
    }


async def post(
    gateway: TestClient,
    key: str,
    body: Any,
    content_type: str = "application/json",
    path: str = EVENTS,
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await gateway.post(
        path, data=data, headers={**bearer(key), "Content-Type": content_type, **(headers or {})}
    )


async def read_json(query: TestClient, token: str, path: str) -> Any:
    resp = await query.get(path, headers={"Api-Key": token})
    assert resp.status == 200, (path, resp.status, await resp.text())
    return await resp.json()


async def notices(
    query: TestClient, token: str, project_id: int, kind: str | None = None
) -> list[dict[str, Any]]:
    """Every stored notice of the project (detail JSON), optionally of one event type."""
    path = f"/v1/errors?project_id={project_id}&per_page=100" + (f"&type={kind}" if kind else "")
    out = []
    for error in await read_json(query, token, path):
        for n in await read_json(query, token, f"/v1/errors/{error['id']}/notices?per_page=100"):
            out.append(await read_json(query, token, f"/v1/errors/{error['id']}/notices/{n['id']}"))
    return out


async def assert_empty_or_json(resp: ClientResponse) -> None:
    """The JS client JSON.parses any non-empty body."""
    text = await resp.text()
    if text:
        orjson.loads(text)


# ---- POST /api/v2/events ----------------------------------------------------------------------


async def test_post_event_answers_202_empty_with_config_version_and_is_stored(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    resp = await post(gateway, project.key, dotnet_error())
    assert resp.status == 202
    assert await resp.read() == b""
    assert resp.headers[CONFIG_VERSION] == "0"
    await drain(consumer)
    [n] = await notices(query, user_token, project.id, "error")
    assert n["protocol"] == "exceptionless" and n["type"] == "error"
    assert n["exception"] == "System.InvalidOperationException"
    assert n["message"] == "Checkout failed"
    assert [e["type"] for e in n["exceptions"]] == [
        "System.InvalidOperationException",
        "System.NullReferenceException",
    ]
    top = n["exceptions"][0]["frames"][0]
    assert (top["module"], top["function"], top["file"], top["line"]) == (
        "Shop.Web.CheckoutController",
        "Submit",
        "CheckoutController.cs",
        41,
    )
    assert n["exceptions"][0]["frames"][1]["line"] is None  # 0 means unknown
    assert n["reference_id"] == "ab12cd34ef"
    assert n["tags"] == ["web", "checkout"]
    assert n["user"] == {"identity": "u-1", "name": "Ada"}
    assert n["hostname"] == "web-01" and n["release"] == "1.2.3"
    assert n["environment"]["REQUEST_METHOD"] == "POST" and n["environment"]["HTTPS"] == "on"
    assert n["parameters"] == {"step": "2", "coupon": "SAVE10"}
    assert n["context"]["error"]["code"] == "E42"
    assert n["context"]["error"]["modules"][0]["name"] == "Shop.Web"
    assert n["context"]["submission_method"] == "onerror"
    assert n["data"] == {"order_id": 1234}
    assert n["occurred_at"] == "2026-01-01T17:00:00Z"


async def test_array_stores_every_type_but_heartbeats_and_the_read_api_lists_by_type(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    events = [
        {
            "type": "error",
            "@simple_error": {
                "message": "Simple Exception",
                "type": "System.Exception",
                "stack_trace": "   at Client.Tests.ExceptionlessClientTests."
                "CanSubmitSimpleException() in "
                "ExceptionlessClientTests.cs:line 77",
            },
        },
        {"type": "log", "source": "app.worker", "message": "Exceptionless is amazing!", "@level": "Info"},
        {"type": "usage", "source": "export-csv"},
        {"type": "404", "source": "/missing/page"},
        {"type": "session", "@ref:session": "s-1"},
        {"type": "sessionend"},
        {"type": "heartbeat"},
        {"message": "no type: a log"},
        None,
    ]
    resp = await post(gateway, project.key, events)
    assert resp.status == 202 and await resp.read() == b""
    await drain(consumer)
    stored = await notices(query, user_token, project.id)
    assert sorted(n["type"] for n in stored) == [
        "404",
        "error",
        "log",
        "log",
        "session",
        "sessionend",
        "usage",
    ]
    [err] = await notices(query, user_token, project.id, "error")
    assert err["exception"] == "System.Exception" and err["message"] == "Simple Exception"
    frame = err["exceptions"][0]["frames"][0]
    assert (frame["function"], frame["file"], frame["line"]) == (
        "CanSubmitSimpleException",
        "ExceptionlessClientTests.cs",
        77,
    )
    logs = await notices(query, user_token, project.id, "log")
    assert {n["message"] for n in logs} == {"Exceptionless is amazing!", "no type: a log"}
    assert next(n for n in logs if n["source"] == "app.worker")["level"] == "Info"
    [usage] = await notices(query, user_token, project.id, "usage")
    assert usage["source"] == "export-csv"
    [missing] = await notices(query, user_token, project.id, "404")
    assert missing["source"] == "/missing/page"
    [session] = await notices(query, user_token, project.id, "session")
    assert session["data"] == {"@ref:session": "s-1"}
    assert await notices(query, user_token, project.id, "heartbeat") == []


async def test_text_lines_become_log_events(gateway, query, consumer, project: ProjectInfo, user_token):
    resp = await post(gateway, project.key, b"first line\r\n\n  second line  \n", "text/plain; charset=utf-8")
    assert resp.status == 202
    await drain(consumer)
    logs = await notices(query, user_token, project.id, "log")
    assert sorted(n["message"] for n in logs) == ["first line", "second line"]


async def test_gzip_and_deflate_bodies(gateway, query, consumer, project: ProjectInfo, user_token):
    body = orjson.dumps({"type": "log", "message": "compressed"})
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        resp = await post(gateway, project.key, data, headers={"Content-Encoding": encoding})
        assert resp.status == 202, encoding
    await drain(consumer)
    [log] = await read_json(query, user_token, f"/v1/errors?project_id={project.id}&type=log")
    assert log["notices_count"] == 2


async def test_project_path_must_name_the_keys_project(gateway, consumer, project: ProjectInfo):
    event = {"type": "log", "message": "by project path"}
    resp = await post(gateway, project.key, event, path=f"/api/v2/projects/{project.id}/events")
    assert resp.status == 202
    resp = await post(gateway, project.key, event, path=f"/api/v2/projects/{project.id + 1000}/events")
    assert resp.status == 403  # CONTRACT.md: a valid key for the wrong project
    assert (await resp.json())["message"] == "This key belongs to another project."
    assert await drain(consumer) == 1


async def test_post_error_answers(gateway, consumer, project: ProjectInfo, user_token, settings):
    event = {"type": "log", "message": "x"}
    resp = await post(gateway, project.key, event, "application/xml")
    assert resp.status == 415
    await assert_empty_or_json(resp)
    resp = await gateway.post(
        EVENTS, data=b"", headers={**bearer(project.key), "Content-Type": "application/json"}
    )
    assert resp.status == 411 and await resp.read() == b""
    big = orjson.dumps({"type": "log", "message": "x" * settings.max_body})
    resp = await gateway.post(
        EVENTS, data=io.BytesIO(big), headers={**bearer(project.key), "Content-Type": "application/json"}
    )
    assert resp.status == 413 and await resp.read() == b""
    resp = await gateway.post(
        EVENTS,
        data=gzip.compress(b"x" * (settings.max_decompressed + 1)),
        headers={**bearer(project.key), "Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert resp.status == 413 and await resp.read() == b""
    for headers in ({}, bearer("0123456789abcdef0123456789abcdef"), bearer(user_token)):
        resp = await gateway.post(EVENTS, json=event, headers=headers)
        assert resp.status == (403 if headers == bearer(user_token) else 401)
        await assert_empty_or_json(resp)
    assert await drain(consumer) == 0


async def test_events_past_the_cap_are_counted_not_built(gateway, consumer, project: ProjectInfo, pool):
    """Answered 202 before parsing (as the real server does); the worker keeps the first MAX_EVENTS,
    and the last kept notice says how many more there were."""
    lines = b"\n".join(b"l%d" % i for i in range(5003))
    resp = await post(gateway, project.key, lines, "text/plain")
    assert resp.status == 202
    await drain(consumer)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message, body FROM notices WHERE project_id = $1 ORDER BY id", project.id
        )
    assert [r["message"] for r in rows] == [f"l{i}" for i in range(5000)]
    assert rows[-1]["body"]["notes"] == ["3 more events in the same request were dropped (over 5000)"]


async def test_every_credential_form_the_real_server_accepts(gateway, consumer, project: ProjectInfo):
    key = project.key
    basic = {
        "user": base64.b64encode(f"{key}:".encode()).decode(),
        "x-oauth-basic": base64.b64encode(f"{key}:x-oauth-basic".encode()).decode(),
        "client": base64.b64encode(f"client:{key}".encode()).decode(),
    }
    forms: list[tuple[str, dict[str, str]]] = [
        (EVENTS, {"Authorization": f"Bearer {key}"}),
        (EVENTS, {"Authorization": f"Token {key}"}),
        *((EVENTS, {"Authorization": f"Basic {v}"}) for v in basic.values()),
        (f"{EVENTS}?access_token={key}", {}),
        (f"{EVENTS}?api_key={key}", {}),
        (f"{EVENTS}?apikey={key}", {}),
    ]
    for path, headers in forms:
        resp = await gateway.post(path, json={"message": "auth"}, headers=headers)
        assert resp.status == 202, (path, headers)
    # Query parameters count only when no Authorization header came (as on the real server).
    resp = await gateway.post(
        f"{EVENTS}?api_key={key}",
        json={"message": "auth"},
        headers={"Authorization": "Bearer not-a-known-key-at-all"},
    )
    assert resp.status == 401
    assert await drain(consumer) == len(forms)


async def test_rate_limited_answer_is_429_with_an_empty_body(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    resp = await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"rate_limit_per_minute": 2}},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 200
    await reload_keys(gateway, query)
    statuses = []
    for _ in range(3):
        resp = await post(gateway, project.key, {"message": "limited"})
        statuses.append(resp.status)
    assert statuses == [202, 202, 429]
    assert await resp.read() == b""
    assert int(resp.headers["Retry-After"]) >= 1 and resp.headers["X-RateLimit-Remaining"] == "0"
    await drain(consumer)


# ---- grouping ---------------------------------------------------------------------------------


async def test_errors_group_by_stack_and_manual_stacking_overrides(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    def js_error(message: str, line: int, stack: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "@error": {
                "type": "TypeError",
                "message": message,
                "stack_trace": [
                    {
                        "name": "render",
                        "file_name": "/app/view.js",
                        "line_number": line,
                        "column": 7,
                        "declaring_type": None,
                        "data": {"is_native": False},
                    },
                    {
                        "name": "processTicksAndRejections",
                        "file_name": "node:internal/process/task_queues",
                        "line_number": 95,
                        "column": 5,
                        "data": {"is_native": True},
                    },
                ],
            }
        }
        if stack:
            data["@stack"] = stack
        return {"type": "error", "data": data}

    events = [
        js_error("x is undefined", 10),
        js_error("y is undefined", 12),
        js_error("a", 1, {"title": "Checkout", "signature_data": {"area": "checkout"}}),
        js_error("b", 99, {"title": "Checkout", "signature_data": {"area": "checkout"}}),
    ]
    resp = await post(gateway, project.key, events)
    assert resp.status == 202
    await drain(consumer)
    errors = await read_json(query, user_token, f"/v1/errors?project_id={project.id}&type=error")
    assert sorted(e["notices_count"] for e in errors) == [2, 2]
    stacked = await notices(query, user_token, project.id, "error")
    manual = [n for n in stacked if (n["context"] or {}).get("stack")]
    assert len(manual) == 2 and len({n["error_id"] for n in manual}) == 1
    assert {n["error_id"] for n in manual}.isdisjoint({n["error_id"] for n in stacked if n not in manual})


# ---- GET /api/v2/events/submit ------------------------------------------------------------------


async def test_get_submit_maps_parameters_like_the_real_server(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    resp = await gateway.get(
        "/api/v2/events/submit",
        params=[
            ("access_token", project.key),
            ("Type", "log"),
            ("source", "server01"),
            ("message", "Hello World"),
            ("reference", "ref-12345678"),
            ("date", "2026-01-02T03:04:05Z"),
            ("count", "3"),
            ("value", "10.5"),
            ("geo", "32.85,-96.9613"),
            ("tags", "a,b"),
            ("tags", "c,a"),
            ("identity", "u-9"),
            ("identity.name", "Grace"),
            ("randomproperty", "true"),
            ("multi", "1"),
            ("multi", "2"),
            ("empty", ""),
        ],
    )
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers[CONFIG_VERSION] == "0"
    await drain(consumer)
    [n] = await notices(query, user_token, project.id)
    assert (n["type"], n["source"], n["message"]) == ("log", "server01", "Hello World")
    assert n["reference_id"] == "ref-12345678"
    assert n["occurred_at"] == "2026-01-02T03:04:05Z"
    assert n["tags"] == ["a", "b", "c"]
    assert n["user"] == {"identity": "u-9", "name": "Grace"}
    assert n["context"]["geo"] == "32.85,-96.9613"
    assert n["context"]["count"] == 3 and n["context"]["value"] == 10.5
    assert n["data"] == {"randomproperty": "true", "multi": ["1", "2"]}  # no credential, no empty value


async def test_get_submit_with_type_in_path_and_project_path(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    resp = await gateway.get(f"/api/v2/events/submit/usage?source=build&value=10&access_token={project.key}")
    assert resp.status == 200
    resp = await gateway.get(
        f"/api/v2/projects/{project.id}/events/submit/404?source=/nope", headers=bearer(project.key)
    )
    assert resp.status == 200
    resp = await gateway.get(
        f"/api/v2/projects/{project.id + 1000}/events/submit?message=x", headers=bearer(project.key)
    )
    assert resp.status == 403
    await drain(consumer)
    [usage] = await notices(query, user_token, project.id, "usage")
    assert usage["source"] == "build" and usage["context"]["value"] == 10
    [missing] = await notices(query, user_token, project.id, "404")
    assert missing["source"] == "/nope"


async def test_get_submit_data_exclusions_from_the_project_configuration(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    resp = await query.post(
        f"/api/v2/projects/{project.id}/config?key=@@DataExclusions",
        json="*password*,card",
        headers={"Api-Key": user_token},
    )
    assert resp.status == 200
    await reload_keys(gateway, query)
    resp = await gateway.get(
        "/api/v2/events/submit",
        params={
            "apikey": project.key,
            "message": "m",
            "user_password": "s3cret",
            "Card": "4111",
            "keep": "1",
        },
    )
    assert resp.status == 200
    await drain(consumer)
    [n] = await notices(query, user_token, project.id)
    assert n["data"] == {"keep": "1"}


async def test_get_submit_without_parameters_stores_nothing_and_needs_a_key(
    gateway, consumer, project: ProjectInfo
):
    resp = await gateway.get(f"/api/v2/events/submit?access_token={project.key}&message=")
    assert resp.status == 200
    assert await drain(consumer) == 0
    for path in (
        "/api/v2/events/submit?message=x",
        "/api/v2/events/submit?message=x&access_token=nope-nope-nope",
    ):
        resp = await gateway.get(path)
        assert resp.status == 401
        await assert_empty_or_json(resp)


# ---- heartbeat ----------------------------------------------------------------------------------


async def test_heartbeat_answers_200_empty_and_stores_nothing(gateway, consumer, project: ProjectInfo):
    for close in ("false", "true"):
        resp = await gateway.get(
            f"/api/v2/events/session/heartbeat?id=abc123&close={close}", headers=bearer(project.key)
        )
        assert resp.status == 200 and await resp.read() == b""
    assert await drain(consumer) == 0
    resp = await gateway.get("/api/v2/events/session/heartbeat?id=abc123")
    assert resp.status == 401


# ---- user descriptions --------------------------------------------------------------------------


def description_path(ref: str) -> str:
    return f"/api/v2/events/by-ref/{ref}/user-description"


async def test_user_description_arriving_before_its_event(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    ref = "0a1b2c3d4e"
    resp = await gateway.post(
        description_path(ref),
        headers=bearer(project.key),
        json={
            "email_address": "ada@example.com",
            "description": "I clicked pay twice",
            "data": {"browser": "x"},
        },
    )
    assert resp.status == 202 and await resp.read() == b""
    assert resp.headers[CONFIG_VERSION] == "0"
    await drain(consumer)
    assert await notices(query, user_token, project.id) == []  # nothing to show yet
    resp = await post(gateway, project.key, dotnet_error(reference_id=ref))
    assert resp.status == 202
    await drain(consumer)
    [n] = await notices(query, user_token, project.id, "error")
    assert n["user_description"] == {
        "email_address": "ada@example.com",
        "description": "I clicked pay twice",
        "data": {"browser": "x"},
    }


async def test_user_description_arriving_after_its_event_and_the_latest_wins(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    ref = "ffee0011aa"
    await post(gateway, project.key, dotnet_error(reference_id=ref))
    await post(gateway, project.key, dotnet_error(reference_id=ref))  # two notices, same reference id
    await drain(consumer)
    for text in ("first words", "second thoughts"):
        resp = await gateway.post(
            f"/api/v2/projects/{project.id}/events/by-ref/{ref}/user-description",
            headers=bearer(project.key),
            json={"description": text},
        )
        assert resp.status == 202
    await drain(consumer)
    stored = await notices(query, user_token, project.id, "error")
    assert [n["user_description"] for n in stored] == [{"description": "second thoughts"}] * 2


async def test_user_description_error_answers(gateway, consumer, project: ProjectInfo):
    ref = "1234567890"
    for body in (
        b"",
        b"not json",
        b"[]",
        orjson.dumps({"email_address": "a@b.c"}),
        orjson.dumps({"description": "  "}),
        orjson.dumps({"description": 5}),
    ):
        resp = await gateway.post(
            description_path(ref),
            data=body,
            headers={**bearer(project.key), "Content-Type": "application/json"},
        )
        assert resp.status == 400, body
        assert (await resp.json())["message"]
    resp = await gateway.post(
        description_path("short"), headers=bearer(project.key), json={"description": "d"}
    )
    assert resp.status == 404
    resp = await gateway.post(
        f"/api/v2/projects/{project.id + 1000}/events/by-ref/{ref}/user-description",
        headers=bearer(project.key),
        json={"description": "d"},
    )
    assert resp.status == 403
    resp = await gateway.post(description_path(ref), json={"description": "d"})
    assert resp.status == 401
    assert await drain(consumer) == 0


# ---- client configuration -------------------------------------------------------------------------


async def test_configuration_changes_reach_the_gateway(gateway, query, project: ProjectInfo, user_token):
    config = "/api/v2/projects/config"
    auth = {"Api-Key": user_token}
    resp = await gateway.get(f"{config}?v=0", headers=bearer(project.key))
    assert resp.status == 304
    for path in (config, f"{config}?v=7", f"{config}?v=junk", f"/api/v2/projects/{project.id}/config"):
        resp = await gateway.get(path, headers=bearer(project.key))
        assert resp.status == 200, path
        assert await resp.json() == {"version": 0, "settings": {}}

    manage = f"/api/v2/projects/{project.id}/config"
    resp = await query.post(f"{manage}?key=@@log:*", json="Info", headers=auth)
    assert resp.status == 200
    assert await resp.json() == {"version": 1, "settings": {"@@log:*": "Info"}}
    # The newer UI's body shape; key and value are trimmed.
    resp = await query.post(f"{manage}?key= feature ", json={"value": " on "}, headers=auth)
    assert await resp.json() == {"version": 2, "settings": {"@@log:*": "Info", "feature": "on"}}
    resp = await query.delete(f"{manage}?key=feature", headers=auth)
    assert await resp.json() == {"version": 3, "settings": {"@@log:*": "Info"}}
    resp = await query.delete(f"{manage}?key=feature", headers=auth)  # nothing to remove: no new version
    assert (await resp.json())["version"] == 3
    assert (await read_json(query, user_token, manage))["version"] == 3
    resp = await query.get(f"{manage}?v=3", headers=auth)
    assert resp.status == 304

    await reload_keys(gateway, query)
    resp = await gateway.get(f"{config}?v=0", headers=bearer(project.key))
    assert await resp.json() == {"version": 3, "settings": {"@@log:*": "Info"}}
    resp = await gateway.get(f"{config}?v=3", headers=bearer(project.key))
    assert resp.status == 304
    resp = await post(gateway, project.key, {"message": "after the change"})
    assert resp.headers[CONFIG_VERSION] == "3"


async def test_configuration_error_answers(gateway, query, project: ProjectInfo, user_token):
    manage = f"/api/v2/projects/{project.id}/config"
    auth = {"Api-Key": user_token}
    for path, body in (
        (manage, "x"),
        (f"{manage}?key=k", ""),
        (f"{manage}?key=k", "  "),
        (f"{manage}?key=k", 5),
        (f"{manage}?key=k", {"value": None}),
    ):
        resp = await query.post(path, json=body, headers=auth)
        assert resp.status == 400, (path, body)
        assert (await resp.json())["message"]
    resp = await query.post(f"{manage}?key=k", data=b"{oops", headers=auth)
    assert resp.status == 400
    resp = await query.delete(manage, headers=auth)
    assert resp.status == 400
    for method in ("get", "post", "delete"):
        missing = f"/api/v2/projects/{project.id + 1000}/config?key=k"
        resp = await getattr(query, method)(missing, json="v", headers=auth)
        assert resp.status == 404, method
        resp = await getattr(query, method)(f"{manage}?key=k", json="v", headers={"Api-Key": project.key})
        assert resp.status == 403, method
        resp = await getattr(query, method)(f"{manage}?key=k", json="v")
        assert resp.status == 401, method
    resp = await gateway.get("/api/v2/projects/config")
    assert resp.status == 401
    resp = await gateway.get("/api/v2/projects/config", headers=bearer(user_token))
    assert resp.status == 403
    resp = await gateway.get(f"/api/v2/projects/{project.id + 1000}/config", headers=bearer(project.key))
    assert resp.status == 403


async def test_user_description_and_its_event_in_one_worker_batch(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    ref = "5a5a5a5a5a"
    await gateway.post(description_path(ref), headers=bearer(project.key), json={"description": "same batch"})
    await post(gateway, project.key, dotnet_error(reference_id=ref))
    assert await drain(consumer) == 2
    [n] = await notices(query, user_token, project.id, "error")
    assert n["user_description"] == {"description": "same batch"}


async def test_a_refused_description_is_dead_lettered_and_the_batch_goes_on(
    gateway, query, consumer, redis, settings, project: ProjectInfo, user_token
):
    from shared import stream

    orphan = stream.Description(2_000_000_000, "0000aaaa11", {"description": "no such project"}, 1.0)
    entry_id = await redis.xadd(settings.notices_stream, stream.encode(orphan))
    resp = await post(gateway, project.key, {"type": "log", "message": "still stored"})
    assert resp.status == 202
    dead_before = consumer.dead
    assert await drain(consumer) == 2
    assert consumer.dead == dead_before + 1
    dead = await redis.xrevrange(settings.dead_stream, count=1)
    assert dead[0][1][b"id"] == entry_id and b"ForeignKeyViolation" in dead[0][1][b"reason"]
    [log] = await notices(query, user_token, project.id, "log")
    assert log["message"] == "still stored"


async def test_every_event_of_a_batch_counts_against_the_rate_limit(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    """The gateway counts a request as one notice (it does not parse the body); the worker counts the
    rest of a batch in the same window, so the next requests see the real count."""
    resp = await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"rate_limit_per_minute": 6}},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 200
    await reload_keys(gateway, query)
    await consumer.load_projects()
    if time.time() % 60 > 50:  # all of this must fall in one per-minute window
        await asyncio.sleep(60.5 - time.time() % 60)
    batch = [{"type": "log", "message": f"batched {i}"} for i in range(5)]
    assert (await post(gateway, project.key, batch)).status == 202  # counted 1
    await drain(consumer)  # counted 5
    assert (await post(gateway, project.key, {"type": "log", "message": "sixth"})).status == 202
    resp = await post(gateway, project.key, {"type": "log", "message": "seventh"})
    assert resp.status == 429 and await resp.read() == b""
    await drain(consumer)
    assert len(await notices(query, user_token, project.id, "log")) == 6


async def test_get_submit_never_stores_a_credential_as_data(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    """`key` is both a credential name and, repeated, was once stored as event data with the key in it."""
    resp = await gateway.get(
        f"/api/v2/events/submit?message=keyed&key={project.key}&key=x&note={project.key}"
    )
    assert resp.status == 200
    await drain(consumer)
    [log] = await notices(query, user_token, project.id, "log")
    assert log["message"] == "keyed"
    assert project.key not in orjson.dumps(log).decode()
