"""Exceptionless v2 events -> canonical notices. Pure functions, no I/O.

Follows what the real server does with a submission: a JSON object is one event, an array many, any
other text one `log` event per line; unknown top-level properties go into `data`; a missing type is
`error` when the event carries an error, else `log`; `heartbeat` events are not stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final, cast

import orjson

from shared import ids
from shared.frames import parse_text
from shared.model import ExceptionInfo, Frame, Notice, frame
from shared.protocols import bounds
from shared.protocols.base import Decoded, note
from shared.stream import RawNotice
from shared.timeutil import parse_iso
from shared.web import ApiError

PROTOCOL: Final = "exceptionless"
HEARTBEAT: Final = "heartbeat"
MAX_EVENTS: Final = 5000  # per request; the worker keeps the first 5000 and notes what it dropped
MAX_CHAIN: Final = bounds.MAX_CHAIN  # inner errors followed
MAX_FRAMES: Final = bounds.MAX_FRAMES  # frames kept per error
MAX_TAGS: Final = bounds.MAX_TAGS
MAX_DESCRIPTION: Final = 64 * 1024  # bytes of one user description (decompressed); more: 413

# Event properties; everything else at the top level is data. Persistent-event ids a client might
# echo back are the server's to assign and are dropped.
_EVENT_KEYS: Final = frozenset(
    {"type", "source", "date", "tags", "message", "geo", "value", "count", "reference_id"}
)
_SERVER_KEYS: Final = frozenset(
    {"id", "organization_id", "project_id", "stack_id", "is_first_occurrence", "created_utc", "idx"}
)
# Data keys the notice carries in fields of its own.
_CONSUMED: Final = (
    "@error",
    "@simple_error",
    "@request",
    "@environment",
    "@user",
    "@user_description",
    "@version",
    "@level",
    "@submission_method",
)
_PY_EXCEPTION_LINE: Final = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?:: ?(?P<message>.*))?")  # "ValueError: x"
_GEO: Final = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*")
_LINE: Final = re.compile("[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
# Never data: the real server's credential names, and the others this gateway accepts everywhere.
_CREDENTIAL_PARAMS: Final = frozenset({"access_token", "api_key", "apikey", "auth_token", "key"})


# ---- request bodies ---------------------------------------------------------------------------


def split_body(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The events of a POST body (the first MAX_EVENTS), each with its own JSON (or text line) as submitted."""
    return split(raw, MAX_EVENTS)[0]


def split(raw: bytes, cap: int) -> tuple[list[tuple[dict[str, Any], bytes]], int]:
    """The first `cap` events of a POST body, and how many more there were (counted, never built)."""
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN, 1e400, nesting past 1024: still events, read leniently
            try:
                doc = bounds.lenient_json(raw)
            except ValueError:
                doc = None
        if isinstance(doc, dict):
            return [(doc, raw)], 0
        if isinstance(doc, list) and all(isinstance(item, dict) or item is None for item in doc):
            items = [item for item in doc if item is not None]
            return [(item, orjson.dumps(item)) for item in items[:cap]], max(0, len(items) - cap)
    # Not an event or a list of them: the real server makes every non-blank line a log message.
    events: list[tuple[dict[str, Any], bytes]] = []
    more = 0
    for line in _lines(text):
        if len(events) < cap:
            events.append(({"type": "log", "message": line}, line.encode()))
        else:
            more += 1
    return events, more


def _lines(text: str) -> Iterable[str]:
    """Non-blank lines (as str.splitlines splits them), stripped, one at a time: a body of millions
    of lines is never one list."""
    for m in _LINE.finditer(text):
        stripped = m.group().strip()
        if stripped:
            yield stripped


