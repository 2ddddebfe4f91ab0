"""Time series and totals, from the per-hour counts the workers maintain (nothing counted at read time)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from services.query.auth import require_user
from services.query.errors import not_found, path_int, resolve_error
from services.query.filters import time_param
from services.query.pagination import PROJECTS_PER_PAGE, Page, int_param, invalid
from services.query.reads import read_conn
from shared.timeutil import UTC, iso
from shared.web import json_response

INTERVALS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
DEFAULT_SPAN = {"hour": dt.timedelta(hours=24), "day": dt.timedelta(days=30)}
MAX_BUCKETS = 2000


async def error_stats(request: web.Request) -> web.Response:
    """`GET /v1/errors/:id/stats?interval=hour|day&since=&until=`: zero-filled counts per bucket (UTC)."""
    require_user(request)
    error_id = path_int(request, "id", "Error")
    interval = request.query.get("interval") or "hour"
    if interval not in INTERVALS:
        raise invalid("Query", "interval")
    until = time_param(request, "until") or dt.datetime.now(UTC)
    try:
        since = time_param(request, "since") or until - DEFAULT_SPAN[interval]
    except OverflowError:  # until in year 1
        raise invalid("Query", "until") from None
    if since > until or (until - since) / INTERVALS[interval] > MAX_BUCKETS:
        raise invalid("Query", "since")
    step = INTERVALS[interval]
    async with read_conn(request) as conn:
        found = await resolve_error(conn, error_id)  # merged: the target's series
        if found is None:
            raise not_found("Error")
        error_id = found
        rows = await conn.fetch(
            """
            SELECT b.bucket, coalesce(sum(h.count), 0)::bigint AS count
            FROM generate_series(date_trunc($2, $3::timestamptz, 'UTC'),
                                 date_trunc($2, $4::timestamptz, 'UTC'), $5::interval) AS b(bucket)
            LEFT JOIN error_hourly h
                   ON h.error_id = $1 AND h.hour >= b.bucket AND h.hour < b.bucket + $5::interval
            GROUP BY b.bucket ORDER BY b.bucket
            """,
            error_id,
            interval,
            since,
            until,
            step,
        )
    series = [{"t": iso(r["bucket"]), "count": r["count"]} for r in rows]
    return json_response(
        {
            "error_id": error_id,
            "interval": interval,
            "since": iso(since),
            "until": iso(until),
            "total": sum(p["count"] for p in series),
            "series": series,
        }
    )


async def totals(request: web.Request) -> web.Response:
    """`GET /v1/stats[?project_id=]`: per project, errors, unresolved errors, notices, and notices in 24 h."""
    require_user(request)
    project_id = int_param(request, "project_id", None)
    page = Page.from_request(request, default=PROJECTS_PER_PAGE, maximum=PROJECTS_PER_PAGE)
    async with read_conn(request) as conn:
        # One page of projects first, so the per-project sums run for those rows only.
        rows = await conn.fetch(
            """
            SELECT p.id AS project_id, p.name,
                   count(e.id) AS errors,
                   count(e.id) FILTER (WHERE NOT e.resolved) AS unresolved,
                   coalesce(sum(e.notices_count), 0)::bigint AS notices,
                   coalesce((SELECT sum(h.count) FROM error_hourly h JOIN errors x ON x.id = h.error_id
                             WHERE x.project_id = p.id AND h.hour >= now() - interval '24 hours'), 0)::bigint
                       AS notices_24h
            FROM (SELECT id, name FROM projects WHERE $1::int IS NULL OR id = $1
                  ORDER BY id LIMIT $2 OFFSET $3) p
            LEFT JOIN errors e ON e.project_id = p.id
            GROUP BY p.id, p.name ORDER BY p.id
            """,
            project_id,
            page.per_page,
            page.offset,
        )
        total = await conn.fetchval(
            "SELECT count(*) FROM projects WHERE $1::int IS NULL OR id = $1", project_id
        )
    return json_response([dict(r) for r in rows], headers={"Link": page.link_header(request, total)})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/errors/{id}/stats", error_stats), web.get("/v1/stats", totals)]
