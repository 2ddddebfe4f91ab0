"""Exceptioner API v1: `POST /v1/notices` (Hoptoad-style notices with Ruby backtraces)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.ingest import authenticate, body, enqueue
from shared.frames import parse_line
from shared.model import Notice
from shared.timeutil import iso
from shared.web import checked_field, json_object, json_response, validation_failed


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
    frames = [parse_line(line) for line in backtrace if line and line != "..."]
    notice: Notice = {
        "protocol": "exceptioner",
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
    notice = parse_notice(json_object(raw))
    [acc] = await enqueue(request, project, [(notice, raw)])
    stamp = iso(acc.received_at)
    return json_response(
        {
            "id": acc.notice_id,
            "error_id": acc.error_id,
            "message": notice["message"],
            "created_at": stamp,
            "updated_at": stamp,
        },
        status=201,
        headers={"Location": f"/v1/errors/{acc.error_id}/notices/{acc.notice_id}"},
    )


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/notices", post_notice)]
