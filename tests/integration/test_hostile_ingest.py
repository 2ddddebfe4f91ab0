"""Hostile bodies on every protocol (issue 13, findings 2, 3, 4): what a gateway acknowledges is stored.

Each protocol gets deep nesting, NaN / infinite / far-future times, integers past 64 bits and lists
far past their caps, over real HTTP, a real stream, the worker step and PostgreSQL. Every answer is
either the protocol's own 4xx or a 2xx after which the notice is stored (with a note saying what was
cut); never a dead letter after a 2xx.
"""

from __future__ import annotations

import gzip
import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from shared.protocols import bounds
from tests.conftest import ProjectInfo, drain

ENVELOPE = "application/x-sentry-envelope"


@pytest.fixture(autouse=True)
async def _no_leftovers(consumer) -> None:
    await drain(consumer)


def deep(levels: int, leaf: Any = "bottom") -> Any:
    value = leaf
    for i in range(levels):
        value = {"k": value} if i % 2 else [value]
    return value


def deep_text(levels: int) -> bytes:
    """JSON nested `levels` deep, written out (orjson itself refuses to write more than 255)."""
    return b'{"k":' * levels + b'"bottom"' + b"}" * levels


# ---- one sender per route: (free-form JSON fragment, time, frames) -> (status, answer body) ----


async def exceptioner(gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int) -> tuple[int, Any]:
    trace = orjson.dumps([f"app/models/x.rb:{i}:in `f{i}'" for i in range(n)])
    body = (
        b'{"message": "E: hostile", "error": {"exception": "E", "mode": "production", "backtrace": '
        + trace
        + b', "parameters": {"x": '
        + extra
        + b', "when": '
        + when
        + b"}}}"
    )
    resp = await gw.post(
        "/v1/notices", data=io.BytesIO(body), headers={"Api-Key": p.key, "Content-Type": "application/json"}
    )
    return resp.status, await resp.json()


async def crashlog(gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int) -> tuple[int, Any]:
    trace = orjson.dumps(
        [
            {"file": f"/app/x{i}.rb", "number": i + 1, "method": f"f{i}", "pre_context": ["a"] * 3}
            for i in range(n)
        ]
    )
    body = (
        b'{"notifier": {"name": "crashlog"}, "event": {"class_name": "E", "message": "hostile", "timestamp": '
        + when
        + b'}, "backtrace": '
        + trace
        + b', "environment": {"name": "production"}, "context": {"x": '
        + extra
        + b"}}"
    )
    resp = await gw.post(
        f"/notify?auth_token={p.key}", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
    )
    return resp.status, await resp.json()


async def airbrake(gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int) -> tuple[int, Any]:
    frames = orjson.dumps([{"file": f"/app/x{i}.py", "line": i + 1, "function": f"f{i}"} for i in range(n)])
    first = b'{"type": "E", "message": "hostile", "backtrace": ' + frames + b"}"
    errors = b",".join([first] + [b'{"type": "C", "message": "cause", "backtrace": []}'] * (min(n, 30) - 1))
    body = (
        b'{"errors": [' + errors + b'], "context": {"when": ' + when + b'}, "params": {"x": ' + extra + b"}}"
    )
    resp = await gw.post(f"/api/v3/projects/{p.id}/notices?key={p.key}", data=io.BytesIO(body))
    return resp.status, await resp.json()


def _sentry_event(extra: bytes, when: bytes, n: int) -> bytes:
    frames = orjson.dumps([{"filename": f"x{i}.py", "function": f"f{i}", "lineno": i + 1} for i in range(n)])
    crumbs = orjson.dumps([{"message": f"c{i}"} for i in range(n)])
    tags = orjson.dumps({f"t{i}": "v" for i in range(n)})
    return (
        b'{"event_id": "' + uuid.uuid4().hex.encode() + b'", "timestamp": ' + when
        + b', "exception": {"values": [{"type": "E", "value": "hostile", "stacktrace": {"frames": '
        + frames + b"}}]}, " + b'"breadcrumbs": {"values": ' + crumbs + b"}, " + b'"tags": ' + tags
        + b', "extra": {"x": ' + extra + b"}}"
    )  # fmt: skip


async def sentry_envelope(
    gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int
) -> tuple[int, Any]:
    event = _sentry_event(extra, when, n)
    body = orjson.dumps({"event_id": uuid.uuid4().hex}) + b'\n{"type": "event"}\n' + event + b"\n"
    resp = await gw.post(
        f"/api/{p.id}/envelope/",
        data=io.BytesIO(body),
        headers={"X-Sentry-Auth": f"Sentry sentry_key={p.key}", "Content-Type": ENVELOPE},
    )
    return resp.status, await resp.json()


