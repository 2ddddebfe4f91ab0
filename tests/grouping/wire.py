"""Wire requests of every protocol whose grouping is pinned (tests/grouping/pinned.json).

Each is what a real client sends (the fuzzers' seeds and the benchmark's shapes), so the pins say
what the whole path makes of them: request -> stored notice -> (environment, fingerprint).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson

from tests.bench import payloads as bench
from tests.bench.stack import Project
from tests.fuzz import payloads as seeds

VARIANTS = 12


def _fresh_event_id(r: bench.Request) -> bench.Request:
    """Each Sentry request its own event id, so deduplication keeps every one."""
    return bench.Request(
        r.method, r.path, r.headers, r.body.replace(bench.UNIQUE.encode(), uuid.uuid4().hex.encode())
    )


def requests(p: Project) -> Iterator[tuple[str, bench.Request]]:
    """(name, request) pairs, always in the same order."""
    for proto in (*bench.PROTOCOLS, bench.BATCHED):
        for shape in proto.shapes:
            for v in range(VARIANTS):
                yield f"{proto.name}/{shape.__name__}/{v}", _fresh_event_id(shape(p, v, proto.per_request))
    json = {"Content-Type": "application/json"}
    yield (
        "seed/exceptioner",
        bench.Request("POST", "/v1/notices", {"Api-Key": p.key, **json}, orjson.dumps(seeds.EXCEPTIONER)),
    )
    yield (
        "seed/crashlog",
        bench.Request("POST", "/notify", {"Api-Key": p.key, **json}, orjson.dumps(seeds.CRASHLOG)),
    )
    for name, event in (
        ("exceptionless", seeds.EXCEPTIONLESS),
        ("exceptionless-pypi", seeds.PYPI_EXCEPTIONLESS),
    ):
        yield (
            f"seed/{name}",
            bench.Request(
                "POST", "/api/v2/events", {"Authorization": f"Bearer {p.key}", **json}, orjson.dumps(event)
            ),
        )
    auth = {"X-Sentry-Auth": f"Sentry sentry_key={p.key}, sentry_version=7"}
    event = {**seeds.SENTRY_EVENT, "event_id": uuid.uuid4().hex}
    yield (
        "seed/sentry-store",
        bench.Request("POST", f"/api/{p.id}/store/", {**auth, **json}, orjson.dumps(event)),
    )
    event = {**seeds.SENTRY_EVENT, "event_id": uuid.uuid4().hex}
    body = seeds.envelope(
        {"event_id": event["event_id"]}, [({"type": "event"}, orjson.dumps(event), True)], True
    )
    yield (
        "seed/sentry-envelope",
        bench.Request(
            "POST", f"/api/{p.id}/envelope/", {**auth, "Content-Type": "application/x-sentry-envelope"}, body
        ),
    )
    yield (
        "seed/airbrake",
        bench.Request(
            "POST",
            f"/api/v3/projects/{p.id}/notices",
            {"Api-Key": p.key, **json},
            orjson.dumps(seeds.AIRBRAKE),
        ),
    )
