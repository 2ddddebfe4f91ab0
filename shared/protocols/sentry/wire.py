"""Sentry's wire format, pure: envelope framing, and an event payload into the canonical notice.

No I/O here; the gateway face (http.py) moves the bytes. Times are passed in so tests pin them.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared import ids
from shared.frames import is_library
from shared.model import ExceptionInfo, Frame, Notice
from shared.protocols import bounds
from shared.protocols.base import Decoded, Undecodable, note
from shared.stream import RawNotice
from shared.timeutil import parse_iso
from shared.web import ApiError

MAX_EVENT = 1 << 20  # Relay's limit for one event item, after decompression
MAX_EVENT_ITEMS = 1  # Relay refuses an envelope with a second event item ("duplicate item")
MAX_ITEMS = 1000  # items of any type per envelope; the gateway stops reading the envelope past either cap
DRIFT = 55 * 60  # a client clock at least this far off is corrected (Relay's threshold)
MAX_PAST = 30 * 86400  # timestamps are kept within [now - 30 days, now + 60 s]
MAX_FUTURE = 60
MAX_BREADCRUMBS = bounds.MAX_BREADCRUMBS
UNKNOWN_FUNCTION = "?"  # @sentry/core's name for an anonymous function (Airbrake sends "")
MAX_FORMATTED = 64 * 1024  # a logentry template whose widths add up to more is kept unformatted
_FORMAT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0+ -]*(\*|\d*)(?:\.(\*|\d*))?")  # width, precision


@dataclass(slots=True)  # not frozen (nor Envelope): made per request, and frozen ones are slow to make
class Item:
    """One envelope item: its header line and its payload bytes."""

    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(slots=True)
class Envelope:
    headers: dict[str, Any]
    items: list[Item] = field(default_factory=list)


def _json_line(line: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line) if line.strip() else {}
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"Invalid envelope: {what} is not JSON") from e
    if not isinstance(value, dict):
        raise ApiError(400, f"Invalid envelope: {what} is not a JSON object")
    return value


def parse_envelope(raw: bytes) -> Envelope:
    """Split an envelope; items with or without `length`, with or without a final newline."""
    end = raw.find(b"\n")
    end = len(raw) if end < 0 else end
    env = Envelope(_json_line(raw[:end], "envelope header"))
    pos = end + 1
    events = 0
    while pos < len(raw):
        if len(env.items) >= MAX_ITEMS:
            raise ApiError(400, f"invalid envelope: more than {MAX_ITEMS} items")
        if raw[pos : pos + 1] in (b"\n", b"\r"):  # blank lines between items
            pos += 1
            continue
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        headers = _json_line(raw[pos:end], "item header")
        pos = end + 1
        length = headers.get("length")
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise ApiError(400, "Invalid envelope: item length is not a non-negative integer")
            payload = raw[pos : pos + length]
            if len(payload) < length:
                raise ApiError(400, "Invalid envelope: item is shorter than its length")
            pos += length + (1 if raw[pos + length : pos + length + 1] == b"\n" else 0)
        else:
            end = raw.find(b"\n", pos)
            end = len(raw) if end < 0 else end
            payload, pos = raw[pos:end], end + 1
        kind = str(headers.get("type") or "")
        events += kind == "event"
        if events > MAX_EVENT_ITEMS:  # counted while splitting: 200,000 event items are never built
            raise ApiError(400, "invalid envelope: duplicate item: event")
        env.items.append(Item(kind, headers, payload))
    return env


def store_body(raw: bytes, cap: int) -> bytes:
    """The legacy store body: JSON, or the oldest clients' base64 of zlib-compressed JSON."""
    if raw.lstrip()[:1] in (b"{", b""):
        return raw
    try:
        packed = base64.b64decode(raw.strip(), validate=False)
        inflater = zlib.decompressobj()
        out = inflater.decompress(packed, cap + 1)
    except (ValueError, zlib.error) as e:
        raise ApiError(400, "Event is neither JSON nor base64 zlib data") from e
    if len(out) > cap or inflater.unconsumed_tail:
        raise ApiError(413, f"Event exceeds {cap} bytes")
    if not inflater.eof:
        raise ApiError(400, "Event is neither JSON nor base64 zlib data")
    return out


