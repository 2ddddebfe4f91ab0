"""CrashLog: `POST /notify` with notifier/event/backtrace/environment/context interfaces.

The payload comes as the JSON body, wrapped as ``{"payload": {...}}`` (what the Ruby client sends),
or as the ``payload`` field of a form. The answer is ``{"location_id": ...}`` once the notice is queued.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from shared.frames import parse_line
from shared.model import Frame, Notice, frame
from shared.protocols import bounds
from shared.protocols.base import Decoded, Protocol, Undecodable, note
from shared.protocols.ingest import SETTINGS, Ids, authenticate, body, queue
from shared.stream import RawNotice
from shared.timeutil import parse_iso
from shared.web import (
    ApiError,
    checked_field,
    credential,
    credential_from_params,
    json_object,
    json_response,
    validation_failed,
)

logger = logging.getLogger(__name__)

NAME: Final = "crashlog"
PROJECT_ROOT: Final = "[PROJECT_ROOT]"
_CREDENTIAL_FIELDS: Final = frozenset({"api_key", "access_token", "auth_token", "key", "apikey"})
_MAX_FORM_FIELDS: Final = 1000
_RUBY_FILE: Final = re.compile(r"\.(?:rb|rake|erb|haml|slim|builder)$")
# Faraday's token_auth (`Token token="..."`) and the HMAC scheme (`CrashLog <key>:<signature>`).
_TOKEN_AUTH: Final = re.compile(r'Token\s+token="?(?P<key>[^",\s]+)"?', re.IGNORECASE)
_CRASHLOG_AUTH: Final = re.compile(r"CrashLog\s+(?P<key>[^:\s]+)(?::\S*)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Submission:
    """The payload a request body held, and its bytes as stored."""

    payload: dict[str, Any]
    raw: bytes  # the payload as submitted, without wrapper or credential fields


def _is_form(content_type: str, raw: bytes) -> bool:
    # The Ruby client posts JSON through Faraday's url_encoded middleware, which labels it a form.
    return content_type == "application/x-www-form-urlencoded" and not raw.lstrip()[:1] == b"{"


def _form(raw: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "Problems parsing form data") from e
    return dict(pairs)


def body_fields(raw: bytes, content_type: str) -> dict[str, str]:
    """The string fields a key may come in: a form's fields or a JSON object's top level; never raises."""
    try:
        if _is_form(content_type, raw):
            return _form(raw)
        data = orjson.loads(raw)
    except (ApiError, orjson.JSONDecodeError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def read_submission(raw: bytes, content_type: str) -> Submission:
    """Find the payload in a request body (JSON, wrapped JSON or form); 400/422 when there is none."""
    if _is_form(content_type, raw):
        text = _form(raw).get("payload")
        if not text:
            raise validation_failed([{"resource": "Payload", "field": "payload", "code": "missing_field"}])
        raw = text.encode()
    data = json_object(raw)
    inner = data.get("payload")
    if inner is not None and "event" not in data and "notifier" not in data:
        if isinstance(inner, str):  # double-encoded by some clients
            return Submission(json_object(inner.encode()), inner.encode())
        if not isinstance(inner, dict):
            raise validation_failed([{"resource": "Payload", "field": "payload", "code": "invalid"}])
        return Submission(inner, orjson.dumps(inner))
    if _CREDENTIAL_FIELDS.isdisjoint(data):
        return Submission(data, raw)
    # Never store the key with the notice: /api/locate hands the stored payload out again.
    payload = {k: v for k, v in data.items() if k not in _CREDENTIAL_FIELDS}
    return Submission(payload, orjson.dumps(payload))


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _line_number(value: Any) -> tuple[int | None, bool]:
    """(number, ok): an int, or a string of digits as some clients send it."""
    if value is None or value == "":
        return None, True
    if isinstance(value, int) and not isinstance(value, bool):
        return value, True
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value), True
    return None, False


def strip_root(file: str | None, root: str | None) -> str | None:
    """`/home/deploy/app/current/app/x.rb` -> `[PROJECT_ROOT]/app/x.rb`, as Exceptioner clients send it."""
    if not file or not root:
        return file
    base = root.rstrip("/\\")
    if base and file.startswith(base) and file[len(base) : len(base) + 1] in ("/", "\\"):
        return PROJECT_ROOT + file[len(base) :]
    return file


def _ruby_label(f: Frame) -> None:
    """Split Ruby 3.4 labels (`User#save`) exactly as the Exceptioner text parser does, so they fold."""
    fn, file = f["function"], f["file"]
    if fn and file and ("#" in fn or "." in fn) and _RUBY_FILE.search(file):
        parsed = parse_line(f"{file}:{f['line'] or 0}:in `{fn}'")
        if parsed["function"] and parsed["module"]:
            f["module"], f["function"] = parsed["module"], parsed["function"]


def parse_frame(errors: list[dict[str, str]], data: Any, root: str | None) -> Frame | None:
    """One backtrace entry; invalid entries add an error and give None."""
    if not isinstance(data, dict):
        errors.append({"resource": "Backtrace", "field": "backtrace", "code": "invalid"})
        return None
    file = checked_field(errors, "Backtrace", data, "file", str)
    method = checked_field(errors, "Backtrace", data, "method", str)
    number, ok = _line_number(data.get("number"))
    if not ok:
        errors.append({"resource": "Backtrace", "field": "number", "code": "invalid"})
    f = frame(strip_root(file, root), method, number)
    _ruby_label(f)
    context_line = checked_field(errors, "Backtrace", data, "context_line", str)
    if context_line is not None:
        f["context_line"] = context_line
    for name in ("pre_context", "post_context"):
        value = data.get(name)
        if value is None:
            continue
        lines = _strings(value)
        if lines is None:
            errors.append({"resource": "Backtrace", "field": name, "code": "invalid"})
        elif lines:
            f[name] = list(bounds.cut(lines, bounds.MAX_CONTEXT_LINES, f"backtrace.{name}"))  # type: ignore[literal-required]
    return f


def _occurred_at(errors: list[dict[str, str]], event: dict[str, Any]) -> float | None:
    created = event.get("created_at")
    if created is not None and created != "":
        when = parse_iso(created)
        if when is None:
            errors.append({"resource": "Event", "field": "created_at", "code": "invalid"})
        return when
    stamp = event.get("timestamp")  # the Ruby client's Unix seconds
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        if 0 < stamp <= bounds.MAX_TIME:
            return float(stamp)
        # Year 11476 (300000000000), NaN: not a time that can be stored or shown.
        errors.append({"resource": "Event", "field": "timestamp", "code": "invalid"})
    return None


def _user(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
        return {"id": value}
    return None


def _dedupe(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for e in errors:
        key = tuple(e.values())
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def check(payload: dict[str, Any]) -> None:
    """What the gateway judges: the two interfaces every report has (422 naming the missing ones)."""
    errors: list[dict[str, str]] = []
    checked_field(errors, "Payload", payload, "notifier", dict, required=True)
    checked_field(errors, "Payload", payload, "event", dict, required=True)
    if errors:
        raise validation_failed(errors)


def parse_payload(payload: dict[str, Any], strict: bool = True) -> Notice:
    """The CrashLog interfaces into the canonical notice; 422 naming every bad interface or field.

    Not `strict` (the worker, after the gateway's `check`): a bad field is left out and noted instead.
    """
    errors: list[dict[str, str]] = []
    notifier = checked_field(errors, "Payload", payload, "notifier", dict, required=True)
    event = checked_field(errors, "Payload", payload, "event", dict, required=True) or {}
    backtrace = checked_field(errors, "Payload", payload, "backtrace", list) or []
    environment = checked_field(errors, "Payload", payload, "environment", dict) or {}
    context = checked_field(errors, "Payload", payload, "context", dict) or {}
    class_name = checked_field(errors, "Event", event, "class_name", str)
    message = checked_field(errors, "Event", event, "message", str)
    occurred = _occurred_at(errors, event)
    env_name = checked_field(errors, "Environment", environment, "name", str)
    root = checked_field(errors, "Environment", environment, "project_root", str)
    hostname = checked_field(errors, "Context", context, "hostname", str)
    kept = bounds.cut(backtrace, bounds.MAX_FRAMES, "backtrace")
    frames = [f for f in (parse_frame(errors, d, root) for d in kept) if f is not None]
    if errors and strict:
        raise validation_failed(_dedupe(errors))
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": class_name,
        "message": message,
        "environment": env_name or "",
        "occurred_at": occurred,
        "exceptions": [{"type": class_name, "message": message, "frames": frames}],
        "data": {"notifier": notifier},
    }
    if frames and frames[0]["file"]:
        notice["file"] = frames[0]["file"]
    if environment:
        notice["cgi"] = environment  # the environment interface, whole (shown as "environment")
    if context:
        notice["context"] = context
    if hostname:
        notice["hostname"] = hostname
    user = _user(context.get("current_user"))
    if user is not None:
        notice["user"] = user
    for e in _dedupe(errors):
        note(notice, f"{e['resource']}.{e['field']}: {e['code']}, left out")
    return notice


def header_key(request: web.Request) -> str | None:
    """A key in one of CrashLog's own Authorization forms, else in any form every protocol accepts."""
    auth = request.headers.get("Authorization", "").strip()
    m = _TOKEN_AUTH.fullmatch(auth) or _CRASHLOG_AUTH.fullmatch(auth)
    return m["key"] if m else credential(request)


async def notify(request: web.Request) -> web.Response:
    key = header_key(request)
    project = authenticate(request, key) if key else None  # refuse bad keys before reading the body
    # Without a key in the query or headers, the body is read unauthenticated: no more than FAULTLINE_MAX_BODY
    # of it, decompressed too (a 10 MiB inflation only for a known key).
    raw = await body(request) if project is not None else await body(request, request.app[SETTINGS].max_body)
    if project is None:  # the key may be a form field or sit beside the payload: judge nothing before it
        project = authenticate(request, credential_from_params(body_fields(raw, request.content_type)) or "")
    sub = read_submission(raw, request.content_type)
    bounds.check_depth(sub.raw, sub.payload)
    check(sub.payload)
    new = Ids.new()
    await queue(request, project, [RawNotice(NAME, new.notice_id, new.location_id, project.id, sub.raw)])
    base = request.app[SETTINGS].public_url.rstrip("/")
    return json_response(
        {"location_id": new.location_id}, status=201, headers={"Location": f"{base}/locate/{new.location_id}"}
    )


def decode(entry: RawNotice) -> list[Decoded]:
    """The payload the gateway found (wrapper and credentials already gone), leniently."""
    try:
        payload = json_object(entry.body)
    except ApiError as e:
        raise Undecodable(f"not a CrashLog payload: {e}") from e
    with bounds.noting() as cuts:
        notice = parse_payload(payload, strict=False)
    for text in cuts:
        note(notice, text)
    return [(notice, entry.body)]


def routes() -> list[web.RouteDef]:
    return [web.post("/notify", notify)]


PROTOCOL = Protocol(NAME, routes, decode, keeps_raw=True)  # locate answers with the payload
