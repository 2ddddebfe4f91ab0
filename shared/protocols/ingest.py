"""What every protocol's gateway face shares: the credential, the body within its caps, and queueing.

The gateway service puts its settings, key cache and publisher on the application under these keys;
protocol handlers reach them only through the functions here, so no protocol module knows the
gateway's wiring and the worker can import a protocol module for its decoder alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shared import ids, stream
from shared.keys import Credential, KeyCache, Project, origin_allowed
from shared.settings import Settings
from shared.stream import DUPLICATE, Limit, Publisher, QueueUnavailable, RateLimited, RawNotice
from shared.web import KEY_RESOLVED, METRICS, UNKNOWN_KEY, ApiError, UnknownKey, credential, read_body

SETTINGS = web.AppKey("settings", Settings)
KEYS = web.AppKey("keys", KeyCache)
PUBLISHER = web.AppKey("publisher", Publisher)
BODY = web.RequestKey("body", bytes)
RETRY_AFTER = "5"


@dataclass(slots=True)  # not frozen: one is made per request, and frozen dataclasses are slow to make
class Ids:
    """The ids a notice gets at the gateway, before it is queued."""

    notice_id: str  # UUIDv7: its time is the received time
    location_id: str  # UUIDv4
    received_at: float  # epoch seconds, from the notice id

    @classmethod
    def new(cls) -> Ids:
        notice_id, location_id, ms = ids.notice_ids()
        return cls(notice_id, location_id, ms / 1000)


def authenticate(request: web.Request, key: str | None = None) -> Project:
    """The project whose client key came with the request; 401 without a valid one, 403 for a user token."""
    if key is None:
        key = credential(request)
    if not key:
        raise ApiError(401, "Requires authentication: send the project's API key")
    keys = request.app[KEYS]
    cred: Credential | None = keys.lookup(key)
    if cred is None:
        if keys.worth_looking_up(key) and KEY_RESOLVED not in request:
            raise UnknownKey(key)  # looked up by the route's guard (shared.web), which runs the handler again
        raise ApiError(401, UNKNOWN_KEY)
    if cred.project is None:
        raise ApiError(403, "A user-scoped token cannot submit notices; use the project's client key")
    origin = request.headers.get("Origin")
    if origin and not origin_allowed(
        cred.project.settings, origin
    ):  # a browser page (services/gateway/cors.py)
        raise ApiError(
            403, f"Origin {origin[:200]} is not allowed for this project (its allowed_origins setting)"
        )
    return cred.project


async def body(request: web.Request, cap: int | None = None) -> bytes:
    """The decompressed request body within the configured caps (and a route's own `cap`, both sides).

    Kept on the request: a handler run again after its key was looked up (UnknownKey) gets it again.
    """
    if len(request) and (kept := request.get(BODY)) is not None:
        return kept
    s = request.app[SETTINGS]
    if cap is None:
        raw = await read_body(request, s.max_body, s.max_decompressed)
    else:
        raw = await read_body(request, min(s.max_body, cap), min(s.max_decompressed, cap))
    request[BODY] = raw
    return raw


def unavailable(reason: str) -> ApiError:
    return ApiError(503, reason, headers={"Retry-After": RETRY_AFTER})


def rate_limited(limit: int, retry_after: int) -> ApiError:
    """429 carrying every protocol's way of saying when to come back."""
    return ApiError(
        429,
        f"Rate limit of {limit} notices per minute exceeded; retry in {retry_after}s",
        headers={
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Delay": str(retry_after),  # Airbrake notifiers
            "X-Sentry-Rate-Limits": f"{retry_after}::project:rate_limited",  # Sentry SDKs
        },
    )


def limit_of(project: Project) -> int | None:
    value = project.settings.get("rate_limit_per_minute")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


DEFAULT_ENVIRONMENT = "production"


def default_environment(settings: dict[str, Any]) -> str:
    """A project's `default_environment` setting: what a notice without one is filed under ("" = none)."""
    value = settings.get("default_environment", DEFAULT_ENVIRONMENT)
    return value if isinstance(value, str) else DEFAULT_ENVIRONMENT


def patterns(project: Project, name: str) -> tuple[str, ...]:
    """A project's `app_patterns` / `library_patterns` setting (grouping)."""
    value = project.settings.get(name)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


async def queue(
    request: web.Request,
    project: Project,
    entries: list[RawNotice | stream.Description | stream.Deploy],
    once: list[str] | None = None,
) -> list[bool]:
    """Queue one request's entries, counted against the project's rate limit in the same Redis call.

    Returns, per entry, whether it was queued (False: its once-key was seen within the hour).
    Answers 429 over the limit and 503 when Redis cannot take them; a 2xx may follow only a return.
    """
    if not entries:
        return []
    app = request.app
    limit = limit_of(project)
    counted = (
        Limit(stream.rate_key(app[SETTINGS].stream_prefix, project.id, time.time_ns() // 1_000_000), limit)
        if limit
        else None
    )
    try:
        stream_ids = await app[PUBLISHER].publish(
            [stream.encode(e) for e in entries], once, counted, project_id=project.id
        )
    except RateLimited as e:
        raise rate_limited(e.limit, e.retry_after) from e
    except QueueUnavailable as e:
        raise unavailable(str(e)) from e
    metrics = app[METRICS]
    queued = []
    for entry, sid in zip(entries, stream_ids, strict=True):
        ok = sid != DUPLICATE
        queued.append(ok)
        if ok and type(entry) is RawNotice:
            metrics.inc_series("notices_accepted_total", (("protocol", entry.protocol),))
    return queued