def event_object(payload: bytes) -> dict[str, Any]:
    """An event item's payload as a JSON object (400 / 413 otherwise)."""
    if len(payload) > MAX_EVENT:
        raise ApiError(413, f"Event exceeds {MAX_EVENT} bytes")
    return _json_line(payload, "event")


_EVENT_ID = re.compile(r"[0-9a-f]{32}")  # what the SDKs send, and what event_id answers


def event_id(event: dict[str, Any], fallback: Any = None) -> str:
    """The event's id as 32 lowercase hex digits; a fresh one when the client sent none."""
    value = event.get("event_id") or fallback
    if not value:
        return uuid.uuid4().hex
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        return value
    try:
        return uuid.UUID(str(value)).hex
    except ValueError as e:
        raise ApiError(400, "Invalid event_id: expected 32 hex digits") from e


# ---- time ------------------------------------------------------------------------------------


MS_FROM = 1e11  # epoch "seconds" past this (year 5138) are milliseconds: raven-node's sentry_timestamp


def _seconds(number: float) -> float:
    return number / 1000 if abs(number) >= MS_FROM else number


def epoch(value: Any) -> float | None:
    """A Sentry timestamp: epoch seconds or milliseconds (number or numeric string) or ISO 8601."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _seconds(float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return parse_iso(value)
        return _seconds(number) if math.isfinite(number) else None  # "nan", "inf": no time at all
    return None


def occurred_at(timestamp: Any, sent_at: Any, now: float) -> float:
    """Event time with the client's clock drift corrected (as Relay does) and clamped to a sane window."""
    ts = epoch(timestamp)
    if ts is None:
        return now
    sent = epoch(sent_at)
    if sent is not None and abs(now - sent) >= DRIFT:
        ts += now - sent
    return min(max(ts, now - MAX_PAST), now + MAX_FUTURE)


# ---- the event model -------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _values(value: Any) -> list[Any]:
    """Sentry's `{"values": [...]}` wrapper, a bare list, or a single object."""
    if isinstance(value, dict):
        inner = value.get("values")
        return inner if isinstance(inner, list) else [value]
    return value if isinstance(value, list) else []


def _recent(value: Any, cap: int, what: str) -> Sequence[Any]:
    """The last `cap` of Sentry's values (the newest exception, breadcrumb, ...), the cut noted."""
    return bounds.cut(_values(value), cap, what, newest=True)