async def sentry_store(gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int) -> tuple[int, Any]:
    resp = await gw.post(
        f"/api/{p.id}/store/",
        data=io.BytesIO(_sentry_event(extra, when, n)),
        headers={"X-Sentry-Auth": f"Sentry sentry_key={p.key}", "Content-Type": "application/json"},
    )
    return resp.status, await resp.json()


async def exceptionless(gw: TestClient, p: ProjectInfo, extra: bytes, when: bytes, n: int) -> tuple[int, Any]:
    frames = orjson.dumps(
        [{"name": f"f{i}", "file_name": f"x{i}.cs", "line_number": i + 1} for i in range(n)]
    )
    tags = orjson.dumps([f"t{i}" for i in range(n)])
    body = (
        b'{"type": "error", "message": "hostile", "date": ' + when + b', "tags": ' + tags
        + b', "data": {"@error": {"type": "E", "message": "hostile", "stack_trace": ' + frames
        + b'}, "x": ' + extra + b"}}"
    )  # fmt: skip
    resp = await gw.post(
        "/api/v2/events",
        data=io.BytesIO(body),
        headers={"Authorization": f"Bearer {p.key}", "Content-Type": "application/json"},
    )
    return resp.status, (await resp.read()) or None


Sender = Callable[..., Any]
SENDERS: dict[str, Sender] = {
    "exceptioner": exceptioner,
    "crashlog": crashlog,
    "airbrake": airbrake,
    "sentry-envelope": sentry_envelope,
    "sentry-store": sentry_store,
    "exceptionless": exceptionless,
}
PARSED_AT_GATEWAY = {"exceptioner", "crashlog", "airbrake", "sentry-store"}  # JSON read before answering

HOSTILE_VALUES: dict[str, tuple[bytes, bytes]] = {  # name -> (free-form value, time)
    "nesting past the stored depth": (orjson.dumps(deep(100)), b"1700000000"),
    "nesting past the gateway's depth": (orjson.dumps(deep(200)), b"1700000000"),
    "nesting past orjson's 1024": (deep_text(1100), b"1700000000"),
    "integers past 64 bits": (b"[18446744073709551616, -99999999999999999999999, 1e308]", b"1700000000"),
    "NaN and Infinity literals": (b"[NaN, Infinity, -Infinity, 1e400]", b"1700000000"),
    "time nan": (b"1", b'"nan"'),
    "time inf": (b"1", b'"inf"'),
    "time year 11476": (b"1", b"300000000000"),
    "time 1e308": (b"1", b"1e308"),
    "time as a huge integer": (b"1", b"123456789012345678901234567890"),
}


async def _stored(pool, project_id: int) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT body, occurred_at, location_id FROM notices WHERE project_id = $1", project_id
        )
    return [dict(r) for r in rows]


@pytest.mark.parametrize("protocol", list(SENDERS))
async def test_every_hostile_value_is_refused_or_stored_never_dead_lettered(
    gateway, query, consumer, pool, project, user_token, protocol
):
    send = SENDERS[protocol]
    accepted: list[str] = []
    for name, (extra, when) in HOSTILE_VALUES.items():
        status, answer = await send(gateway, project, extra, when, 3)
        if status < 300:
            accepted.append(name)
        else:
            assert status == 400, (name, status, answer)
            assert protocol in PARSED_AT_GATEWAY, (name, "only a gateway that parses may refuse")
            if protocol == "exceptionless":
                continue
            message = answer.get("message") or answer.get("detail")
            assert "JSON" in message, (name, answer)  # the protocol's own 400, saying why
    dead_before = consumer.dead
    await drain(consumer)
    assert consumer.dead == dead_before, f"{protocol}: a 2xx was dead-lettered"
    rows = await _stored(pool, project.id)
    assert len(rows) == len(accepted), (accepted, len(rows))
    # The depth the gateway accepts is stored, truncated below MAX_DEPTH, with a note.
    assert "nesting past the stored depth" in accepted
    assert any(
        f"nested deeper than {bounds.MAX_DEPTH} levels: truncated" in r["body"].get("notes", []) for r in rows
    )
    if protocol in PARSED_AT_GATEWAY:
        assert (
            "nesting past the gateway's depth" not in accepted
            and "nesting past orjson's 1024" not in accepted
        )
    for r in rows:  # every stored time is one the API can show, and /locate finds every notice
        assert r["occurred_at"] is None or 1970 <= r["occurred_at"].year <= 9999
    for r in rows[:3]:
        resp = await query.get(
            f"/api/locate/{r['location_id']}", headers={"Authorization": f"Bearer {user_token}"}
        )
        assert resp.status == 200, await resp.text()


