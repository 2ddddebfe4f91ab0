"""Location look-ups: `/locate/{location_id}` (redirect to the notice page) and `/api/locate/{...}` (JSON).

Every notice of every protocol has a location id; CrashLog notices answer with their payload exactly as
submitted (the stored raw bytes), the others with the CrashLog interfaces built from the canonical notice.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from services.query.auth import require_user
from services.query.errors import ERROR_COLUMNS, NOTICE_COLUMNS, not_found
from services.query.reads import read_conn
from services.query.state import SETTINGS
from shared import serialize
from shared.timeutil import iso
from shared.web import json_response

logger = logging.getLogger(__name__)

Connection = Any  # an asyncpg connection or pool proxy

CONTEXT_EXTRAS = ("params", "session", "release", "tags", "level", "source", "reference_id")


def location_key(raw: str) -> uuid.UUID:
    """A location id from the path; 404 for anything that is not a UUID."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found("Notice") from None


def notice_path(location_id: uuid.UUID | str) -> str:
    """Where a person looks at a notice (pages.py serves it)."""
    return f"/notices/{location_id}"


async def find_notice(conn: Connection, location_id: uuid.UUID) -> dict[str, Any] | None:
    """The stored notice with this location id (with body and raw), or None while it is on its way."""
    row = await conn.fetchrow(
        f"SELECT {NOTICE_COLUMNS}, body, raw FROM notices WHERE location_id = $1 LIMIT 1", location_id
    )
    return None if row is None else dict(row.items())


async def find_error(conn: Connection, error_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {ERROR_COLUMNS} FROM errors WHERE id = $1", error_id)
    return None if row is None else dict(row.items())


def _frame(f: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file": f.get("file") or f.get("module"),
        "number": f.get("line"),
        "method": f.get("function"),
    }
    for key in ("context_line", "pre_context", "post_context"):
        if f.get(key) is not None:
            out[key] = f[key]
    return out


def payload_from_notice(body: Mapping[str, Any], received_at: dt.datetime | None) -> dict[str, Any]:
    """The five CrashLog interfaces for a notice of any protocol, from its canonical form."""
    chain = body.get("exceptions") or []
    first: Mapping[str, Any] = chain[0] if chain else {}
    data = body.get("data")
    notifier = data.get("notifier") if isinstance(data, dict) else None
    environment: dict[str, Any] = dict(body.get("cgi") or {})
    if body.get("environment"):
        environment.setdefault("name", body["environment"])
    context: dict[str, Any] = dict(body.get("context") or {})
    if body.get("hostname"):
        context.setdefault("hostname", body["hostname"])
    if body.get("user"):
        context.setdefault("current_user", body["user"])
    for key in CONTEXT_EXTRAS:
        if body.get(key):
            context.setdefault(key, body[key])
    occurred = body.get("occurred_at")
    return {
        "notifier": notifier if isinstance(notifier, dict) else {"name": body.get("protocol") or "unknown"},
        "event": {
            "message": first.get("message") or body.get("message"),
            "class_name": first.get("type") or body.get("exception"),
            "created_at": iso(occurred if isinstance(occurred, int | float) else received_at),
        },
        "backtrace": [_frame(f) for f in first.get("frames") or []],
        "environment": environment,
        "context": context,
    }


def payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CrashLog notice's payload as submitted; the built interfaces for any other notice."""
    raw = row["raw"]
    if row["protocol"] == "crashlog" and raw:
        try:
            stored = orjson.loads(raw)
        except orjson.JSONDecodeError:
            logger.warning("stored crashlog payload is not JSON notice_id=%s", row["id"])
        else:
            if isinstance(stored, dict):
                return stored
    return payload_from_notice(row["body"] or {}, row["received_at"])


async def redirect(request: web.Request) -> web.Response:
    """404 until the notice is stored, then 301 to its page (CrashLog's `/locate/:location_id`)."""
    location_id = location_key(request.match_info["location_id"])
    async with read_conn(request) as conn:
        found = await conn.fetchval("SELECT true FROM notices WHERE location_id = $1 LIMIT 1", location_id)
    if not found:
        raise not_found("Notice")
    base = request.app[SETTINGS].public_url.rstrip("/")
    return web.Response(status=301, headers={"Location": base + notice_path(location_id)})


async def api_locate(request: web.Request) -> web.Response:
    """The notice as `{"payload": ...}` plus its error and ids; user-scoped tokens only."""
    require_user(request)
    location_id = location_key(request.match_info["location_id"])
    async with read_conn(request) as conn:
        row = await find_notice(conn, location_id)
        if row is None:
            raise not_found("Notice")
        error = await find_error(conn, row["error_id"])
    return json_response(
        {
            "location_id": str(row["location_id"]),
            "notice_id": str(row["id"]),
            "error_id": row["error_id"],
            "project_id": row["project_id"],
            "protocol": row["protocol"],
            "received_at": iso(row["received_at"]),
            "url": request.app[SETTINGS].public_url.rstrip("/") + notice_path(location_id),
            "payload": payload(row),
            "error": serialize.error(error) if error is not None else None,
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/locate/{location_id}", redirect),
        web.get("/api/locate/{location_id}", api_locate),
    ]
