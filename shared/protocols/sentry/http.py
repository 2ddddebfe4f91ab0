"""Sentry's gateway face: `POST /api/{project_id}/envelope/` and the legacy `POST /api/{project_id}/store/`.

The real SDKs (sentry-sdk, @sentry/node, ...) report here unmodified with a DSN
`http://{client_key}@{gateway host:port}/{project_id}`. The gateway reads the envelope's framing
(header and item headers, never an event payload when the header names the event) and queues the
body whole when it holds an `event` or `log` item; the worker turns each event item into a notice and
each log record into a log notice. Envelopes of sessions, transactions, spans, client reports, ...
alone are answered and not queued; each such item is counted by type (sentry_items_dropped_total).

A repeated event_id is stored once: the queueing script claims `(project, event_id)` with
`SET NX EX` in the same call as the XADD, so a notice that could not be queued claims nothing.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from shared import stream
from shared.keys import Project
from shared.protocols import bounds
from shared.protocols.ingest import SETTINGS, Ids, authenticate, body, queue
from shared.protocols.sentry import wire
from shared.stream import RawNotice
from shared.web import METRICS, ApiError, credential, error_shape, json_response

NAME = "sentry"

logger = logging.getLogger(__name__)

DEFAULT_RETRY = "60"  # what Relay suggests when a limit names no time
ENVELOPE_TYPE = "application/x-sentry-envelope"
_NUMBER = re.compile(r"\d+")


# ---- auth ------------------------------------------------------------------------------------


def auth_fields(value: str | None) -> dict[str, str]:
    """`Sentry sentry_key=abc, sentry_version=7, ...` (X-Sentry-Auth or Authorization) as a dict
    (remembered per distinct value: an SDK sends the same one every time; do not change it)."""
    return _auth_fields(value) if value else {}


@functools.lru_cache(maxsize=256)
def _auth_fields(value: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "sentry":
        return {}
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name.strip().lower()] = val.strip().strip('"')
    return fields


def pick_key(headers: Mapping[str, str], query: Mapping[str, str], generic: str | None) -> str | None:
    """The one key the request carries, from any Sentry or generic form; 400 when they disagree."""
    found = {
        auth_fields(headers.get("X-Sentry-Auth")).get("sentry_key"),
        auth_fields(headers.get("Authorization")).get("sentry_key"),
        query.get("sentry_key"),
        generic,
    }
    keys = {k.strip() for k in found if k and k.strip()}
    if len(keys) > 1:
        raise ApiError(400, "Multiple conflicting authorization payloads; send the key once")
    return keys.pop() if keys else None


_OTHER_KEY_HEADERS = ("Authorization", "Api-Key", "X-Airbrake-Token")


def _key(request: web.Request) -> str | None:
    headers = request.headers
    sentry_auth = headers.get("X-Sentry-Auth")
    if sentry_auth and not request.query_string and not any(h in headers for h in _OTHER_KEY_HEADERS):
        # What the SDKs send: the key in X-Sentry-Auth alone, so no other form can disagree with it.
        return (auth_fields(sentry_auth).get("sentry_key") or "").strip() or None
    return pick_key(headers, request.query, credential(request))


def _project(request: web.Request) -> Project:
    project = authenticate(request, _key(request))
    if str(project.id) != request.match_info["project_id"]:
        raise ApiError(403, f"This key does not belong to project {request.match_info['project_id']}")
    return project


# ---- answers ---------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def sentry_error(e: ApiError) -> ApiError:
    """Relay's error shape `{"detail"}`; a 429 always carries both headers the SDKs honour."""
    headers = dict(e.headers)
    if e.status == 429:
        limits = _header(headers, "X-Sentry-Rate-Limits")
        retry = _header(headers, "Retry-After") or _header(headers, "X-RateLimit-Delay")
        if retry is None and limits and (m := _NUMBER.match(limits.strip())):
            retry = m.group()
        retry = retry or DEFAULT_RETRY
        if _header(headers, "Retry-After") is None:
            headers["Retry-After"] = retry
        if limits is None:
            headers["X-Sentry-Rate-Limits"] = f"{retry}::project"
    return ApiError(e.status, str(e), {"detail": str(e)}, headers)


# ---- queueing --------------------------------------------------------------------------------


