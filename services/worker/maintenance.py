"""Retention that cannot fill the disk: partitions made ahead and dropped when old, per-project
retention, and a per-error cap on stored notices (the first and the most recent are kept).

Runs in one worker at a time (advisory lock); every step is bounded so a run never holds locks long.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from shared.db import Conn, ensure_partitions

logger = logging.getLogger(__name__)

LOCK = 0x6661756C746D6E  # any id unique to this job
DEFAULT_RETENTION_DAYS = 90
DEFAULT_MAX_NOTICES_PER_ERROR = 1000
KEEP_FIRST = 10  # the oldest notices of an error are kept: they show how it started
DELETE_BATCH = 5000


def _int_setting(settings: dict[str, Any], name: str, default: int) -> int:
    value = settings.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


async def _drop_old_partitions(conn: Conn, cutoff: dt.date) -> list[str]:
    """Detach (concurrently: no long lock) and drop every daily partition entirely before `cutoff`."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'notices'::regclass ORDER BY c.relname"
    )
    dropped = []
    for r in names:
        name = r["relname"]
        try:
            day = dt.datetime.strptime(name.removeprefix("notices_p"), "%Y%m%d").date()
        except ValueError:
            continue
        if day + dt.timedelta(days=1) > cutoff:
            continue
        await conn.execute(f'ALTER TABLE notices DETACH PARTITION "{name}" CONCURRENTLY')
        await conn.execute(f'DROP TABLE "{name}"')
        dropped.append(name)
    return dropped


_DELETE_OLD = """
WITH victims AS (
    SELECT id, received_at, error_id FROM notices
    WHERE project_id = $1 AND received_at < $2 LIMIT $3
), del AS (
    DELETE FROM notices n USING victims v
    WHERE n.id = v.id AND n.received_at = v.received_at RETURNING n.error_id
), per_error AS (
    SELECT error_id, count(*) AS c FROM del GROUP BY error_id
), upd AS (
    UPDATE errors e SET stored_count = greatest(0, e.stored_count - p.c)
    FROM per_error p WHERE e.id = p.error_id RETURNING 1
)
SELECT count(*) FROM del
"""

_CAP = """
WITH ranked AS (
    SELECT id, received_at,
           row_number() OVER (ORDER BY received_at DESC, id DESC) AS newest,
           row_number() OVER (ORDER BY received_at, id) AS oldest
    FROM notices WHERE error_id = $1
), del AS (
    DELETE FROM notices n USING ranked r
    WHERE n.error_id = $1 AND n.id = r.id AND n.received_at = r.received_at
      AND r.newest > $2::int - $3::int AND r.oldest > $3::int
    RETURNING 1
), cnt AS (SELECT count(*) AS c FROM del)
UPDATE errors SET stored_count = greatest(0, stored_count - (SELECT c FROM cnt))
WHERE id = $1 RETURNING (SELECT c FROM cnt)
"""


# User descriptions whose notice never came (or is gone) within the project's retention: orphans.
_PRUNE_DESCRIPTIONS = """
WITH victims AS (
    SELECT d.project_id, d.reference_id
    FROM user_descriptions d JOIN unnest($1::int[], $2::timestamptz[]) AS r(pid, cutoff) ON r.pid = d.project_id
    WHERE d.created_at < r.cutoff
      AND NOT EXISTS (SELECT 1 FROM notices n WHERE n.project_id = d.project_id AND n.reference_id = d.reference_id)
    LIMIT $3
)
DELETE FROM user_descriptions u USING victims v
WHERE u.project_id = v.project_id AND u.reference_id = v.reference_id
"""


async def run(conn: Conn, now: dt.datetime | None = None) -> dict[str, Any]:
    """One maintenance pass; returns what it did. Skips when another worker holds the lock."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
        return {"skipped": True}
    try:
        now = now or dt.datetime.now(dt.UTC)
        made = await ensure_partitions(conn)
        projects = await conn.fetch("SELECT id, settings FROM projects")
        retention = {
            p["id"]: _int_setting(p["settings"] or {}, "retention_days", DEFAULT_RETENTION_DAYS)
            for p in projects
        }
        longest = max(retention.values(), default=DEFAULT_RETENTION_DAYS)
        dropped = await _drop_old_partitions(conn, (now - dt.timedelta(days=longest)).date())
        deleted = 0
        for pid, days in retention.items():
            if days >= longest:
                continue  # whole partitions handle it
            cutoff = now - dt.timedelta(days=days)
            for _ in range(1000):  # bounded: at most 5 M rows a pass
                n = await conn.fetchval(_DELETE_OLD, pid, cutoff, DELETE_BATCH)
                deleted += n
                if n < DELETE_BATCH:
                    break
        pids = list(retention)
        cutoffs = [now - dt.timedelta(days=retention[p]) for p in pids]
        orphans = 0
        for _ in range(100):  # bounded: at most 500,000 a pass
            n = int((await conn.execute(_PRUNE_DESCRIPTIONS, pids, cutoffs, DELETE_BATCH)).rsplit(" ", 1)[1])
            orphans += n
            if n < DELETE_BATCH:
                break
        cut_hours = await conn.execute(
            "DELETE FROM error_hourly WHERE hour < $1", now - dt.timedelta(days=longest)
        )
        capped = 0
        caps = {
            p["id"]: _int_setting(p["settings"] or {}, "max_notices_per_error", DEFAULT_MAX_NOTICES_PER_ERROR)
            for p in projects
        }
        over = await conn.fetch(
            "SELECT id, project_id, stored_count FROM errors WHERE stored_count > 100 ORDER BY stored_count DESC"
            " LIMIT 1000"
        )
        for e in over:
            cap = caps.get(e["project_id"], DEFAULT_MAX_NOTICES_PER_ERROR)
            if e["stored_count"] > cap:
                capped += await conn.fetchval(_CAP, e["id"], cap, min(KEEP_FIRST, cap // 2)) or 0
        result = {
            "partitions_made": made,
            "partitions_dropped": dropped,
            "expired_notices": deleted,
            "orphan_descriptions": orphans,
            "capped_notices": capped,
            "expired_hours": int(cut_hours.rsplit(" ", 1)[1]),
        }
        logger.info("maintenance %s", " ".join(f"{k}={v}" for k, v in result.items()))
        return result
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
