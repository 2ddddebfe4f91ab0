"""The write: one transaction per batch, idempotent, errors aggregated in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.worker import collisions, outbox
from services.worker.pipeline import COLUMNS
from shared.db import Conn

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS tmp_notices (
    id uuid, received_at timestamptz, project_id integer, error_id bigint, location_id uuid,
    protocol text, type text, environment text, exception text, message text,
    occurred_at timestamptz, reference_id text, fingerprint text, grouping_version integer,
    file text, body jsonb, raw bytea, previous_fingerprint text,
    previous_version integer
) ON COMMIT DELETE ROWS
"""

# Notices first, ON CONFLICT DO NOTHING: only the rows really inserted count towards errors and
# the hourly series, so a redelivered entry is counted once. $1-$6: the groupings rows the batch adds
# (collisions.resolve), as arrays: one statement whatever their number.
WRITE = """
WITH mapped AS (
    INSERT INTO groupings (project_id, environment, fingerprint, grouping_version, error_id, derived_id)
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[])
    ORDER BY 1, 2, 3, 4  -- unique-index locks in one order across workers
    ON CONFLICT DO NOTHING
), ins AS (
    INSERT INTO notices (id, received_at, project_id, error_id, location_id, protocol, type,
                         environment, exception, message, occurred_at, reference_id, fingerprint,
                         body, raw)
    SELECT id, received_at, project_id, error_id, location_id, protocol, type, environment,
           exception, message, occurred_at, reference_id, fingerprint, body, raw
    FROM tmp_notices
    ORDER BY id  -- every lock a batch takes, in one order across workers: no deadlock
    ON CONFLICT DO NOTHING
    RETURNING id, received_at, error_id
), latest AS (
    SELECT DISTINCT ON (t.error_id) t.*,
           count(*) OVER (PARTITION BY t.error_id) AS n,
           min(t.received_at) OVER (PARTITION BY t.error_id) AS first_at,
           first_value(t.id) OVER (PARTITION BY t.error_id ORDER BY t.id) AS first_id
    FROM ins JOIN tmp_notices t ON t.id = ins.id
    ORDER BY t.error_id, t.received_at DESC, t.id DESC
), hourly AS (
    INSERT INTO error_hourly (error_id, hour, count)
    SELECT error_id, date_trunc('hour', received_at), count(*) FROM ins GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (error_id, hour) DO UPDATE SET count = error_hourly.count + excluded.count
), up AS (
    INSERT INTO errors AS e (id, project_id, environment, fingerprint, grouping_version, type,
                             exception, message, file, last_notice_id, last_notice_at,
                             notices_count, stored_count, first_notice_at, first_notice_id,
                             most_recent_notice_at, first_seen_revision, last_seen_revision)
    SELECT l.error_id, l.project_id, l.environment, l.fingerprint, l.grouping_version, l.type,
           l.exception, l.message, l.file, l.id, l.received_at, l.n, l.n, l.first_at, l.first_id,
           l.received_at, d.revision, d.revision
    FROM latest l
    LEFT JOIN LATERAL (
        SELECT revision FROM deploys
        WHERE project_id = l.project_id AND environment = l.environment
        ORDER BY created_at DESC LIMIT 1
    ) d ON true
    ORDER BY l.error_id  -- concurrent batches lock shared errors rows in one order
    ON CONFLICT (id) DO UPDATE SET
        notices_count = e.notices_count + excluded.notices_count,
        stored_count = e.stored_count + excluded.stored_count,
        last_seen_revision = coalesce(excluded.last_seen_revision, e.last_seen_revision),
        first_notice_at = least(e.first_notice_at, excluded.first_notice_at),
        first_notice_id = least(e.first_notice_id, excluded.first_notice_id),
        most_recent_notice_at = greatest(e.most_recent_notice_at, excluded.most_recent_notice_at),
        -- Notice ids (UUIDv7) order notices as accepted, within a millisecond too: the newest wins.
        last_notice_id = greatest(e.last_notice_id, excluded.last_notice_id),
        message = CASE WHEN excluded.last_notice_id > e.last_notice_id
                       THEN excluded.message ELSE e.message END,
        last_notice_at = greatest(e.last_notice_at, excluded.last_notice_at),
        resolved = e.resolved AND excluded.most_recent_notice_at
                                  <= coalesce(e.resolved_at, '-infinity'),
        regressed_at = CASE WHEN e.resolved AND excluded.most_recent_notice_at
                                                > coalesce(e.resolved_at, '-infinity')
                            THEN now() ELSE e.regressed_at END,
        updated_at = now()
    -- Not the fingerprint: a merged error takes notices of all its fingerprints (the groupings table
    -- decided that; collisions.resolve keeps other groups off an id).
    WHERE e.project_id = excluded.project_id AND e.environment = excluded.environment
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)
"""


def mapping_arrays(added: Sequence[collisions.Mapping]) -> list[list[Any]]:
    """WRITE's $1-$6: the groupings rows a batch adds, column by column (none: six empty arrays)."""
    return [list(column) for column in zip(*added, strict=True)] if added else [[] for _ in range(6)]


async def init_connection(conn: Conn) -> None:
    # No JIT: the staging table has no statistics, so the planner guesses thousands of rows per
    # batch row; from about 2,000 rows a batch WRITE crosses jit_above_cost and PostgreSQL spends
    # ~1 s compiling it (measured: 5,000-row batches cost 2x the CPU per notice of 1,000-row ones).
    await conn.execute("SET jit = off")
    await conn.execute(STAGING)


async def write_batch(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> int:
    """Store the rows in one transaction; returns how many notices were new."""
    async with conn.transaction():
        # the mapped error, or the row's own id (never another group's)
        rows, added = await collisions.resolve(conn, list(rows))
        await conn.copy_records_to_table("tmp_notices", records=rows, columns=COLUMNS)
        record = await conn.fetchrow(WRITE, *mapping_arrays(added))
        await outbox.record(conn)  # webhook events, committed with the notices that caused them
    assert record is not None
    return int(record[0])