def _lines(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    value = bounds.cut(value, bounds.MAX_CONTEXT_LINES, "frames.context lines")
    return [v if isinstance(v, str) else "" if v is None else str(v) for v in value]


def _function(raw: dict[str, Any]) -> str | None:
    """The frame's function; the JavaScript SDKs' "?" placeholder means none is known."""
    name = _str(raw.get("function")) or _str(raw.get("raw_function"))
    return None if name == UNKNOWN_FUNCTION else name


def to_frame(raw: dict[str, Any]) -> Frame:
    """One Sentry frame. The client's in_app is kept; without one, abs_path may still say "library"."""
    filename, abs_path = _str(raw.get("filename")), _str(raw.get("abs_path"))
    module = _str(raw.get("module"))
    in_app = raw.get("in_app") if isinstance(raw.get("in_app"), bool) else None
    if in_app is None and abs_path and abs_path != filename and is_library(abs_path, None):
        in_app = False
    f: Frame = {
        "file": filename or abs_path,
        "module": module,
        "function": _function(raw),
        "line": _int(raw.get("lineno")),
        "column": _int(raw.get("colno")),
        "in_app": in_app,
    }
    if (context := _str(raw.get("context_line"))) is not None:
        f["context_line"] = context
    for key in ("pre_context", "post_context"):
        if (lines := _lines(raw.get(key))) is not None:
            f[key] = lines  # type: ignore[literal-required]
    return f


def frames(stacktrace: Any) -> list[Frame]:
    """Sentry frames run oldest call first; canonical frames run innermost first."""
    raw = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
    if not isinstance(raw, list):
        return []
    innermost = bounds.cut(raw, bounds.MAX_FRAMES, "stacktrace.frames", newest=True)
    return [to_frame(f) for f in reversed(innermost) if isinstance(f, dict)]


def exceptions(event: dict[str, Any]) -> list[ExceptionInfo]:
    """exception.values run oldest (the first cause) to newest (the one raised): reversed here."""
    out: list[ExceptionInfo] = []
    for value in reversed(_recent(event.get("exception"), bounds.MAX_CHAIN, "exception.values")):
        if not isinstance(value, dict):
            continue
        stack = value.get("stacktrace") or value.get("raw_stacktrace")
        out.append(
            {"type": _str(value.get("type")), "message": _str(value.get("value")), "frames": frames(stack)}
        )
    return out


def _thread_stack(event: dict[str, Any]) -> list[Frame]:
    """Where a message was captured, when the client attached a stack (top level or current thread)."""
    if stack := frames(event.get("stacktrace")):
        return stack
    threads = [
        t
        for t in bounds.cut(_values(event.get("threads")), bounds.MAX_PAIRS, "threads")
        if isinstance(t, dict)
    ]
    chosen = [t for t in threads if t.get("crashed") or t.get("current")] or threads[:1]
    return frames(chosen[0].get("stacktrace")) if chosen else []


def _formattable(text: str, params: list[Any] | dict[str, Any]) -> bool:
    """Whether applying the client's printf template stays small: "%2000000000d" would allocate gigabytes,
    and so would thousands of "%(a)s" of one long parameter."""
    values = params.values() if isinstance(params, dict) else params
    longest = max(320 if isinstance(v, float) else len(str(v)) for v in values)  # "%d" % 1e308: 309 digits
    total = len(text)
    for m in _FORMAT_FIELD.finditer(text):
        total += longest
        for size in m.groups():
            if size == "*" or (size and len(size) > 6):
                return False
            total += int(size or 0)
        if total > MAX_FORMATTED:
            return False
    return True


def log_message(event: dict[str, Any]) -> str | None:
    """`logentry` (or the legacy `message` interface) formatted; a bare string message as is."""
    for key in ("logentry", "message"):
        entry = event.get(key)
        if isinstance(entry, str) and entry:
            return entry
        if not isinstance(entry, dict):
            continue
        if formatted := _str(entry.get("formatted")):
            return formatted
        text, params = _str(entry.get("message")), entry.get("params")
        if text and isinstance(params, list | dict) and params and _formattable(text, params):
            try:
                return text % (tuple(params) if isinstance(params, list) else params)
            except (TypeError, ValueError, KeyError, OverflowError):  # OverflowError: "%c" % 99999999
                return text
        if text:
            return text
    return None


def _pairs(value: Any) -> list[tuple[str, Any]]:
    """Sentry's maps come as objects or as lists of [key, value] pairs."""
    if isinstance(value, dict):
        if len(value) > bounds.MAX_PAIRS:
            bounds.record("request and tag maps", bounds.MAX_PAIRS, len(value))
            value = dict(list(value.items())[: bounds.MAX_PAIRS])
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, list):
        value = bounds.cut(value, bounds.MAX_PAIRS, "request and tag maps")
        return [(str(p[0]), p[1]) for p in value if isinstance(p, list | tuple) and len(p) == 2]
    return []