def normalize(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a submitted event into its properties (lower-case names) and its data dictionary."""
    event: dict[str, Any] = {}
    data: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        name = key.lower()
        if name == "data":
            if isinstance(value, dict):
                data.update(value)
        elif name in _EVENT_KEYS:
            event.setdefault(name, value)
        elif name == "referenceid":  # old .NET clients
            event.setdefault("reference_id", value)
        elif name not in _SERVER_KEYS:
            extra[key] = value
    data.update(extra)  # known data keys such as "@user" may come at the top level
    return event, data


# ---- GET /api/v2/events/submit ------------------------------------------------------------------


def submit_event(
    params: Iterable[tuple[str, str]],
    path_type: str | None = None,
    credential: str | None = None,
    exclusions: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The event a GET submission describes, or None when it names nothing (the server stores nothing).

    Names are case-insensitive; parameters without a value are dropped; the credential is never data;
    unknown names become data (a list when repeated) unless they match the project's data exclusions.
    """
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key and value:
            grouped.setdefault(key, []).append(value)
    # Credential names are never data, nor is the credential itself under any name (a repeated
    # `key=<client key>&key=x` once stored the key as event data).
    grouped = {
        k: kept
        for k, v in grouped.items()
        if k.lower() not in _CREDENTIAL_PARAMS
        and (kept := [value for value in v if not (credential and value.strip() == credential)])
    }
    if not grouped:
        return None
    event: dict[str, Any] = {"type": path_type or "log"}
    data: dict[str, Any] = {}
    user: dict[str, Any] = {}
    tags: list[str] = []
    for key, values in grouped.items():
        first = values[0]
        name = key.lower()
        if name in ("type", "source", "message"):
            event[name] = first
        elif name == "reference":
            event["reference_id"] = first
        elif name == "date":
            event["date"] = first
        elif name == "count":
            event["count"] = _int(first)
        elif name == "value":
            event["value"] = _number(first)
        elif name == "geo":
            event["geo"] = _geo(first)
        elif name == "tags":
            tags.extend(t for v in values for t in v.split(",") if t)
        elif name == "identity":
            user["identity"] = first
        elif name in ("identity.name", "identityname"):
            user["name"] = first
        elif not any(fnmatchcase(name, p.lower()) for p in exclusions if p):
            data[key] = values if len(values) > 1 else first
    if tags:
        event["tags"] = list(dict.fromkeys(tags))
    if "identity" in user:
        data["@user"] = user
    event = {k: v for k, v in event.items() if v is not None}
    if data:
        event["data"] = data
    return event


def _int(text: str) -> int | None:
    try:
        return int(text.strip()) if len(text) < 12 else None
    except ValueError:
        return None


def _number(text: str) -> float | None:
    try:
        value = float(text) if len(text) < 40 else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _geo(text: str) -> str | None:
    """`lat,lon` within range, as the server stores it; anything else is dropped."""
    m = _GEO.fullmatch(text)
    if not m:
        return None
    lat, lon = float(m[1]), float(m[2])
    return f"{m[1]},{m[2]}" if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def exclusion_patterns(config: Mapping[str, str]) -> list[str]:
    """The project's `@@DataExclusions` setting as glob patterns."""
    return [p.strip() for p in (config.get("@@DataExclusions") or "").split(",") if p.strip()]


# ---- one event -> one notice --------------------------------------------------------------------


def to_notice(obj: Mapping[str, Any], now: float) -> Notice | None:
    """The canonical notice for one submitted event; None for heartbeats, which are not stored."""
    event, data = normalize(obj)
    error = data.get("@error")
    simple = data.get("@simple_error")
    kind = _str(event.get("type"))
    if not kind:
        kind = "error" if isinstance(error, dict) or isinstance(simple, dict) else "log"
    kind = kind[:100]
    if kind == HEARTBEAT:
        return None
    chain, error_extra = _chain(error, simple)
    stack = data.get("@stack")
    if not chain and kind == "error" and isinstance(stack, str):
        # PyPI `exceptionless` sends its Python traceback as "@stack", where the server expects
        # manual-stacking info: read it as the error's stack trace instead.
        chain = [_traceback_chain(stack)]
        data.pop("@stack")
    message = _str(event.get("message")) or (chain[0]["message"] if chain else None)
    if message is None and kind in ("usage", "404"):  # a feature's name, a missing page's path
        message = (_str(event.get("source")) or "")[:2000] or None
    occurred = parse_iso(event.get("date"))
    notice: Notice = {
        "protocol": PROTOCOL,
        "type": kind,
        "exception": chain[0]["type"] if chain else None,
        "message": message,
        "environment": "",
        "occurred_at": min(occurred, now) if occurred is not None else None,
        "exceptions": chain,
    }
    for name in ("source", "reference_id"):
        value = _str(event.get(name))
        if value:
            notice[name] = value[:2000]  # type: ignore[literal-required]
    tags = _tags(event.get("tags"))
    if tags:
        notice["tags"] = tags
    _apply_data(notice, event, data, error_extra)
    return notice


def _apply_data(
    notice: Notice, event: Mapping[str, Any], data: dict[str, Any], error_extra: dict[str, Any]
) -> None:
    """Known data entries into the notice's own fields; the rest stays data."""
    context: dict[str, Any] = {}
    environment = data.get("@environment")
    if isinstance(environment, dict):
        context["environment"] = environment
        host = _str(environment.get("machine_name"))
        if host:
            notice["hostname"] = host
    request = data.get("@request")
    if isinstance(request, dict):
        context["request"] = request
        notice["cgi"] = _cgi(request)
        params = {**_dict(request.get("query_string")), **_dict(request.get("post_data"))}
        if params:
            notice["params"] = params
    user = data.get("@user")
    if isinstance(user, dict):
        notice["user"] = user
    for key, field in (("@version", "release"), ("@level", "level")):
        value = _str(data.get(key))
        if value:
            notice[field] = value  # type: ignore[literal-required]
    method = _str(data.get("@submission_method"))
    if method:
        context["submission_method"] = method
    if error_extra:
        context["error"] = error_extra
    stack = data.get("@stack")
    if isinstance(stack, dict):
        context["stack"] = stack
        fingerprint = manual_stacking(stack)
        if fingerprint:
            notice["client_fingerprint"] = fingerprint
        data.pop("@stack")
    for name in ("geo", "value", "count"):
        if event.get(name) is not None:
            context[name] = event[name]
    if context:
        notice["context"] = context
    described = data.get("@user_description")
    if isinstance(described, dict):
        cast(dict[str, Any], notice)["user_description"] = described
    rest = {k: v for k, v in data.items() if k not in _CONSUMED}
    if rest:
        notice["data"] = rest


def manual_stacking(stack: Mapping[str, Any]) -> list[str] | None:
    """`@stack` (manual stacking): its signature data decides the group, else its title."""
    signature = stack.get("signature_data")
    if isinstance(signature, dict) and signature:
        return [f"{k}={signature[k]}" for k in sorted(signature)]
    title = _str(stack.get("title"))
    return [f"title={title}"] if title else None


def _chain(error: Any, simple: Any) -> tuple[list[ExceptionInfo], dict[str, Any]]:
    """The exception chain, outermost first, and what else the outermost @error said."""
    chain: list[ExceptionInfo] = []
    if isinstance(error, dict):
        current: Any = error
        while isinstance(current, dict) and len(chain) < MAX_CHAIN:
            chain.append(
                {
                    "type": _str(current.get("type")),
                    "message": _str(current.get("message")),
                    "frames": _frames(current),
                }
            )
            current = current.get("inner")
        extra = {
            k: v
            for k, v in error.items()
            if k in ("code", "data", "modules", "target_method") and v not in (None, {}, [])
        }
        return chain, extra
    if isinstance(simple, dict):
        current = simple
        while isinstance(current, dict) and len(chain) < MAX_CHAIN:
            trace = current.get("stack_trace")
            frames = _text_frames(trace, innermost_last=False) if isinstance(trace, str) else []
            chain.append(
                {"type": _str(current.get("type")), "message": _str(current.get("message")), "frames": frames}
            )
            current = current.get("inner")
        extra = {"data": simple["data"]} if simple.get("data") else {}
        return chain, extra
    return chain, {}


def _frames(error: Mapping[str, Any]) -> list[Frame]:
    """Structured frames (innermost first, as sent); the target method when there is no stack."""
    trace = error.get("stack_trace")
    items = trace if isinstance(trace, list) else []
    frames = [_frame(f) for f in bounds.cut(items, MAX_FRAMES, "@error.stack_trace") if isinstance(f, dict)]
    target = error.get("target_method")
    if not frames and isinstance(target, dict):
        frames = [_frame(target)]
    return frames


def _frame(f: Mapping[str, Any]) -> Frame:
    """{name, declaring_namespace, declaring_type, file_name, line_number, column}.

    `data.is_native` is not trusted: @exceptionless/node sets it for every frame whose file name
    does not start with "/" or ".", so all of an ES module's own `file://` frames. In-app is left
    to frames.mark_in_app, which knows node:internal, node_modules and the like.
    """
    module = ".".join(p for p in (_str(f.get("declaring_namespace")), _str(f.get("declaring_type"))) if p)
    return frame(
        file=_str(f.get("file_name")),
        function=_str(f.get("name")),
        line=_positive(f.get("line_number")),
        column=_positive(f.get("column")),
        module=module or None,
    )


def _traceback_chain(text: str) -> ExceptionInfo:
    """A Python traceback string: its frames, and the class and message of its last line."""
    last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
    m = _PY_EXCEPTION_LINE.fullmatch(last.strip()) if not last.startswith((" ", "\t")) else None
    return {
        "type": m["type"] if m else None,
        "message": m["message"] if m else None,
        "frames": _text_frames(text, innermost_last=True),
    }


def _text_frames(text: str, innermost_last: bool) -> list[Frame]:
    """A text stack trace's frames, at most MAX_FRAMES; a huge one is cut to its innermost lines first."""
    lines = text.splitlines()
    if len(lines) > 3 * MAX_FRAMES:  # a frame is one to three lines in every format parse_text knows
        bounds.record("stack trace lines", 3 * MAX_FRAMES, len(lines))
        lines = lines[-3 * MAX_FRAMES :] if innermost_last else lines[: 3 * MAX_FRAMES]
        text = "\n".join(lines)
    return list(bounds.cut(parse_text(text), MAX_FRAMES, "stack trace frames"))


def _cgi(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request as CGI-style variables, the shape the read API shows as `environment`."""
    cgi: dict[str, Any] = {}
    for src, dst in (
        ("http_method", "REQUEST_METHOD"),
        ("host", "HTTP_HOST"),
        ("port", "SERVER_PORT"),
        ("path", "PATH_INFO"),
        ("user_agent", "HTTP_USER_AGENT"),
        ("referrer", "HTTP_REFERER"),
        ("client_ip_address", "REMOTE_ADDR"),
    ):
        value = request.get(src)
        if value not in (None, ""):
            cgi[dst] = value
    if request.get("is_secure") is True:
        cgi["HTTPS"] = "on"
    return cgi


def _tags(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    kept = bounds.cut(items, 10 * MAX_TAGS, "tags")
    tags = [t.strip()[:255] for t in kept if isinstance(t, str) and t.strip()]
    return list(dict.fromkeys(tags))[:MAX_TAGS]


def _str(value: Any) -> str | None:
    """A string property: strings as sent (blank -> None), numbers as text, anything else None."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _positive(value: Any) -> int | None:
    """Line and column numbers: the clients send 0 for unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# ---- user descriptions and configuration ------------------------------------------------------


def user_description(raw: bytes) -> dict[str, Any]:
    """`{email_address, description, data}`; 400 unless `description` is a non-blank string."""
    try:
        doc = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "Problems parsing JSON") from e
    if not isinstance(doc, dict):
        raise ApiError(400, "Description must be specified.")
    bounds.check_depth(raw, doc)
    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ApiError(400, "Description must be specified.")
    email = doc.get("email_address")
    if email is not None and not isinstance(email, str):
        raise ApiError(400, "email_address must be a string.")
    out: dict[str, Any] = {"description": description.replace("\x00", "")}
    if email:
        out["email_address"] = email.replace("\x00", "")
    if isinstance(doc.get("data"), dict) and doc["data"]:
        out["data"] = _strip_nul(doc["data"])
    return out


def _strip_nul(value: Any) -> Any:
    """PostgreSQL's jsonb refuses NUL characters."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def client_configuration(config: Mapping[str, str], version: int) -> dict[str, Any]:
    """The answer to GET /api/v2/projects/config: `{"version": N, "settings": {...}}`."""
    return {"version": version, "settings": dict(config)}


def requested_version(raw: str | None) -> int | None:
    """The `v` a client says it holds; anything but a whole number means none (as the server)."""
    if raw is None or len(raw) > 11:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def decode(entry: RawNotice) -> list[Decoded]:
    """The worker's face: every event of a posted body (a heartbeat is none), at the received time."""
    now = ids.uuid7_ms(entry.notice_id) / 1000
    events, dropped = split(entry.body, MAX_EVENTS)
    out: list[Decoded] = []
    for event, raw in events:
        with bounds.noting() as cuts:
            notice = to_notice(event, now)
        if notice is not None:
            for text in cuts:
                note(notice, text)
            out.append((notice, raw))
    if dropped and out:
        note(out[-1][0], f"{dropped} more events in the same request were dropped (over {MAX_EVENTS})")
    return out
