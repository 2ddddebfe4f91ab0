"""HTTP-level fuzzing of every ingest route through the real gateway: whatever comes in, never a 5xx.

Bodies (random bytes, random JSON, near-valid payloads), credentials in every form and of every kind,
content types and encodings (really compressed, or lying about it) are drawn by Hypothesis and sent to
the gateway on its loopback socket. Afterwards a worker drains what was accepted: nothing the gateway
acknowledged may end in the dead-letter stream.
"""

from __future__ import annotations

import base64
import gzip
import os
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import brotli
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from services.worker.consumer import Consumer
from shared.settings import Settings
from tests.conftest import ProjectInfo, make_project, reload_keys
from tests.fuzz.payloads import AIRBRAKE, CRASHLOG, EXCEPTIONER, EXCEPTIONLESS, SENTRY_EVENT, envelope
from tests.fuzz.stored import assert_all_stored
from tests.fuzz.strategies import FUZZ, as_json, json_values, near_valid, text

# Requests per protocol family: ~180 in all, a few seconds (FAULTLINE_FUZZ_HTTP_EXAMPLES for a long hunt).
PER_PROTOCOL = int(os.environ.get("FAULTLINE_FUZZ_HTTP_EXAMPLES") or 30)
HTTP = settings(FUZZ, max_examples=PER_PROTOCOL)
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
REFERENCE = st.from_regex(r"[A-Za-z0-9-]{8,40}", fullmatch=True)


@dataclass
class Context:
    """What a drawn request may refer to: the fuzz project, its key, a user token."""

    project: ProjectInfo
    token: str
    sent: dict[int, int] = field(default_factory=dict)  # status -> count, for the report


@pytest.fixture(scope="module")
async def fuzz(pool: Any, gateway: TestClient, query: TestClient, user_token: str) -> Context:
    """A project of the module's own (no rate limit), created once: Hypothesis reruns the test body."""
    project = await make_project(pool, "fuzz-http")
    await reload_keys(gateway, query)
    return Context(project, user_token)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    params: list[tuple[str, str]]
    body: bytes | None
    chunked: bool

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return (
            f"{self.method} {self.path} params={self.params} headers={self.headers} body={self.body!r:.300}"
        )


def _compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    return zlib.compress(data)


