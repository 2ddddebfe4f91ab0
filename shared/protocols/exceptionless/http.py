"""Exceptionless v2, the gateway's face: events (POST, GET), heartbeats, user descriptions, configuration.

What the clients need from the answers: only 202 counts as accepted, any non-empty body is parsed as
JSON, and `X-Exceptionless-ConfigVersion` tells them when to fetch their configuration again. As the
real server does, a posted body is answered 202 before it is parsed: the worker splits and decodes it
(wire.py), and what it cannot use is listed as a dead letter.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from shared.keys import Project
from shared.protocols.exceptionless import wire as parse
from shared.protocols.ingest import Ids, authenticate, body, queue
from shared.scrub import fields_for, scrub
from shared.stream import Description, RawNotice
from shared.web import ApiError, credential, credential_from_headers, error_shape, json_response

logger = logging.getLogger(__name__)

CONFIG_VERSION = "X-Exceptionless-ConfigVersion"
_MEDIA_TYPES = ("application/json", "text/plain")
_REFERENCE = "{reference_id:[A-Za-z0-9-]{8,100}}"  # the real server's identifier constraint
_EMPTY_ERRORS = frozenset({411, 413, 429, 503})  # the real server answers these with no body at all


def _bodiless(e: ApiError) -> ApiError:
    """Length, size, rate-limit and overload errors answer with an empty body, as the real server does."""
    if e.status in _EMPTY_ERRORS and e.body != b"":
        return ApiError(e.status, str(e), body=b"", headers=e.headers)
    return e


def _key(request: web.Request) -> str:
    """The credential, read as the real server does: query parameters only without `Authorization`."""
    if "Authorization" in request.headers:
        return credential_from_headers(request) or ""
    return credential(request) or ""


def _project(request: web.Request) -> Project:
    """The key's project; 403 when the path names another project.

    The real server answers 404 there; CONTRACT.md says a valid key for the wrong project is 403,
    and @exceptionless/node treats both alike (pause and drop the batch).
    """
    project = authenticate(request, _key(request))
    named = request.match_info.get("project_id")
    if named is not None and named != str(project.id):
        raise ApiError(403, "This key belongs to another project.")
    return project


def _answer(project: Project, status: int) -> web.Response:
    """An empty answer carrying the project's configuration version."""
    return web.Response(status=status, headers={CONFIG_VERSION: str(project.config_version)})


def _media_type(request: web.Request) -> str:
    """The body's media type as sent, "" when none was (sniffed: JSON when it parses as events, else
    lines of text); 415 for one that is neither JSON nor text."""
    if "Content-Type" not in request.headers:
        return ""
    media = request.content_type
    lowered = media.lower()
    if lowered not in _MEDIA_TYPES and not lowered.endswith("+json"):
        raise ApiError(415, f"Unsupported media type {lowered!r}; send application/json or text/plain")
    return media


async def post_events(request: web.Request) -> web.Response:
    """POST /api/v2/events: an event, an array of events, or lines of text; 202 with an empty body."""
    project = _project(request)
    media = _media_type(request)
    raw = await body(request)
    if not raw.strip():  # Content-Length: 0 among them
        raise ApiError(411, "Length Required")
    new = Ids.new()
    await queue(
        request, project, [RawNotice(parse.PROTOCOL, new.notice_id, new.location_id, project.id, raw, media)]
    )
    return _answer(project, 202)


async def get_submit(request: web.Request) -> web.Response:
    """GET /api/v2/events/submit[/{type}]: an event from query parameters; 200 with an empty body."""
    project = _project(request)
    event = parse.submit_event(
        request.query.items(),
        request.match_info.get("type"),
        _key(request),
        parse.exclusion_patterns(project.config),
    )
    if event is not None and event.get("type") != parse.HEARTBEAT:
        new = Ids.new()
        raw = orjson.dumps(event)
        entry = RawNotice(parse.PROTOCOL, new.notice_id, new.location_id, project.id, raw, "application/json")
        await queue(request, project, [entry])
    return _answer(project, 200)


async def heartbeat(request: web.Request) -> web.Response:
    """GET /api/v2/events/session/heartbeat: sessions are not tracked; the client only needs a 200."""
    _project(request)
    return web.Response(status=200)


async def post_user_description(request: web.Request) -> web.Response:
    """POST .../events/by-ref/{reference_id}/user-description: queued for the worker; 202."""
    project = _project(request)
    data = parse.user_description(await body(request, parse.MAX_DESCRIPTION))
    if (fields := fields_for(project.settings)) is not None:
        data = scrub(data, fields)  # before it is queued: Redis never holds the secrets either
    description = Description(project.id, request.match_info["reference_id"], data, time.time())
    await queue(request, project, [description])
    return _answer(project, 202)


async def get_config(request: web.Request) -> web.Response:
    """GET /api/v2/projects/config?v=N: 304 when N is current, else the configuration (from the key cache)."""
    project = _project(request)
    if parse.requested_version(request.query.get("v")) == project.config_version:
        return web.Response(status=304)
    return json_response(parse.client_configuration(project.config, project.config_version))


def routes() -> list[web.RouteDef]:
    ref = f"/api/v2/events/by-ref/{_REFERENCE}/user-description"
    table = [
        (web.post, "/api/v2/events", post_events),
        (web.post, "/api/v2/projects/{project_id}/events", post_events),
        (web.get, "/api/v2/events/submit", get_submit),
        (web.get, "/api/v2/events/submit/{type}", get_submit),
        (web.get, "/api/v2/projects/{project_id}/events/submit", get_submit),
        (web.get, "/api/v2/projects/{project_id}/events/submit/{type}", get_submit),
        (web.get, "/api/v2/events/session/heartbeat", heartbeat),
        (web.post, ref, post_user_description),
        (web.post, "/api/v2/projects/{project_id}" + ref.removeprefix("/api/v2"), post_user_description),
        (web.get, "/api/v2/projects/config", get_config),
        (web.get, "/api/v2/projects/{project_id}/config", get_config),
    ]
    return [method(path, error_shape(_bodiless)(handler)) for method, path, handler in table]