async def _queue_once(
    request: web.Request, project: Project, event_id: str, raw: bytes, facts: dict[str, Any]
) -> None:
    """Queue the body unless this project's event id was seen in the last hour."""
    new = Ids.new()
    if request.remote:
        facts["ip"] = request.remote
    entry = RawNotice(NAME, new.notice_id, new.location_id, project.id, raw, "", facts)
    once = stream.once_key(request.app[SETTINGS].stream_prefix, project.id, event_id)
    await queue(request, project, [entry], [once])


# Item types counted by name in sentry_items_dropped_total; any other type is counted as "other".
DROPPED_TYPES = frozenset(
    {
        "transaction",
        "span",
        "session",
        "sessions",
        "client_report",
        "attachment",
        "check_in",
        "profile",
        "profile_chunk",
        "replay_event",
        "replay_recording",
        "replay_video",
        "statsd",
        "metric_buckets",
        "user_report",
        "feedback",
        "otel_log",
        "trace_metric",
    }
)


def _sent_at(env: wire.Envelope) -> dict[str, Any]:
    sent_at = env.headers.get("sent_at")
    if isinstance(sent_at, str | int | float):  # never a structure to queue
        return {"sent_at": sent_at if not isinstance(sent_at, str) else sent_at[:64]}
    return {}


async def _accept_envelope(request: web.Request, project: Project, raw: bytes) -> web.Response:
    env = wire.parse_envelope(raw)  # at most MAX_EVENT_ITEMS event items: it refuses more
    event: wire.Item | None = None
    logs = False
    for item in env.items:
        kind = item.type
        if kind == "event":
            event = item
        elif kind == wire.LOG_ITEM:
            logs = True
        else:  # transactions, spans, sessions, ...: answered, counted, not kept
            request.app[METRICS].inc(
                "sentry_items_dropped_total", type=kind if kind in DROPPED_TYPES else "other"
            )
    header_id = env.headers.get("event_id")
    if event is None:
        if logs:  # log items alone: queued whole, no event id to store once by
            new = Ids.new()
            log_facts = _sent_at(env)
            if request.remote:
                log_facts["ip"] = request.remote
            entry = RawNotice(NAME, new.notice_id, new.location_id, project.id, raw, "", log_facts)
            await queue(request, project, [entry])
        return json_response({"id": wire.event_id({}, header_id)} if header_id else {})
    if len(event.payload) > wire.MAX_EVENT:
        raise ApiError(413, f"Event exceeds {wire.MAX_EVENT} bytes")
    # The answer and the dedupe key: the header's event id, else (older SDKs) the event's own.
    answer = wire.event_id({}, header_id) if header_id else wire.event_id(wire.event_object(event.payload))
    facts: dict[str, Any] = {"event_id": answer, **_sent_at(env)}
    await _queue_once(request, project, answer, raw, facts)
    return json_response({"id": answer})


@error_shape(sentry_error)
async def post_envelope(request: web.Request) -> web.StreamResponse:
    project = _project(request)
    return await _accept_envelope(request, project, await body(request))


@error_shape(sentry_error)
async def post_store(request: web.Request) -> web.StreamResponse:
    project = _project(request)
    raw = await body(request)
    if request.content_type == ENVELOPE_TYPE:
        return await _accept_envelope(request, project, raw)
    data = wire.store_body(raw, wire.MAX_EVENT)
    event = wire.event_object(data)
    bounds.check_depth(data, event)
    eid = wire.event_id(event)
    auth = auth_fields(request.headers.get("X-Sentry-Auth") or request.headers.get("Authorization"))
    facts: dict[str, Any] = {"store": True, "event_id": eid}
    if sent_at := auth.get("sentry_timestamp") or request.query.get("sentry_timestamp"):
        facts["sent_at"] = sent_at
    await _queue_once(request, project, eid, data, facts)
    return json_response({"id": eid})


def routes() -> list[web.RouteDef]:
    return [
        web.post(r"/api/{project_id:\d+}/envelope/", post_envelope),
        web.post(r"/api/{project_id:\d+}/envelope", post_envelope),
        web.post(r"/api/{project_id:\d+}/store/", post_store),
        web.post(r"/api/{project_id:\d+}/store", post_store),
    ]