async def test_crashlog_far_future_timestamp_is_left_out_with_a_note_and_located(
    gateway, query, consumer, pool, project, user_token
):
    """The red-team reproduction: "timestamp": 300000000000 (year 11476) was 201, then dead-lettered."""
    status, answer = await crashlog(gateway, project, b"1", b"300000000000", 1)
    assert status == 201
    await drain(consumer)
    [row] = await _stored(pool, project.id)
    assert row["occurred_at"] is None and "Event.timestamp: invalid, left out" in row["body"]["notes"]
    resp = await query.get(f"/locate/{answer['location_id']}", allow_redirects=False)
    assert resp.status == 301


async def test_sentry_nan_timestamp_is_stored_at_the_received_time(gateway, consumer, pool, project):
    status, _ = await sentry_envelope(gateway, project, b"1", b'"nan"', 1)
    assert status == 200
    await drain(consumer)
    [row] = await _stored(pool, project.id)
    assert abs(row["occurred_at"].timestamp() - time.time()) < 600


# ---- every list a body can hold is cut while it is built, and the cut is noted ------------------

CUT_NOTES = {
    "exceptioner": ["error.backtrace: 500 of 5000 kept"],
    "crashlog": ["backtrace: 500 of 5000 kept"],
    "airbrake": ["errors: 20 of 30 kept", "errors[].backtrace: 500 of 5000 kept"],
    "sentry-envelope": [
        "stacktrace.frames: 500 of 5000 kept",
        "breadcrumbs: 100 of 5000 kept",
        "request and tag maps: 1000 of 5000 kept",
    ],
    "sentry-store": ["stacktrace.frames: 500 of 5000 kept", "breadcrumbs: 100 of 5000 kept"],
    "exceptionless": ["@error.stack_trace: 500 of 5000 kept", "tags: 1000 of 5000 kept"],
}


@pytest.mark.parametrize("protocol", list(SENDERS))
async def test_every_list_is_bounded_while_building_with_a_note(gateway, consumer, pool, project, protocol):
    status, answer = await SENDERS[protocol](gateway, project, b"1", b"1700000000", 5000)
    assert status < 300, answer
    await drain(consumer)
    [row] = await _stored(pool, project.id)
    body = row["body"]
    for text in CUT_NOTES[protocol]:
        assert text in body["notes"], body["notes"]
    assert len(body["exceptions"]) <= bounds.MAX_CHAIN
    assert all(len(e["frames"]) <= bounds.MAX_FRAMES for e in body["exceptions"])
    assert len(body.get("tags", [])) <= bounds.MAX_TAGS
    assert len(body.get("context", {}).get("breadcrumbs", [])) <= bounds.MAX_BREADCRUMBS


async def test_context_lines_and_code_hunks_are_bounded(gateway, consumer, pool, project):
    body = {
        "errors": [
            {
                "type": "E",
                "message": "m",
                "backtrace": [
                    {
                        "file": "x.py",
                        "line": 5000,
                        "function": "f",
                        "code": {str(i): "x" for i in range(10000)},
                    }
                ],
            }
        ]
    }
    resp = await gateway.post(f"/api/v3/projects/{project.id}/notices?key={project.key}", json=body)
    assert resp.status == 201
    await drain(consumer)
    [row] = await _stored(pool, project.id)
    [frame] = row["body"]["exceptions"][0]["frames"]
    assert len(frame["pre_context"]) == len(frame["post_context"]) == bounds.MAX_CONTEXT_LINES
    assert frame["pre_context"][-1] == "x" and "backtrace.code: 50 of 5000 kept" in row["body"]["notes"]


# ---- Sentry: one event item per envelope (finding 3) --------------------------------------------


async def test_200000_event_items_in_a_small_gzip_are_refused_quickly(gateway, consumer, project):
    item = b'{"type":"event"}\n{"message":"x"}\n'
    body = gzip.compress(orjson.dumps({"event_id": uuid.uuid4().hex}) + b"\n" + item * 200_000)
    assert len(body) < 100_000
    started = time.monotonic()
    resp = await gateway.post(
        f"/api/{project.id}/envelope/",
        data=io.BytesIO(body),
        headers={
            "X-Sentry-Auth": f"Sentry sentry_key={project.key}",
            "Content-Type": ENVELOPE,
            "Content-Encoding": "gzip",
        },
    )
    elapsed = time.monotonic() - started
    assert resp.status == 400 and (await resp.json()) == {"detail": "invalid envelope: duplicate item: event"}
    assert elapsed < 2.0, elapsed  # the split stops at the second event item (was 7 s)
    assert await drain(consumer) == 0
    # Any other item type is capped too.
    body = gzip.compress(b"{}\n" + b'{"type":"session"}\n{}\n' * 200_000)
    resp = await gateway.post(
        f"/api/{project.id}/envelope/",
        data=io.BytesIO(body),
        headers={
            "X-Sentry-Auth": f"Sentry sentry_key={project.key}",
            "Content-Type": ENVELOPE,
            "Content-Encoding": "gzip",
        },
    )
    assert resp.status == 400 and "more than 1000 items" in (await resp.json())["detail"]