def request_parts(request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sentry's request interface as (cgi, params): CGI-style names, then query and body params."""
    if not isinstance(request, dict):
        return {}, {}
    cgi: dict[str, Any] = {}
    for key, name in (("method", "REQUEST_METHOD"), ("url", "REQUEST_URI")):
        if value := _str(request.get(key)):
            cgi[name] = value
    query = request.get("query_string")
    params: dict[str, Any] = {}
    if isinstance(query, str):
        cgi["QUERY_STRING"] = query
        fields = query.lstrip("?").split("&", bounds.MAX_PAIRS)
        params.update(
            parse_qsl("&".join(bounds.cut(fields, bounds.MAX_PAIRS, "query_string")), keep_blank_values=True)
        )
    else:
        params.update(_pairs(query))
    for name, value in _pairs(request.get("headers")):
        cgi["HTTP_" + name.upper().replace("-", "_")] = value
    cookies = request.get("cookies")
    if isinstance(cookies, str) and cookies:
        cgi.setdefault("HTTP_COOKIE", cookies)
    elif pairs := _pairs(cookies):
        cgi.setdefault("HTTP_COOKIE", "; ".join(f"{k}={v}" for k, v in pairs))
    cgi.update(_pairs(request.get("env")))
    data = request.get("data")
    if isinstance(data, dict):
        params.update(data)
    elif data not in (None, ""):
        params["body"] = data
    return cgi, params


def _culprit_file(chain: list[ExceptionInfo]) -> str | None:
    stack = chain[0]["frames"] if chain else []
    chosen = next((f for f in stack if f["in_app"]), None) or (stack[0] if stack else None)
    return chosen["file"] if chosen else None


def _context(event: dict[str, Any]) -> dict[str, Any]:
    context = {k: v for k, v in _pairs(event.get("contexts"))}
    for key in ("platform", "transaction", "culprit", "dist", "sdk"):
        if event.get(key) not in (None, "", {}):
            context[key] = event[key]
    crumbs = [
        b for b in _recent(event.get("breadcrumbs"), MAX_BREADCRUMBS, "breadcrumbs") if isinstance(b, dict)
    ]
    if crumbs:
        context["breadcrumbs"] = crumbs
    return context


# raven (Python, Node) and raven-js send Python logging's numbers; Sentry reads them as these names.
NUMERIC_LEVELS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "fatal"}


