"""Errors and their notices: `/v1/errors...`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from aiohttp import web

from services.query.auth import require_user
from services.query.filters import error_filters, in_time_range
from services.query.json_body import json_hash
from services.query.pagination import Page, invalid
from services.query.reads import read_conn
from services.query.state import POOL
from shared import serialize
from shared.ids import uuid7_ms
from shared.timeutil import UTC
from shared.web import ApiError, json_response

ERROR_COLUMNS = """id, project_id, environment, fingerprint, grouping_version, type, exception, message,
    file, last_notice_id, last_notice_at, notices_count, first_notice_at, most_recent_notice_at,
    created_at, updated_at, resolved, resolved_at, regressed_at, stored_count, first_seen_revision,
    last_seen_revision"""
NOTICE_COLUMNS = """id, received_at, project_id, error_id, location_id, protocol, type, environment,
    exception, message, occurred_at"""


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


_ID_LIMIT = {"Project": 1 << 31}  # projects.id is a PostgreSQL integer; errors and deploys are bigint


def path_int(request: web.Request, name: str, what: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise not_found(what) from None
    if not 0 < value < _ID_LIMIT.get(what, 1 << 63):
        raise not_found(what)
    return value


# An id that is no error's now: one merged into another (error_redirects), or one a client was
# answered for a fingerprint that maps to another error (groupings.derived_id). services/query/grouping.py.
RESOLVE = """
SELECT coalesce(
    (SELECT id FROM errors WHERE id = $1),
    (SELECT r.error_id FROM error_redirects r JOIN errors e ON e.id = r.error_id WHERE r.id = $1),
    (SELECT g.error_id FROM groupings g JOIN errors e ON e.id = g.error_id
     WHERE g.derived_id = $1 ORDER BY g.grouping_version DESC, g.updated_at DESC LIMIT 1)
)
"""


async def resolve_error(conn: Any, error_id: int) -> int | None:
    """The id of the error `error_id` is, or now belongs to (after a merge); None when none."""
    found: int | None = await conn.fetchval(RESOLVE, error_id)
    return found


async def resolved_id(request: web.Request, conn: Any, name: str = "id") -> int:
    """The path's error id, resolved; 404 when it names no error, past or present."""
    found = await resolve_error(conn, path_int(request, name, "Error"))
    if found is None:
        raise not_found("Error")
    return found


def answer(error_id: int, body: Any) -> web.Response:
    """An error's JSON; Content-Location names it when the path asked by an id it was merged from."""
    return json_response(body, headers={"Content-Location": f"/v1/errors/{error_id}"})


async def list_errors(request: web.Request) -> web.Response:
    """Errors with the dashboard filters (environment, type, exception, q, since/until) and sorts."""
    require_user(request)
    page = Page.from_request(request)
    where, order = error_filters(request)
    n = len(where.args)
    async with read_conn(request) as conn:
        rows = await conn.fetch(
            f"SELECT {ERROR_COLUMNS} FROM errors WHERE {where.sql()}"
            f" ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
            *where.args,
            page.per_page,
            page.offset,
        )
        total = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM errors WHERE {where.sql()} LIMIT {page.count_cap}) s",
            *where.args,
        )
    return json_response(
        [serialize.error(r) for r in rows], headers={"Link": page.link_header(request, total)}
    )


