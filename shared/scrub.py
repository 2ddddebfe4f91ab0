"""Scrubbing secrets before they reach PostgreSQL: values under sensitive keys, card numbers.

Pure functions; the worker applies them to a notice's parameters, session, request environment,
context, user and data, and to the raw payload kept for `/api/locate`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson

FILTERED = "[Filtered]"
DEFAULT_FIELDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "authorization",
        "cookie",
        "api_key",
        "apikey",
        "access_token",
        "auth_token",
        "refresh_token",
        "private_key",
        "session_key",
        "credit_card",
        "card_number",
        "cvv",
        "ssn",
        "set-cookie",
        "http_authorization",
        "http_cookie",
        "x-api-key",
    }
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Cheap pre-filters for how card numbers are written: 13-19 digits in a row, or groups (4-4-4-4,
# 4-6-5) split by spaces or dashes. Only text that passes them meets the exact, Luhn-checked
# pattern. Regex scans cost ~50 ns a byte here; a byte translation and a few substring searches
# cost a tenth of that, which matters on a worker writing 20,000 notices a second.
_CARD_HINT = re.compile(r"\d{13,19}|\d{4}[ -]\d{4,6}[ -]\d{4,5}")
_DIGITS = bytes(48 if 48 <= i <= 57 else 32 if i in (32, 45) else 120 for i in range(256))  # 0, space, x
_RAW_SHAPES = (b"0" * 13, b"0000 0000", b"0000 000000 0000")


def _raw_has_card_shape(raw: bytes) -> bool:
    shaped = raw.translate(_DIGITS)
    return any(shape in shaped for shape in _RAW_SHAPES)


@functools.lru_cache(maxsize=64)
def _name_hints(fields: frozenset[str]) -> tuple[bytes, ...]:
    """The fewest substrings that still catch every sensitive name, in either spelling (- or _)."""
    names = {v for f in fields for v in (f.replace("-", "_"), f.replace("_", "-"))}
    kept = [n for n in names if not any(o != n and o in n for o in names)]
    return tuple(sorted(n.encode() for n in kept))


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return FILTERED if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


@functools.lru_cache(maxsize=4096)
def sensitive(key: str, fields: frozenset[str]) -> bool:
    """A key is sensitive when any configured name is part of it (`user_password`, `X-Auth-Token`).

    Cached: the same few hundred key names come back in every notice.
    """
    k = key.lower().replace("-", "_")
    words = None
    for f in fields:
        f = f.replace("-", "_")
        if len(f) > 4:
            if f in k:
                return True
        else:  # short names (ssn, pwd, cvv) only as whole words: "classname" is not an SSN
            words = words or set(k.replace(".", "_").split("_"))
            if f in words:
                return True
    return False


def scrub(value: Any, fields: frozenset[str] = DEFAULT_FIELDS, depth: int = 0) -> Any:
    """A copy of value with sensitive keys' values and card-number-shaped strings replaced."""
    if isinstance(value, dict):
        return {
            k: FILTERED
            if isinstance(k, str) and sensitive(k, fields) and v not in (None, "")
            else scrub(v, fields, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v, fields, depth + 1) for v in value]
    if isinstance(value, str) and len(value) >= 13 and _CARD_HINT.search(value) and _CARD.search(value):
        return _CARD.sub(_card_sub, value)
    return value


SCRUBBED_PARTS = ("params", "session", "cgi", "context", "user", "data")


def scrub_notice(notice: dict[str, Any], fields: frozenset[str] = DEFAULT_FIELDS) -> dict[str, Any]:
    out = dict(notice)
    for part in SCRUBBED_PARTS:
        if part in out:
            out[part] = scrub(out[part], fields)
    if isinstance(out.get("message"), str):
        out["message"] = scrub(out["message"], fields)
    return out


def scrub_raw(raw: bytes, fields: frozenset[str] = DEFAULT_FIELDS) -> bytes:
    """The raw JSON payload scrubbed; untouched bytes when nothing in it could be sensitive (cheap check)."""
    lowered = raw.lower()
    if not any(hint in lowered for hint in _name_hints(fields)) and not _raw_has_card_shape(raw):
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (
            raw
            if not _raw_has_card_shape(raw)
            else _CARD.sub(_card_sub, raw.decode("utf-8", "replace")).encode()
        )
    return orjson.dumps(scrub(data, fields))


def fields_for(settings: dict[str, Any]) -> frozenset[str] | None:
    """The project's scrub list (defaults + its own `scrub_fields`), or None when it turned scrubbing off."""
    if settings.get("scrub") is False:
        return None
    extra = settings.get("scrub_fields") or []
    return DEFAULT_FIELDS | {str(f).lower() for f in extra} if extra else DEFAULT_FIELDS


def scrub_body(raw: bytes, fields: frozenset[str] = DEFAULT_FIELDS) -> bytes:
    """Any request body scrubbed for keeping (dead letters): JSON as scrub_raw, else line by line,
    each JSON line scrubbed and any other line naming a sensitive field replaced whole."""
    if raw.lstrip()[:1] in (b"{", b"["):
        try:
            return orjson.dumps(scrub(orjson.loads(raw), fields))
        except orjson.JSONDecodeError:
            pass
    hints = _name_hints(fields)
    out = []
    for line in raw.split(b"\n"):
        if line.lstrip()[:1] in (b"{", b"["):
            try:
                out.append(orjson.dumps(scrub(orjson.loads(line), fields)))
                continue
            except orjson.JSONDecodeError:
                pass
        lowered = line.lower()
        if any(hint in lowered for hint in hints):
            out.append(FILTERED.encode())
        elif _raw_has_card_shape(line):
            out.append(_CARD.sub(_card_sub, line.decode("utf-8", "replace")).encode())
        else:
            out.append(line)
    return b"\n".join(out)
