"""Scrubbing secrets before they reach PostgreSQL: values under sensitive keys, card numbers.

Pure functions; the worker applies them to a notice's parameters, session, request environment,
context, user and data, and to the raw payload kept for `/api/locate`.
"""

from __future__ import annotations

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
_RAW_HINT = re.compile(rb"(?:\d[ -]?){12,18}\d")


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


def sensitive(key: str, fields: frozenset[str]) -> bool:
    """A key is sensitive when any configured name is part of it (`user_password`, `X-Auth-Token`)."""
    k = key.lower().replace("-", "_")
    return any(f.replace("-", "_") in k for f in fields)


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
    if isinstance(value, str) and len(value) >= 13 and _CARD.search(value):
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
    if not any(f.encode() in lowered for f in fields) and not _RAW_HINT.search(raw):
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (
            raw
            if not _RAW_HINT.search(raw)
            else _CARD.sub(_card_sub, raw.decode("utf-8", "replace")).encode()
        )
    return orjson.dumps(scrub(data, fields))


def fields_for(settings: dict[str, Any]) -> frozenset[str] | None:
    """The project's scrub list (defaults + its own `scrub_fields`), or None when it turned scrubbing off."""
    if settings.get("scrub") is False:
        return None
    extra = settings.get("scrub_fields") or []
    return DEFAULT_FIELDS | {str(f).lower() for f in extra} if extra else DEFAULT_FIELDS