async def _error_detail(conn: Any, error_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {ERROR_COLUMNS} FROM errors WHERE id = $1", error_id)
    if row is None:
        raise not_found("Error")
    body = None
    if row["last_notice_id"] is not None:
        body = await conn.fetchval(
            "SELECT body FROM notices WHERE id = $1 AND received_at = $2",
            row["last_notice_id"],
            row["last_notice_at"],
        )
    return serialize.error(row, body, detail=True)


async def get_error(request: web.Request) -> web.Response:
    require_user(request)
    async with read_conn(request) as conn:
        error_id = await resolved_id(request, conn)
        return answer(error_id, await _error_detail(conn, error_id))


async def update_error(request: web.Request) -> web.Response:
    require_user(request)
    path_int(request, "id", "Error")
    data = await json_hash(request)
    resolved = data.get("resolved")
    if "resolved" in data and not isinstance(resolved, bool):
        raise invalid("Error", "resolved")
    async with request.app[POOL].acquire() as conn:
        error_id = await resolved_id(request, conn)
        if isinstance(resolved, bool):
            status = await conn.execute(
                "UPDATE errors SET resolved = $2, resolved_at = CASE WHEN $2 THEN now() END,"
                " updated_at = now() WHERE id = $1",
                error_id,
                resolved,
            )
            if status.endswith(" 0"):
                raise not_found("Error")
        return answer(error_id, await _error_detail(conn, error_id))


def _cursor(raw: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    """`{microseconds}_{notice id}` of the last notice on the previous page."""
    if not raw:
        return None
    try:
        micros, _, nid = raw.partition("_")
        at = dt.datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
        cursor = at, uuid.UUID(nid)
    except (ValueError, OverflowError, OSError):
        raise invalid("Pagination", "cursor") from None
    if not in_time_range(at):  # year 1 would reach PostgreSQL as -infinity
        raise invalid("Pagination", "cursor")
    return cursor


async def list_notices(request: web.Request) -> web.Response:
    """An error's notices, newest first; `page` for random access, the `next` link's keyset cursor for depth."""
    require_user(request)
    path_int(request, "error_id", "Error")
    cursor = _cursor(request.query.get("cursor"))
    page = Page.from_request(request, keyset=cursor is not None)
    async with read_conn(request) as conn:
        error_id = await resolved_id(request, conn, "error_id")
        total = await conn.fetchval("SELECT stored_count FROM errors WHERE id = $1", error_id)
        if total is None:
            raise not_found("Error")
        if cursor is None:
            rows = await conn.fetch(
                f"SELECT {NOTICE_COLUMNS} FROM notices WHERE error_id = $1"
                " ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3",
                error_id,
                page.per_page,
                page.offset,
            )
        else:
            rows = await conn.fetch(
                f"SELECT {NOTICE_COLUMNS} FROM notices WHERE error_id = $1"
                " AND (received_at, id) < ($2, $3) ORDER BY received_at DESC, id DESC LIMIT $4",
                error_id,
                cursor[0],
                cursor[1],
                page.per_page,
            )
    next_cursor = None
    if rows:
        last = rows[-1]
        micros = int(last["received_at"].timestamp() * 1_000_000)
        next_cursor = f"{micros}_{last['id']}"
    return json_response(
        [serialize.notice(r) for r in rows], headers={"Link": page.link_header(request, total, next_cursor)}
    )


def notice_key(raw: str) -> tuple[uuid.UUID, dt.datetime]:
    """A notice id and the partition time inside it; 404 for anything that is not one."""
    try:
        nid = uuid.UUID(raw)
    except ValueError:
        raise not_found("Notice") from None
    try:
        return nid, dt.datetime.fromtimestamp(uuid7_ms(nid) / 1000, UTC)
    except (ValueError, OverflowError, OSError):  # not a UUIDv7: its "time" is past year 9999
        raise not_found("Notice") from None


async def get_notice(request: web.Request) -> web.Response:
    require_user(request)
    path_int(request, "error_id", "Error")
    nid, received = notice_key(request.match_info["id"])
    async with read_conn(request) as conn:
        error_id = await resolved_id(request, conn, "error_id")
        row = await conn.fetchrow(
            f"SELECT {NOTICE_COLUMNS}, body FROM notices"
            " WHERE id = $1 AND received_at = $2 AND error_id = $3",
            nid,
            received,
            error_id,
        )
    if row is None:
        raise not_found("Notice")
    return json_response(serialize.notice(row, detail=True))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/errors", list_errors),
        web.get("/v1/errors/{id}", get_error),
        web.patch("/v1/errors/{id}", update_error),
        web.post("/v1/errors/{id}", update_error),
        web.get("/v1/errors/{error_id}/notices", list_notices),
        web.get("/v1/errors/{error_id}/notices/{id}", get_notice),
    ]
