"""Merge and split errors, resolve ids that moved, and the grouping-version settings (docs/grouping.md).

Both first take their project's grouping lock exclusively (services/worker/collisions.py: every
batch holds it shared from before its look-up to its commit), then the errors rows by id, the order a
worker's upsert takes them in. So no batch of the project is in flight while a merge moves rows, and
every statement after the lock sees what the batches before it committed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from services.query.auth import require_user
from services.query.errors import _error_detail, not_found, notice_key, path_int, resolve_error
from services.query.json_body import json_hash
from services.query.pagination import invalid
from services.query.state import POOL
from shared.fingerprint import VERSION, VERSIONS, grouping_versions
from shared.grouping import GROUPING_LOCK, MAX_TRIES, alternate, lock_slot
from shared.web import ApiError, json_response

MAX_MERGE = 100  # ids folded in by one request
DEFAULT_WINDOW_DAYS = 7  # transition window when a project's grouping version changes

LOCK_PROJECT = "SELECT pg_advisory_xact_lock($1::int, $2::int)"
LOCK_ERRORS = "SELECT id, project_id, environment, fingerprint FROM errors WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

# $1 the target, $2 the sources (all locked, their project's grouping lock held).
MERGE = (
    "UPDATE groupings SET error_id = $1, updated_at = now() WHERE error_id = ANY($2::bigint[])",
    """INSERT INTO error_redirects (id, project_id, error_id)
       SELECT s, (SELECT project_id FROM errors WHERE id = $1), $1 FROM unnest($2::bigint[]) s
       ON CONFLICT (id) DO UPDATE SET error_id = excluded.error_id""",
    "UPDATE error_redirects SET error_id = $1 WHERE error_id = ANY($2::bigint[])",
    """INSERT INTO error_hourly (error_id, hour, count)
       SELECT $1, hour, sum(count) FROM error_hourly WHERE error_id = ANY($2::bigint[])
       GROUP BY hour ORDER BY hour
       ON CONFLICT (error_id, hour) DO UPDATE SET count = error_hourly.count + excluded.count""",
    "DELETE FROM error_hourly WHERE error_id = ANY($2::bigint[]) AND error_id <> $1",
    "UPDATE notices SET error_id = $1 WHERE error_id = ANY($2::bigint[])",
    """WITH src AS (SELECT * FROM errors WHERE id = $1 OR id = ANY($2::bigint[]))
       UPDATE errors e SET
           notices_count = (SELECT sum(notices_count) FROM src),
           stored_count = (SELECT sum(stored_count) FROM src),
           first_notice_at = (SELECT min(first_notice_at) FROM src),
           first_notice_id = (SELECT first_notice_id FROM src ORDER BY first_notice_id LIMIT 1),
           most_recent_notice_at = (SELECT max(most_recent_notice_at) FROM src),
           last_notice_at = (SELECT max(last_notice_at) FROM src),
           last_notice_id = (SELECT last_notice_id FROM src ORDER BY last_notice_id DESC LIMIT 1),
           message = (SELECT message FROM src ORDER BY last_notice_id DESC LIMIT 1),
           first_seen_revision = coalesce((SELECT first_seen_revision FROM src
               WHERE first_seen_revision IS NOT NULL ORDER BY first_notice_id LIMIT 1), e.first_seen_revision),
           last_seen_revision = coalesce((SELECT last_seen_revision FROM src
               WHERE last_seen_revision IS NOT NULL ORDER BY last_notice_id DESC LIMIT 1), e.last_seen_revision),
           resolved = (SELECT bool_and(resolved) FROM src),
           resolved_at = CASE WHEN (SELECT bool_and(resolved) FROM src)
                              THEN (SELECT max(resolved_at) FROM src) END,
           regressed_at = (SELECT max(regressed_at) FROM src),
           updated_at = now()
       WHERE e.id = $1""",
    "DELETE FROM errors WHERE id = ANY($2::bigint[]) AND id <> $1",
)


def _ids(data: dict[str, Any]) -> list[int]:
    raw = data.get("ids")
    if (
        not isinstance(raw, list)
        or not 0 < len(raw) <= MAX_MERGE
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 1 << 63 for i in raw)
    ):
        raise invalid("Merge", "ids")  # a list of 1 to MAX_MERGE error ids
    return list(raw)


async def merge(request: web.Request) -> web.Response:
    """Fold the errors `ids` into this one; answers with the merged error. Repeating it changes nothing."""
    require_user(request)
    asked = path_int(request, "id", "Error")
    wanted = _ids(await json_hash(request))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        target = await _lock(conn, asked)
        sources = []
        for i in wanted:
            found = await resolve_error(conn, i)
            if found is None:
                raise ApiError(404, f"Error {i} not found")
            if found != target and found not in sources:
                sources.append(found)
        if sources:
            every = sorted([target, *sources])
            rows = await conn.fetch(LOCK_ERRORS, every)
            if len(rows) != len(every):  # merged or split meanwhile by another request
                raise ApiError(409, "an error changed while merging; try again")
            places = {(r["project_id"], r["environment"]) for r in rows}
            if len(places) > 1:
                raise invalid("Merge", "ids")  # only errors of one project and environment merge
            for statement in MERGE:
                await conn.execute(statement, target, sources)
        return json_response(await _error_detail(conn, target))


async def split(request: web.Request) -> web.Response:
    """A fingerprint (given, or a notice's) leaves this error: its notices and future notices form its own."""
    require_user(request)
    asked = path_int(request, "id", "Error")
    data = await json_hash(request)
    fp, notice = data.get("fingerprint"), data.get("notice_id")
    if (fp is None) == (notice is None) or not isinstance(fp or notice, str):
        raise invalid("Split", "fingerprint")  # exactly one of fingerprint, notice_id
    if isinstance(fp, str) and ("\x00" in fp or len(fp) > 1000):  # no stored fingerprint looks like it
        raise ApiError(404, "that fingerprint is not this error's")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        target = await _lock(conn, asked)
        error = await conn.fetchrow(
            "SELECT project_id, environment, fingerprint FROM errors WHERE id = $1", target
        )
        if error is None:
            raise not_found("Error")
        project, env = error["project_id"], error["environment"]
        if notice is not None:
            nid, received = notice_key(notice)
            fp = await conn.fetchval(
                "SELECT fingerprint FROM notices WHERE id = $1 AND received_at = $2 AND error_id = $3",
                nid,
                received,
                target,
            )
            if fp is None:
                raise not_found("Notice")
        assert isinstance(fp, str)
        key = (project, env, fp)
        owner = await conn.fetchval(
            "SELECT error_id FROM groupings WHERE project_id = $1 AND environment = $2 AND fingerprint = $3"
            " ORDER BY grouping_version DESC LIMIT 1",
            *key,
        )
        if owner is not None and owner != target:  # split before: the same answer again
            own = await conn.fetchval("SELECT fingerprint FROM errors WHERE id = $1", owner)
            if own == fp:
                return json_response(await _split_answer(conn, owner, target, fp, 0))
        if owner != target:
            raise ApiError(404, "that fingerprint is not this error's")
        if fp == error["fingerprint"]:  # its own error already (split the others out of it instead)
            return json_response(await _split_answer(conn, target, target, fp, 0))
        await conn.execute(LOCK_ERRORS, [target])
        new = await _free_id(conn, project, env, fp)
        moved = await _split_out(conn, target, new, key)
        return json_response(await _split_answer(conn, new, target, fp, moved))


async def _lock(conn: Any, asked: int) -> int:
    """Take the grouping lock of the project of the error `asked` names; that error's id, after the wait."""
    target = await resolve_error(conn, asked)
    project = await conn.fetchval("SELECT project_id FROM errors WHERE id = $1", target)
    if project is None:
        raise not_found("Error")
    await conn.execute(LOCK_PROJECT, GROUPING_LOCK, lock_slot(project))  # waits for the batches in flight
    target = await resolve_error(conn, asked)  # merged meanwhile: its target (same project)
    if target is None:
        raise not_found("Error")
    return target


async def _free_id(conn: Any, project: int, env: str, fp: str) -> int:
    """The fingerprint's derived id, or its next alternate when an error already has that one."""
    for attempt in range(MAX_TRIES):
        eid = alternate(project, env, fp, attempt)
        if await conn.fetchval("SELECT 1 FROM errors WHERE id = $1", eid) is None:
            return eid
    raise ApiError(409, "no free error id for that fingerprint")


SPLIT_NOTICES = """
WITH moved AS (
    UPDATE notices SET error_id = $2 WHERE error_id = $1 AND fingerprint = $3
    RETURNING id, received_at, type, exception, message
), hours AS (
    SELECT date_trunc('hour', received_at) AS hour, count(*) AS n FROM moved GROUP BY 1
), less AS (
    UPDATE error_hourly h SET count = h.count - hours.n FROM hours WHERE h.error_id = $1 AND h.hour = hours.hour
), more AS (
    INSERT INTO error_hourly (error_id, hour, count) SELECT $2, hour, n FROM hours ORDER BY hour
    ON CONFLICT (error_id, hour) DO UPDATE SET count = error_hourly.count + excluded.count
), newest AS (
    SELECT * FROM moved ORDER BY received_at DESC, id DESC LIMIT 1
), made AS (
    INSERT INTO errors (id, project_id, environment, fingerprint, grouping_version, type, exception,
                        message, last_notice_id, last_notice_at, notices_count, stored_count,
                        first_notice_at, first_notice_id, most_recent_notice_at)
    SELECT $2, $4, $5, $3, $6, n.type, n.exception, n.message, n.id, n.received_at,
           (SELECT count(*) FROM moved), (SELECT count(*) FROM moved),
           (SELECT min(received_at) FROM moved), (SELECT id FROM moved ORDER BY id LIMIT 1),
           n.received_at
    FROM newest n
)
SELECT count(*) FROM moved
"""
# What is left in the error it left: counts less the notices moved, first and last notices again.
SPLIT_REST = """
UPDATE errors e SET
    notices_count = greatest(0, e.notices_count - $2), stored_count = greatest(0, e.stored_count - $2),
    last_notice_id = coalesce(l.id, e.last_notice_id), last_notice_at = coalesce(l.received_at, e.last_notice_at),
    first_notice_id = coalesce(f.id, e.first_notice_id),
    first_notice_at = coalesce(f.received_at, e.first_notice_at), updated_at = now()
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT id, received_at FROM notices WHERE error_id = $1
                   ORDER BY received_at DESC, id DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT id, received_at FROM notices WHERE error_id = $1
                   ORDER BY received_at, id LIMIT 1) f ON true
WHERE e.id = $1
"""


async def _split_out(conn: Any, target: int, new: int, key: tuple[int, str, str]) -> int:
    """Point the fingerprint at `new`, move its stored notices (counts and hours go with them)."""
    project, env, fp = key
    version = await conn.fetchval(
        "UPDATE groupings SET error_id = $4, updated_at = now() WHERE project_id = $1 AND environment = $2"
        " AND fingerprint = $3 AND error_id = $5 RETURNING grouping_version",
        project,
        env,
        fp,
        new,
        target,
    )
    await conn.execute("DELETE FROM error_redirects WHERE id = $1", new)
    moved: int = await conn.fetchval(SPLIT_NOTICES, target, new, fp, project, env, version or VERSION)
    if moved:
        await conn.execute(SPLIT_REST, target, moved)
        await conn.execute("DELETE FROM error_hourly WHERE error_id = $1 AND count <= 0", target)
    return moved


async def _split_answer(conn: Any, new: int, source: int, fp: str, moved: int) -> dict[str, Any]:
    exists = await conn.fetchval("SELECT 1 FROM errors WHERE id = $1", new)
    return {
        "id": new,
        "from": source,
        "fingerprint": fp,
        "notices_moved": moved,
        # no stored notice had the fingerprint: the error is made by its next notice
        "error": await _error_detail(conn, new) if exists else None,
    }


def valid_version(v: Any) -> bool:
    return v is None or isinstance(v, int) and not isinstance(v, bool) and v in VERSIONS


def transition(
    current: dict[str, Any], set_keys: dict[str, Any], drop: list[str], now: dt.datetime
) -> tuple[dict[str, Any], list[str]]:
    """A settings patch with the transition window a changed grouping version opens (or none)."""
    if "grouping_version" not in set_keys and "grouping_version" not in drop:
        return set_keys, drop
    old = grouping_versions(current)[0]
    new = set_keys.get("grouping_version", VERSION)
    if new == old:
        return set_keys, drop
    days = set_keys.get("grouping_window_days", current.get("grouping_window_days", DEFAULT_WINDOW_DAYS))
    if not days:
        return set_keys, [*drop, "grouping_transition"]
    until = (now + dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")
    return {**set_keys, "grouping_transition": {"from": old, "until": until}}, drop


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/errors/{id}/merge", merge),
        web.post("/v1/errors/{id}/split", split),
    ]
