"""Exceptioner API v1: `POST /v1/notices` (Hoptoad-style notices with Ruby backtraces).

The one protocol whose answer needs the grouping: its 201 carries `error_id`. So the gateway parses
and fingerprints the notice (the same pure functions the worker would use) and queues the raw body
with that error id and fingerprint, which the worker then stores as given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shared import ids
from shared.fingerprint import answering_version, fingerprint, has_stack_parts
from shared.frames import parse_line
from shared.model import ExceptionInfo, Frame, Notice
from shared.protocols import bounds
from shared.protocols.base import Decoded, Protocol, Undecodable, note
from shared.protocols.ingest import Ids, authenticate, body, default_environment, patterns, queue
from shared.stream import RawNotice
from shared.timeutil import iso_epoch
from shared.web import ApiError, checked_field, json_object, json_response, validation_failed

NAME = "exceptioner"
STACKS_KEPT = 1024  # distinct (exception, backtrace, patterns, version) whose fingerprint is remembered


@dataclass(slots=True)
class _Fields:
    """A v1 notice's fields, checked: what both faces read."""

    message: str
    exception: str
    backtrace: list[str]
    params: dict[str, Any] | None
    session: dict[str, Any] | None
    cgi: dict[str, Any] | None
    file: str | None
    mode: str


def _checked(data: dict[str, Any]) -> _Fields:
    """The fields of a v1 notice body; 422 naming every bad one."""
    return _well_formed(data) or _checked_one_by_one(data)


_OPTIONAL_OBJECTS = ("parameters", "session", "environment")


def _well_formed(data: dict[str, Any]) -> _Fields | None:
    """The fields when every one has its right type (what real clients send), else None: a quick
    test whose yes always agrees with `_checked_one_by_one`, which names what is wrong otherwise."""
    err = data.get("error")
    if type(err) is not dict:
        return None
    message, exception, backtrace = data.get("message"), err.get("exception"), err.get("backtrace")
    if type(message) is not str or not message or type(exception) is not str or not exception:
        return None
    if backtrace is None:
        backtrace = []
    elif type(backtrace) is not list or not all(type(line) is str for line in backtrace):
        return None
    params, session, cgi = (err.get(name) for name in _OPTIONAL_OBJECTS)
    if any(v is not None and type(v) is not dict for v in (params, session, cgi)):
        return None
    file, mode = err.get("file"), err.get("mode")
    if file is not None and type(file) is not str or mode is not None and type(mode) is not str:
        return None
    return _Fields(message, exception, backtrace, params, session, cgi, file or None, mode or "")


def _checked_one_by_one(data: dict[str, Any]) -> _Fields:
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
    return _Fields(message or "", exception or "", backtrace, params, session, cgi, file, mode or "")


def _frames(backtrace: Sequence[str]) -> list[Frame]:
    kept = bounds.cut(backtrace, bounds.MAX_FRAMES, "error.backtrace")
    return [parse_line(line) for line in kept if line and line != "..."]


def parse_notice(data: dict[str, Any]) -> Notice:
    """A v1 notice body into the canonical notice; 422 naming every bad field."""
    return _notice(_checked(data))


def _notice(f: _Fields) -> Notice:
    text = f.message
    prefix = f"{f.exception}: "
    exc_message = text[len(prefix) :] if text.startswith(prefix) else text
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": f.exception,
        "message": text,
        "environment": f.mode,
        "occurred_at": None,
        "exceptions": [{"type": f.exception, "message": exc_message, "frames": _frames(f.backtrace)}],
        "file": f.file,
    }
    if f.params:
        notice["params"] = f.params
    if f.session:
        notice["session"] = f.session
    if f.cgi:
        notice["cgi"] = f.cgi
    return notice


@functools.lru_cache(maxsize=STACKS_KEPT)
def _stack_fingerprint(
    exception: str, backtrace: tuple[str, ...], app: tuple[str, ...], lib: tuple[str, ...], version: int
) -> str | None:
    """The fingerprint of a notice with this exception and backtrace when its frames decide it
    (grouping rule 2: no message in it); None when they name nothing and the message would."""
    chain: list[ExceptionInfo] = [{"type": exception, "message": "", "frames": _frames(backtrace)}]
    if not has_stack_parts(chain, app, lib):
        return None
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": exception,
        "message": "",
        "environment": "",
        "occurred_at": None,
        "exceptions": chain,
    }
    return fingerprint(notice, app, lib, version)


def grouping(f: _Fields, app: tuple[str, ...], lib: tuple[str, ...], version: int) -> str:
    """`fingerprint(parse_notice(...))`, remembered per distinct stack: clients send the same few
    stacks again and again, and this is the gateway's dearest step for this protocol."""
    found = _stack_fingerprint(f.exception, tuple(f.backtrace), app, lib, version)
    return fingerprint(_notice(f), app, lib, version) if found is None else found


async def post_notice(request: web.Request) -> web.Response:
    project = authenticate(request)
    raw = await body(request)
    data = json_object(raw)
    bounds.check_depth(raw, data)
    fields = _checked(data)
    environment = fields.mode or default_environment(project.settings)  # as the worker files it
    new = Ids.new()
    version = answering_version(project.settings, round(new.received_at * 1000))  # the worker maps its id
    fp = grouping(fields, patterns(project, "app_patterns"), patterns(project, "library_patterns"), version)
    eid = ids.error_id(project.id, environment, fp)
    entry = RawNotice(NAME, new.notice_id, new.location_id, project.id, raw, "", {}, eid, fp, version)
    await queue(request, project, [entry])
    stamp = iso_epoch(new.received_at)
    return json_response(
        {
            "id": new.notice_id,
            "error_id": eid,
            "message": fields.message,
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
