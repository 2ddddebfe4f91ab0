"""Airbrake API v3: `POST /api/v3/projects/{project_id}/notices` (pybrake, @airbrake/node, Errbit's clients).

The key comes as `?key=`, `X-Airbrake-Token` or `Authorization: Bearer`; the body is JSON whatever the
Content-Type says (@airbrake/node sends text/plain). Answers follow Airbrake: 201 `{"id", "url"}`,
errors as JSON `{"message"}` (both notifiers parse every 2xx and 4xx body), never an empty body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from shared import ids
from shared.model import ExceptionInfo, Frame, Notice
from shared.protocols import bounds
from shared.protocols.base import Decoded, Protocol, Undecodable, note
from shared.protocols.ingest import SETTINGS, Ids, authenticate, body, queue
from shared.stream import RawNotice
from shared.timeutil import parse_iso
from shared.web import ApiError, error_shape, json_object, json_response

NAME = "airbrake"

DEFAULT_DELAY = "60"
ASYNC_PREFIX = "async "
_NUMBER = re.compile(r"\d+")
# PyPI `airbrake` (airbrake-python, 2.2.0) builds backtraces with traceback.extract_tb: oldest first.
OLDEST_FIRST = frozenset({"airbrake-python"})


# ---- parsing (pure) --------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if (
        isinstance(value, str)
        and (digits := value.strip()).isascii()
        and digits.isdigit()
        and len(digits) < 19
    ):
        return int(digits)
    return None


def _hunk(code: Any, line: int | None) -> dict[str, Any]:
    """A `{"<line>": "source"}` code hunk as context_line / pre_context / post_context."""
    if not isinstance(code, dict) or line is None:
        return {}
    lines = sorted((n, str(src)) for k, src in code.items() if (n := _int(k)) is not None)
    out: dict[str, Any] = {}
    pre = [src for n, src in lines if n < line]
    post = [src for n, src in lines if n > line]
    current = next((src for n, src in lines if n == line), None)
    if current is not None:
        out["context_line"] = current
    if pre:
        out["pre_context"] = list(bounds.cut(pre, bounds.MAX_CONTEXT_LINES, "backtrace.code", newest=True))
    if post:
        out["post_context"] = list(bounds.cut(post, bounds.MAX_CONTEXT_LINES, "backtrace.code"))
    return out


def to_frame(raw: dict[str, Any]) -> Frame:
    """One backtrace frame; in_app stays undecided (None) as Airbrake has no such flag."""
    line = _int(raw.get("line"))
    file = _str(raw.get("file"))
    if file and file.startswith(ASYNC_PREFIX):  # @airbrake/node misreads V8's "at async file:///x.js:1:2"
        file = file[len(ASYNC_PREFIX) :] or None
    f: Frame = {
        "file": file,
        "module": None,
        "function": _str(raw.get("function")),
        "line": line,
        "column": _int(raw.get("column")),
        "in_app": None,
    }
    f.update(_hunk(raw.get("code"), line))  # type: ignore[typeddict-item]
    return f


def _error(raw: dict[str, Any]) -> ExceptionInfo:
    backtrace = bounds.cut(raw.get("backtrace") or [], bounds.MAX_FRAMES, "errors[].backtrace")
    frames = [to_frame(f) for f in backtrace if isinstance(f, dict)]
    return {"type": _str(raw.get("type")), "message": _str(raw.get("message")), "frames": frames}


def notice_time(value: Any) -> float | None:
    """`context.time` (or the notice's `time`): ISO 8601, or epoch seconds or milliseconds."""
    if isinstance(value, str):
        return parse_iso(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and -1e15 < value < 1e15:
        return value / 1000 if abs(value) >= 1e11 else float(value)
    return None


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise ApiError(400, f"{key} should be a JSON object")
    return value or {}


def check(raw: bytes) -> dict[str, Any]:
    """The body's shape, all the gateway judges (400 naming what is wrong); frames are the worker's."""
    data = json_object(raw, "Notice body is not valid JSON", "Notice body should be a JSON object")
    errors = data.get("errors")
    if not isinstance(errors, list) or not errors:
        raise ApiError(400, "errors should be a non-empty array")
    for i, e in enumerate(errors):
        if not isinstance(e, dict):
            raise ApiError(400, f"errors[{i}] should be a JSON object")
        if e.get("backtrace") is not None and not isinstance(e["backtrace"], list):
            raise ApiError(400, f"errors[{i}].backtrace should be an array")
    for key in ("context", "params", "session", "environment"):
        _dict(data, key)
    return data


def parse_notice(raw: bytes) -> Notice:
    """A v3 notice body into the canonical notice; errors[] run from the error raised to its causes."""
    data = check(raw)
    chain = [_error(e) for e in bounds.cut(data["errors"], bounds.MAX_CHAIN, "errors")]
    context = _dict(data, "context")
    first = chain[0]
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": first["type"],
        "message": first["message"],
        "environment": _str(context.get("environment")) or "",
        "occurred_at": notice_time(context.get("time", data.get("time"))),
        "exceptions": chain,
    }
    notifier = context.get("notifier")
    if isinstance(notifier, dict) and isinstance(name := notifier.get("name"), str) and name in OLDEST_FIRST:
        note(notice, "backtrace sent oldest frame first (kept as sent, as Airbrake does)")
    if file := next((f["file"] for f in first["frames"] if f["file"]), None):
        notice["file"] = file
    for key, source in (
        ("hostname", "hostname"),
        ("release", "revision"),
        ("level", "severity"),
        ("source", "component"),
    ):
        if (value := _str(context.get(source))) is not None:
            notice[key] = value  # type: ignore[literal-required]
    if "release" not in notice and (version := _str(context.get("version"))):
        notice["release"] = version
    if isinstance(user := context.get("user"), dict) and user:
        notice["user"] = user
    if context:
        notice["context"] = context
    for key, source in (("params", "params"), ("session", "session"), ("cgi", "environment")):
        if part := _dict(data, source):
            notice[key] = part  # type: ignore[literal-required]
    return notice


# ---- HTTP ------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def airbrake_error(e: ApiError) -> ApiError:
    """Airbrake's error shape: JSON `{"message"}`; a 429 carries the X-RateLimit-Delay the notifiers read."""
    headers = dict(e.headers)
    if e.status == 429 and _header(headers, "X-RateLimit-Delay") is None:
        retry = _header(headers, "Retry-After") or _header(headers, "X-Sentry-Rate-Limits") or ""
        m = _NUMBER.search(retry)
        headers["X-RateLimit-Delay"] = m.group() if m else DEFAULT_DELAY
    bodies_ok = isinstance(e.body, dict) and isinstance(e.body.get("message"), str)
    return ApiError(e.status, str(e), e.body if bodies_ok else {"message": str(e)}, headers)


@error_shape(airbrake_error)
async def post_notice(request: web.Request) -> web.StreamResponse:
    project = authenticate(request)  # ?key=, X-Airbrake-Token, Authorization: Bearer, Api-Key, ...
    if str(project.id) != request.match_info["project_id"]:
        raise ApiError(403, f"This key does not belong to project {request.match_info['project_id']}")
    raw = await body(request)
    bounds.check_depth(raw, check(raw))
    new = Ids.new()
    await queue(request, project, [RawNotice(NAME, new.notice_id, new.location_id, project.id, raw)])
    url = f"{request.app[SETTINGS].public_url}/locate/{new.location_id}"
    return json_response({"id": new.notice_id, "url": url}, status=201)


def decode(entry: RawNotice) -> list[Decoded]:
    try:
        with bounds.noting() as cuts:
            notice = parse_notice(entry.body)
    except ApiError as e:
        raise Undecodable(f"not an Airbrake notice: {e}") from e
    if notice["occurred_at"] is None:  # the notifiers send no time: the notice's time is when it came
        notice["occurred_at"] = ids.uuid7_ms(entry.notice_id) / 1000
    for text in cuts:
        note(notice, text)
    return [(notice, entry.body)]


def routes() -> list[web.RouteDef]:
    return [web.post(r"/api/v3/projects/{project_id:\d+}/notices", post_notice)]


PROTOCOL = Protocol(NAME, routes, decode)