def level_name(value: Any, exception: bool) -> str | None:
    """The event's level as Sentry names it: numbers as logging's levels; none on an exception: error."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        whole = value if isinstance(value, int) else int(value) if value.is_integer() else None
        return (NUMERIC_LEVELS.get(whole) if whole is not None else None) or _str(value)
    if isinstance(value, str) and (digits := value.strip()).isdigit() and len(digits) < 4:
        return NUMERIC_LEVELS.get(int(digits)) or value
    if (text := _str(value)) is not None:
        return text
    return "error" if exception else None


def to_notice(
    event: dict[str, Any], eid: str, *, now: float, sent_at: Any = None, client_ip: str | None = None
) -> Notice:
    """A Sentry event (error or message) as the canonical notice."""
    chain = exceptions(event)
    logged = log_message(event)
    if not chain and (stack := _thread_stack(event)):
        chain = [{"type": None, "message": logged, "frames": stack}]
    outer_type = chain[0]["type"] if chain else None
    notice: Notice = {
        "protocol": "sentry",
        "type": "error",
        "exception": outer_type,
        "message": (chain[0]["message"] if chain else None) or logged or outer_type,
        "environment": _str(event.get("environment")) or "",
        "occurred_at": occurred_at(event.get("timestamp"), sent_at, now),
        "exceptions": chain,
        "reference_id": eid,
    }
    if (file := _culprit_file(chain)) is not None:
        notice["file"] = file
    for key, source in (
        ("hostname", "server_name"),
        ("release", "release"),
        ("source", "logger"),
    ):
        if (value := _str(event.get(source))) is not None:
            notice[key] = value  # type: ignore[literal-required]
    if (level := level_name(event.get("level"), bool(chain and chain[0]["type"]))) is not None:
        notice["level"] = level
    if tags := [f"{k}:{v}" for k, v in bounds.cut(_pairs(event.get("tags")), bounds.MAX_TAGS, "tags")]:
        notice["tags"] = tags
    user = event.get("user")
    if isinstance(user, dict) and user:
        if user.get("ip_address") == "{{auto}}":
            user = {**user, "ip_address": client_ip}
        notice["user"] = user
    cgi, params = request_parts(event.get("request"))
    if cgi:
        notice["cgi"] = cgi
    if params:
        notice["params"] = params
    context = _context(event)
    if logged and notice["message"] != logged:
        context["log_message"] = logged
    if context:
        notice["context"] = context
    extra = event.get("extra")
    if isinstance(extra, dict) and extra:
        notice["data"] = extra
    fingerprint = event.get("fingerprint")
    if isinstance(fingerprint, list) and fingerprint:
        fingerprint = bounds.cut(fingerprint, bounds.MAX_FINGERPRINT, "fingerprint")
        notice["client_fingerprint"] = [str(p) for p in fingerprint]
    return notice


LOG_ITEM = "log"  # sentry-sdk with enable_logs: {"items": [log records]}
MAX_LOG_RECORDS = 1000  # per log item


def _attribute(value: Any) -> Any:
    """A log attribute `{"value": v, "type": "string"}` as its value."""
    return value.get("value") if isinstance(value, dict) and "value" in value else value


def log_notices(payload: bytes, *, now: float, sent_at: Any = None) -> list[tuple[Notice, bytes]]:
    """A `log` item's records, each a log notice at its level with the record as its raw payload
    (ApiError when the item is not JSON)."""
    data = _json_line(payload, "log item")
    records = data.get("items")
    if not isinstance(records, list):
        return []
    out: list[tuple[Notice, bytes]] = []
    for record in bounds.cut(records, MAX_LOG_RECORDS, "log items"):
        if not isinstance(record, dict):
            continue
        attributes = record.get("attributes")
        attrs = {str(k): _attribute(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {}
        notice: Notice = {
            "protocol": "sentry",
            "type": "log",
            "exception": None,
            "message": _str(record.get("body")),
            "environment": _str(attrs.get("sentry.environment")) or "",
            "occurred_at": occurred_at(record.get("timestamp"), sent_at, now),
            "exceptions": [],
        }
        if (level := _str(record.get("level"))) is not None:
            notice["level"] = {"warn": "warning"}.get(level, level)
        for key, name in (("release", "sentry.release"), ("hostname", "server.address")):
            if (value := _str(attrs.get(name))) is not None:
                notice[key] = value  # type: ignore[literal-required]
        if attrs:
            notice["data"] = attrs
        context = {k: record[k] for k in ("trace_id", "span_id", "severity_number") if k in record}
        if context:
            notice["context"] = context
        out.append((notice, orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)))
    return out


def _lenient_event(payload: bytes) -> dict[str, Any]:
    """An event item as a JSON object; JSON only a lenient reader takes (NaN, 1e400) is read that way,
    since the envelope was answered 200 before its event was read."""
    try:
        return event_object(payload)
    except ApiError as e:
        if len(payload) > MAX_EVENT:
            raise
        try:
            value = bounds.lenient_json(payload)
        except ValueError:
            raise e from None
        if not isinstance(value, dict):
            raise
        return value


def decode(entry: RawNotice) -> list[Decoded]:
    """The worker's face: each event item (or the store body's event) as a notice, at the received time."""
    now = ids.uuid7_ms(entry.notice_id) / 1000
    facts = entry.facts
    sent_at, client_ip = facts.get("sent_at"), facts.get("ip")
    try:
        if facts.get("store"):
            payloads = [("event", entry.body)]
        else:
            payloads = [
                (item.type, item.payload)
                for item in parse_envelope(entry.body).items
                if item.type in ("event", LOG_ITEM)
            ]
    except ApiError as e:
        raise Undecodable(f"not a Sentry envelope: {e}") from e
    out: list[Decoded] = []
    reasons = []
    events = 0
    for kind, payload in payloads:
        if kind == LOG_ITEM:
            try:
                with bounds.noting() as cuts:
                    logs = log_notices(payload, now=now, sent_at=sent_at)
            except ApiError as e:
                reasons.append(str(e))
                continue
            for log, record in logs:
                for text in cuts:
                    note(log, text)
                out.append((log, record))
            continue
        try:
            event = _lenient_event(payload)
            eid = event_id(event, facts.get("event_id") if not events else None)
            events += 1
        except ApiError as e:
            reasons.append(str(e))
            continue
        with bounds.noting() as cuts:
            notice = to_notice(event, eid, now=now, sent_at=sent_at, client_ip=client_ip)
        for text in cuts:
            note(notice, text)
        out.append((notice, payload))
    if not out and (reasons or not any(kind == LOG_ITEM for kind, _ in payloads)):
        raise Undecodable("; ".join(reasons) or "envelope holds no event item")
    return out  # empty only for log items without records
