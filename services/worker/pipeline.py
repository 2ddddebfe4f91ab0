"""Pure step: decoded stream envelopes -> rows for the notices table. No I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson

from shared import codec, ids
from shared.scrub import DEFAULT_FIELDS, scrub_notice, scrub_raw
from shared.timeutil import UTC

# Column order of the tmp_notices staging table (store.py).
COLUMNS = (
    "id",
    "received_at",
    "project_id",
    "error_id",
    "location_id",
    "protocol",
    "type",
    "environment",
    "exception",
    "message",
    "occurred_at",
    "reference_id",
    "fingerprint",
    "grouping_version",
    "file",
    "body",
    "raw",
)

MAX_TEXT = 10_000  # characters kept in indexed text columns


def _clean(value: Any) -> Any:
    """Drop NUL characters, which PostgreSQL text and jsonb refuse."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k) if isinstance(k, str) else k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")[:MAX_TEXT]


def to_row(env: codec.Envelope, scrub_fields: frozenset[str] | None = DEFAULT_FIELDS) -> tuple[Any, ...]:
    """One staging row for an envelope, secrets scrubbed; raises on anything that cannot be stored."""
    notice = env["n"]
    raw = env.get("raw")
    if scrub_fields is not None:
        notice = scrub_notice(notice, scrub_fields)  # type: ignore[assignment,arg-type]
        if isinstance(raw, bytes | bytearray):
            raw = scrub_raw(bytes(raw), scrub_fields)
    nid = uuid.UUID(env["id"])
    received = dt.datetime.fromtimestamp(ids.uuid7_ms(nid) / 1000, UTC)
    occurred = notice.get("occurred_at")
    body = notice
    if b"\\u0000" in orjson.dumps(notice, option=orjson.OPT_NON_STR_KEYS):
        body = _clean(notice)
    return (
        nid,
        received,
        env["pid"],
        env["eid"],
        uuid.UUID(env["loc"]),
        _text(notice.get("protocol")) or "unknown",
        _text(notice.get("type")) or "error",
        _text(notice.get("environment")) or "",
        _text(notice.get("exception")),
        _text(notice.get("message")),
        dt.datetime.fromtimestamp(occurred, UTC) if isinstance(occurred, int | float) else None,
        _text(notice.get("reference_id")),
        env["fp"],
        int(env.get("gv") or 1),
        _text(notice.get("file")),
        body,
        bytes(raw) if isinstance(raw, bytes | bytearray) else None,
    )
