"""Rows -> the JSON shapes of the Exceptioner v1 read API (blank fields null, `...Z` timestamps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg

from shared.model import Frame
from shared.timeutil import iso

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record  # a database row, or a dict shaped like one


def frame_line(f: Mapping[str, Any]) -> str:
    """A frame as one backtrace line: the client's own text where it sent text."""
    if f.get("raw"):
        return str(f["raw"])
    where = f.get("file") or f.get("module") or "?"
    line = f":{f['line']}" if f.get("line") is not None else ""
    fn = f" in `{f['function']}`" if f.get("function") else ""
    return f"{where}{line}:{fn.strip()}" if fn else f"{where}{line}"


def backtrace(body: Mapping[str, Any] | None) -> list[str] | None:
    if not body:
        return None
    chain = body.get("exceptions") or []
    frames: list[Frame] = chain[0].get("frames", []) if chain else []
    return [frame_line(f) for f in frames]


def error(row: Row, body: Mapping[str, Any] | None = None, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "project_id": row["project_id"],
        "exception": row["exception"],
        "message": row["message"],
        "type": row["type"],
        "fingerprint": row["fingerprint"],
        "grouping_version": row["grouping_version"],
        "file": row["file"],
        "mode": row["environment"] or None,
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "notices_count": row["notices_count"],
        "first_notice_at": iso(row["first_notice_at"]),
        "most_recent_notice_at": iso(row["most_recent_notice_at"]),
        "resolved": row["resolved"],
        "resolved_at": iso(row["resolved_at"]),
        "regressed_at": iso(row["regressed_at"]),
        "stored_notices_count": row["stored_count"],
        "first_seen_revision": row["first_seen_revision"],
        "last_seen_revision": row["last_seen_revision"],
    }
    if detail:
        body = body or {}
        out["backtrace"] = backtrace(body)
        out["parameters"] = body.get("params")
        out["session"] = body.get("session")
        out["environment"] = body.get("cgi")
        out["last_notice_id"] = str(row["last_notice_id"]) if row["last_notice_id"] else None
    return out


def notice(row: Row, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "error_id": row["error_id"],
        "project_id": row["project_id"],
        "location_id": str(row["location_id"]),
        "message": row["message"],
        "exception": row["exception"],
        "type": row["type"],
        "protocol": row["protocol"],
        "mode": row["environment"] or None,
        "occurred_at": iso(row["occurred_at"]),
        "created_at": iso(row["received_at"]),
        "updated_at": iso(row["received_at"]),
    }
    if detail:
        body = row["body"] or {}
        out["backtrace"] = backtrace(body)
        out["exceptions"] = body.get("exceptions")
        out["parameters"] = body.get("params")
        out["session"] = body.get("session")
        out["environment"] = body.get("cgi")
        for key in (
            "context",
            "user",
            "hostname",
            "release",
            "level",
            "source",
            "tags",
            "data",
            "reference_id",
            "user_description",
        ):
            out[key] = body.get(key)
    return out


def deploy(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "environment": row["environment"],
        "author": row["author"],
        "repository": row["repository"],
        "revision": row["revision"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
