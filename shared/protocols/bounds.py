"""What one notice may hold, and the pass that makes any decoded notice storable.

Lists a body can hold are cut while the notice is built (`cut`), so a 10 MiB body of frames or
breadcrumbs never becomes a million objects; the cut is noted on the notice. `finish` runs on every
decoded notice (base.Protocol wraps each decoder with it): nesting deeper than MAX_DEPTH is truncated,
integers outside 64 bits and times PostgreSQL or the API cannot show become null, each with a note.
The gateway refuses JSON it parses that is nested deeper than MAX_BODY_DEPTH (`check_depth`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from shared.web import ApiError

MAX_DEPTH = 64  # levels of nesting kept below the notice (params, context, data, ...); deeper: TRUNCATED
MAX_BODY_DEPTH = 128  # JSON the gateway parses, nested deeper: the protocol's 400
MAX_CHAIN = 20  # exceptions of one chain (causes, inner errors, Airbrake errors[])
MAX_FRAMES = 500  # frames per exception
MAX_CONTEXT_LINES = 50  # pre_context / post_context lines per frame
MAX_TAGS = 100
MAX_BREADCRUMBS = 100  # the most recent are kept
MAX_PAIRS = 1000  # headers, cookies, query parameters, env of one request
MAX_FINGERPRINT = 50  # parts of a client fingerprint
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the API's and Python's last second
MAX_INT = (1 << 63) - 1  # orjson and PostgreSQL's bigint
TRUNCATED = "[Truncated]"

T = TypeVar("T")
_cuts: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("cuts", default=None)


@contextlib.contextmanager
def noting() -> Iterator[list[str]]:
    """Collect what `cut` drops while one notice is built (the caller notes it on the notice)."""
    cuts: list[str] = []
    token = _cuts.set(cuts)
    try:
        yield cuts
    finally:
        _cuts.reset(token)


def cut(items: Sequence[T], cap: int, what: str, newest: bool = False) -> Sequence[T]:
    """The first `cap` items (the last with `newest`); what was dropped is recorded while noting."""
    if len(items) <= cap:
        return items
    record(what, cap, len(items))
    return items[-cap:] if newest else items[:cap]


def record(what: str, cap: int, total: int) -> None:
    """Note (while noting) that only `cap` of `total` were kept."""
    cuts = _cuts.get()
    if cuts is not None:
        text = f"{what}: {cap} of {total} kept"
        if text not in cuts:
            cuts.append(text)


def _too_deep(value: Any, left: int) -> bool:
    if left < 0:
        return True
    if isinstance(value, dict):
        return any(isinstance(v, dict | list) and _too_deep(v, left - 1) for v in value.values())
    if isinstance(value, list):
        return any(isinstance(v, dict | list) and _too_deep(v, left - 1) for v in value)
    return False


def check_depth(raw: bytes, data: Any) -> None:
    """400 when the parsed body is nested deeper than MAX_BODY_DEPTH (cheap unless it has that many brackets)."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_BODY_DEPTH:
        return
    if _too_deep(data, MAX_BODY_DEPTH - 1):
        raise ApiError(400, f"JSON nested deeper than {MAX_BODY_DEPTH} levels")


def _bound(value: Any, left: int, notes: set[str]) -> Any:
    """value with containers below `left` more levels truncated and out-of-range integers nulled (in place)."""
    kind = type(value)
    if kind is dict or kind is list:
        if left <= 0:
            notes.add(f"nested deeper than {MAX_DEPTH} levels: truncated")
            return TRUNCATED
        pairs = value.items() if kind is dict else enumerate(value)
        for k, v in pairs:
            t = type(v)
            if t is dict or t is list:
                if v:
                    value[k] = _bound(v, left - 1, notes)
            elif t is int and not -MAX_INT <= v <= MAX_INT:
                notes.add("integer outside 64 bits: left out")
                value[k] = None
        return value
    if kind is int and not -MAX_INT <= value <= MAX_INT:
        notes.add("integer outside 64 bits: left out")
        return None
    return value


def finish(notice: Any) -> Any:
    """The notice made storable: depth, integers and its time bounded, each change noted."""
    from shared.protocols.base import note

    notes: set[str] = set()
    _bound(notice, MAX_DEPTH + 1, notes)
    occurred = notice.get("occurred_at")
    if occurred is not None and (
        not isinstance(occurred, int | float)
        or isinstance(occurred, bool)
        or not math.isfinite(occurred)
        or not 0 <= occurred <= MAX_TIME
    ):
        notice["occurred_at"] = None
        notes.add(f"occurred_at {str(occurred)[:40]} is not a time between 1970 and 9999: left out")
    for text in sorted(notes):
        note(notice, text)
    return notice


def _fix_strings(value: Any, left: int) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if left <= 0:
        return value if not isinstance(value, dict | list) else TRUNCATED
    if isinstance(value, dict):
        return {_fix_strings(k, 0): _fix_strings(v, left - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_strings(v, left - 1) for v in value]
    return value


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _shallow(text: str, limit: int) -> str:
    """JSON text with every value nested deeper than `limit` replaced by TRUNCATED (as a string)."""
    out: list[str] = []
    depth, start, kept = 0, -1, 0
    for m in _TOKEN.finditer(text):
        token = m.group()
        if token in ("{", "["):
            depth += 1
            if depth == limit + 1:
                start = m.start()
        elif token in ("}", "]"):
            if depth == limit + 1:
                out += (text[kept:start], f'"{TRUNCATED}"')
                kept = m.end()
            depth -= 1
    out.append(text[kept:])
    return "".join(out)


def lenient_json(raw: bytes) -> Any:
    """JSON that orjson refuses but a client may send anyway (NaN, Infinity, 1e400, lone surrogates,
    nesting past 1024 levels), as the standard library reads it, values nested deeper than
    MAX_BODY_DEPTH truncated; ValueError when it is not JSON at all."""
    text = raw.decode("utf-8", "replace")
    try:
        value = json.loads(text, parse_constant=lambda _: None)
    except RecursionError:
        try:
            value = json.loads(_shallow(text, MAX_BODY_DEPTH), parse_constant=lambda _: None)
        except RecursionError as e:
            raise ValueError("JSON nested too deeply") from e
    return _fix_strings(value, MAX_BODY_DEPTH)
