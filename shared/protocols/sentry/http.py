"""Sentry ingest: `POST /api/{project_id}/envelope/` and the legacy `POST /api/{project_id}/store/`.

The real SDKs (sentry-sdk, @sentry/node, ...) report here unmodified with a DSN
`http://{client_key}@{gateway host:port}/{project_id}`. Items of type `event` become notices;
every other item (sessions, transactions, client reports, attachments, ...) is accepted and skipped.

A repeated event_id is stored once: the publisher's script claims `(project, event_id)` with
`SET NX EX` in the same call as the XADD, so a notice that could not be queued claims nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from services.gateway import sentry_envelope as wire
from services.gateway.ingest import authenticate, body, enqueue
from services.gateway.state import SETTINGS
from shared.keys import Project
from shared.model import Notice
from shared.web import ApiError, Handler, credential, json_response

logger = logging.getLogger(__name__)

DEFAULT_RETRY = "60"  # what Relay suggests when a limit names no time
ENVELOPE_TYPE = "application/x-sentry-envelope"
_NUMBER = re.compile(r"\d+")


# ---- auth ------------------------------------------------------------------------------------


def auth_fields(value: str | None) -> dict[str, str]:
    """`Sentry sentry_key=abc, sentry_version=7, ...` (X-Sentry-Auth or Authorization) as a dict."""
    if not value:
        return {}
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


def _project(request: web.Request) -> Project:
    key = pick_key(request.headers, request.query, credential(request))
    project = authenticate(request, key)
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


def _sentry_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            raise sentry_error(e) from e

    return wrapped


# ---- queueing --------------------------------------------------------------------------------


async def queue_once(request: web.Request, project: Project, events: list[tuple[str, Notice, bytes]]) -> int:
    """Queue the events whose id this project has not seen in the last hour; returns how many were new.

    The claim on `(project, event_id)` and the XADD happen in one Redis script call per flush
    (services/gateway/publisher.py), so a notice that could not be queued claims nothing and the
    client's retry is stored, and deduplication costs no round trip of its own.
    """
    prefix = request.app[SETTINGS].stream_prefix
    once = [f"{prefix}:sentry-seen:{project.id}:{eid}" for eid, _, _ in events]
    accepted = await enqueue(request, project, [(notice, raw) for _, notice, raw in events], once)
    return sum(not a.duplicate for a in accepted)


def _notices(
    items: list[wire.Item], sent_at: Any, default_id: Any, client_ip: str | None, now: float
) -> tuple[str | None, list[tuple[str, Notice, bytes]]]:
    """The envelope's event items as notices, plus the event id to answer with."""
    answer = wire.event_id({}, default_id) if default_id else None
    out: list[tuple[str, Notice, bytes]] = []
    for item in items:
        if item.type != "event":
            continue  # session(s), client_report, transaction, span, attachment, check_in, log, ...
        event = wire.event_object(item.payload)
        eid = wire.event_id(event, default_id)
        answer = answer or eid
        out.append(
            (eid, wire.to_notice(event, eid, now=now, sent_at=sent_at, client_ip=client_ip), item.payload)
        )
    return answer, out


async def _accept_envelope(request: web.Request, project: Project, raw: bytes) -> web.Response:
    env = wire.parse_envelope(raw)
    answer, events = _notices(
        env.items, env.headers.get("sent_at"), env.headers.get("event_id"), request.remote, time.time()
    )
    await queue_once(request, project, events)
    return json_response({"id": answer} if answer else {})


@_sentry_errors
async def post_envelope(request: web.Request) -> web.StreamResponse:
    project = _project(request)
    return await _accept_envelope(request, project, await body(request))


@_sentry_errors
async def post_store(request: web.Request) -> web.StreamResponse:
    project = _project(request)
    raw = await body(request)
    if request.content_type == ENVELOPE_TYPE:
        return await _accept_envelope(request, project, raw)
    data = wire.store_body(raw, wire.MAX_EVENT)
    event = wire.event_object(data)
    eid = wire.event_id(event)
    auth = auth_fields(request.headers.get("X-Sentry-Auth") or request.headers.get("Authorization"))
    sent_at = auth.get("sentry_timestamp") or request.query.get("sentry_timestamp")
    notice = wire.to_notice(event, eid, now=time.time(), sent_at=sent_at, client_ip=request.remote)
    await queue_once(request, project, [(eid, notice, data)])
    return json_response({"id": eid})


def routes() -> list[web.RouteDef]:
    return [
        web.post(r"/api/{project_id:\d+}/envelope/", post_envelope),
        web.post(r"/api/{project_id:\d+}/envelope", post_envelope),
        web.post(r"/api/{project_id:\d+}/store/", post_store),
        web.post(r"/api/{project_id:\d+}/store", post_store),
    ]
