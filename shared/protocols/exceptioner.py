"""Exceptioner API v1: `POST /v1/notices` (Hoptoad-style notices with Ruby backtraces).

The one protocol whose answer needs the grouping: its 201 carries `error_id`. So the gateway parses
and fingerprints the notice (the same pure functions the worker would use) and queues the raw body
with that error id and fingerprint, which the worker then stores as given.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared import ids
from shared.fingerprint import answering_version, fingerprint
from shared.frames import parse_line
from shared.model import Notice
from shared.protocols import bounds
from shared.protocols.base import Decoded, Protocol, Undecodable, note
from shared.protocols.ingest import Ids, authenticate, body, default_environment, patterns, queue
from shared.stream import RawNotice
from shared.timeutil import iso
from shared.web import ApiError, checked_field, json_object, json_response, validation_failed

NAME = "exceptioner"


def parse_notice(data: dict[str, Any]) -> Notice:
    """A v1 notice body into the canonical notice; 422 naming every bad field."""
    errors: list[dict[str, str]] = []
    message = checked_field(errors, "Notice", data, "message", str, required=True)
    err = checked_field(errors, "Notice", data, "error", dict, required=True) or {}
    exception = checked_field(errors, "Error", err, "exception", str, required=True)
    backtrace = checked_field(errors, "Error", err, "backtrace", list) or []
    if any(not isinstance(line, str) for line in backtrace):
        errors.append({"resource": "Error", "field": "backtrace", "code": "invalid"})
    params = checked_field(errors, "Error", err, "parameters", dict)
    session = checked_field(errors, "Error", err, "session", dict)
    cgi = checked_field(errors, "Error", err, "environment", dict)
    file = checked_field(errors, "Error", err, "file", str)
    mode = checked_field(errors, "Error", err, "mode", str)
    if errors:
        raise validation_failed(errors)
    text = message or ""
    prefix = f"{exception}: "
    exc_message = text[len(prefix) :] if text.startswith(prefix) else text
    kept = bounds.cut(backtrace, bounds.MAX_FRAMES, "error.backtrace")
    frames = [parse_line(line) for line in kept if line and line != "..."]
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": exception,
        "message": text,
        "environment": mode or "",
        "occurred_at": None,
        "exceptions": [{"type": exception, "message": exc_message, "frames": frames}],
        "file": file,
    }
    if params:
        notice["params"] = params
    if session:
        notice["session"] = session
    if cgi:
        notice["cgi"] = cgi
    return notice


async def post_notice(request: web.Request) -> web.Response:
    project = authenticate(request)
    raw = await body(request)
    data = json_object(raw)
    bounds.check_depth(raw, data)
    notice = parse_notice(data)
    if not notice["environment"]:  # filed as the worker files it (services/worker/environments.py)
        notice["environment"] = default_environment(project.settings)
    new = Ids.new()
    version = answering_version(project.settings, round(new.received_at * 1000))  # the worker maps its id
    fp = fingerprint(
        notice, patterns(project, "app_patterns"), patterns(project, "library_patterns"), version
    )
    eid = ids.error_id(project.id, notice["environment"], fp)
    entry = RawNotice(NAME, new.notice_id, new.location_id, project.id, raw, "", {}, eid, fp, version)
    await queue(request, project, [entry])
    stamp = iso(new.received_at)
    return json_response(
        {
            "id": new.notice_id,
            "error_id": eid,
            "message": notice["message"],
            "created_at": stamp,
            "updated_at": stamp,
        },
        status=201,
        headers={"Location": f"/v1/errors/{eid}/notices/{new.notice_id}"},
    )


def decode(entry: RawNotice) -> list[Decoded]:
    """The worker's face: the body the gateway already validated, as the canonical notice."""
    try:
        with bounds.noting() as cuts:
            notice = parse_notice(json_object(entry.body))
    except ApiError as e:
        raise Undecodable(f"not an Exceptioner notice: {e}") from e
    for text in cuts:
        note(notice, text)
    return [(notice, entry.body)]


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/notices", post_notice)]


PROTOCOL = Protocol(NAME, routes, decode)
