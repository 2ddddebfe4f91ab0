"""Timestamps: the API's `YYYY-MM-DDTHH:MM:SSZ` and lenient ISO 8601 parsing of client dates."""

from __future__ import annotations

import datetime as dt
import functools
import re

UTC = dt.UTC
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def iso(value: dt.datetime | float | None) -> str | None:
    """UTC, second precision, `Z` suffix; None stays None (blank fields are null)."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(value, UTC)
    value = value.astimezone(UTC)
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%SZ}"  # %Y does not pad years before 1000


def iso_epoch(seconds: float) -> str:
    """`iso(seconds)`, remembered for the last few whole seconds (the gateway stamps every answer)."""
    return _iso_second(int(seconds // 1))


@functools.lru_cache(maxsize=4)
def _iso_second(whole: int) -> str:
    return iso(float(whole)) or ""


def parse_iso(text: object) -> float | None:
    """Epoch seconds from an ISO 8601 string with any offset (7-digit .NET fractions too), or None."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        return None
    s = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    s = _FRACTION.sub(r"\1", s, count=1)
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        # astimezone: a time whose UTC year is outside 1..9999 cannot be stored or shown (0001-01-01+14:00).
        return value.astimezone(UTC).timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)