@st.composite
def credential(draw: st.DrawFn, ctx: Context) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Headers and query parameters carrying a credential in one of the forms the protocols use."""
    if draw(st.integers(0, 9)) < 7:
        key = ctx.project.key
    else:
        key = draw(st.sampled_from([ctx.token, "0" * 32, "", " "]) | ASCII)
    how = draw(
        st.sampled_from(
            ["api-key", "bearer", "query"] * 3
            + ["sentry", "sentry-query", "airbrake", "basic", "token", "crashlog", "conflict", "none"]
        )
    )
    if how == "api-key":
        return {"Api-Key": key}, []
    if how == "bearer":
        return {"Authorization": f"Bearer {key}"}, []
    if how == "query":
        return {}, [(draw(st.sampled_from(["api_key", "key", "access_token", "apikey", "auth_token"])), key)]
    if how == "sentry":
        return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7, sentry_client=fuzz/1"}, []
    if how == "sentry-query":
        return {}, [("sentry_key", key), ("sentry_version", "7")]
    if how == "airbrake":
        return {"X-Airbrake-Token": key}, []
    if how == "basic":
        user = draw(st.sampled_from(["", "client", key]))
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}, []
    if how == "token":
        return {"Authorization": f'Token token="{key}"'}, []
    if how == "crashlog":
        return {"Authorization": f"CrashLog {key}:signature"}, []
    if how == "conflict":
        return {"Api-Key": key}, [("sentry_key", draw(ASCII))]
    return {}, []


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        near_valid(valid).map(as_json),
        st.just(as_json(valid)),
        json_values.map(as_json),
        st.binary(max_size=200),
    )


def sentry_bodies() -> st.SearchStrategy[bytes]:
    item = st.tuples(
        st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["event", "session", "attachment"])}), json_values
        ),
        bodies(SENTRY_EVENT),
        st.booleans(),
    )
    envelopes = st.builds(
        envelope, st.one_of(st.just({}), json_values), st.lists(item, max_size=3), st.booleans()
    )
    return st.one_of(envelopes, bodies(SENTRY_EVENT))


def crashlog_bodies() -> st.SearchStrategy[bytes]:
    form = near_valid(CRASHLOG).map(lambda d: urlencode({"payload": as_json(d).decode()}).encode())
    pairs = st.lists(st.tuples(text, text), max_size=5).map(lambda p: urlencode(p).encode())
    return st.one_of(bodies(CRASHLOG), bodies({"payload": CRASHLOG}), form, pairs)


# Per protocol family: the routes ({pid} a project id, {ref} a reference id) and what to post there.
FAMILIES: dict[str, tuple[list[tuple[str, str]], st.SearchStrategy[bytes] | None]] = {
    "exceptioner": ([("POST", "/v1/notices")], bodies(EXCEPTIONER)),
    "crashlog": ([("POST", "/notify")], crashlog_bodies()),
    "sentry": (
        [
            ("POST", "/api/{pid}/envelope/"),
            ("POST", "/api/{pid}/envelope"),
            ("POST", "/api/{pid}/store/"),
            ("POST", "/api/{pid}/store"),
        ],
        sentry_bodies(),
    ),
    "airbrake": ([("POST", "/api/v3/projects/{pid}/notices")], bodies(AIRBRAKE)),
    "exceptionless-post": (
        [
            ("POST", "/api/v2/events"),
            ("POST", "/api/v2/projects/{pid}/events"),
            ("POST", "/api/v2/events/by-ref/{ref}/user-description"),
            ("POST", "/api/v2/projects/{pid}/events/by-ref/{ref}/user-description"),
        ],
        st.one_of(
            bodies(EXCEPTIONLESS),
            bodies({"description": "d", "email_address": "a@b.c"}),
            st.lists(st.sampled_from([EXCEPTIONLESS, {"type": "heartbeat"}, None]), max_size=4).map(as_json),
            st.text(max_size=200).map(str.encode),
        ),
    ),
    "exceptionless-get": (
        [
            ("GET", "/api/v2/events/submit"),
            ("GET", "/api/v2/events/submit/{type}"),
            ("GET", "/api/v2/projects/{pid}/events/submit"),
            ("GET", "/api/v2/projects/{pid}/events/submit/{type}"),
            ("GET", "/api/v2/events/session/heartbeat"),
            ("GET", "/api/v2/projects/config"),
            ("GET", "/api/v2/projects/{pid}/config"),
        ],
        None,
    ),
}
PARAM_NAMES = (
    st.sampled_from(
        [
            "type",
            "source",
            "message",
            "reference",
            "date",
            "count",
            "value",
            "geo",
            "tags",
            "identity",
            "identity.name",
            "v",
            "id",
            "close",
        ]
    )
    | ASCII
)


@st.composite
def requests(draw: st.DrawFn, ctx: Context, family: str) -> Request:
    routes, body_strategy = FAMILIES[family]
    method, template = draw(st.sampled_from(routes))
    pid = draw(st.sampled_from([ctx.project.id] * 4 + [ctx.project.id + 100_000, 0]))
    path = template.format(
        pid=pid, ref=draw(REFERENCE), type=draw(st.sampled_from(["error", "log", "usage"]))
    )
    headers, params = draw(credential(ctx))
    params = params + draw(st.lists(st.tuples(PARAM_NAMES, text), max_size=5))
    content_type = draw(
        st.sampled_from(
            [
                None,
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "text/plain;charset=UTF-8",
                "application/x-www-form-urlencoded",
                "application/x-sentry-envelope",
                "application/octet-stream",
                "multipart/form-data; boundary=x",
                "application/vnd.x+json",
            ]
        )
        | ASCII
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = draw(body_strategy) if body_strategy is not None else None
    encoding = draw(
        st.sampled_from([None, None, "gzip", "deflate", "br", "lie-gzip", "compress", "identity"])
    )
    if body is not None and encoding in ("gzip", "deflate", "br"):
        body = _compress(encoding, body)
    if encoding is not None:
        headers["Content-Encoding"] = "gzip" if encoding == "lie-gzip" else encoding
    if draw(st.booleans()):
        headers["X-Request-Id"] = draw(ASCII)
    return Request(method, path, headers, params, body, draw(st.booleans()))


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 97):
        yield body[i : i + 97]


async def send(gateway: TestClient, req: Request) -> int:
    data: Any = req.body
    if req.body is not None and req.chunked:
        data = _chunks(req.body)
    async with gateway.request(
        req.method,
        req.path,
        params=req.params,
        headers=req.headers,
        data=data,
        skip_auto_headers=["Content-Type"],
    ) as resp:
        payload = await resp.read()
        assert resp.status < 500, (resp.status, payload[:500])
        if payload and resp.content_type == "application/json":
            orjson.loads(payload)  # every protocol's clients parse a JSON answer
        return resp.status


@pytest.mark.parametrize("family", list(FAMILIES))
@HTTP
@given(data=st.data())
async def test_ingest_routes_never_answer_5xx(
    gateway: TestClient, fuzz: Context, family: str, data: st.DataObject
) -> None:
    status = await send(gateway, data.draw(requests(fuzz, family)))
    fuzz.sent[status] = fuzz.sent.get(status, 0) + 1


async def test_accepted_fuzz_notices_are_all_stored(
    fuzz: Context, consumer: Consumer, redis: aioredis.Redis, settings: Settings
) -> None:
    """What the gateway acknowledged, a worker writes: nothing of it is dead-lettered."""
    assert sum(n for s, n in fuzz.sent.items() if s < 300) > 0, fuzz.sent  # the fuzz reached the write path
    await assert_all_stored(consumer, redis, settings)
