"""End users' descriptions of events (Exceptionless `user-description`), applied by the worker.

A description names its event by reference id and may arrive before or after that event is stored.
Both orders meet in the `user_descriptions` table: a description is stored there and copied into
any notice already carrying its reference id; a notice written later gets the waiting description
copied in. Both sides take the same advisory lock per (project, reference id) first, so two
workers doing one each can never both miss the other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from services.worker.pipeline import COLUMNS
from shared.stream import Description

logger = logging.getLogger(__name__)

Dead = tuple[bytes, dict[bytes, bytes], str]

_PID = COLUMNS.index("project_id")
_REF = COLUMNS.index("reference_id")
_TRANSIENT = (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)

LOCK = """
SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i
"""

STORE = """
INSERT INTO user_descriptions AS u (project_id, reference_id, data, created_at)
SELECT pid, ref, data, to_timestamp(at)
FROM unnest($1::int[], $2::text[], $3::jsonb[], $4::float8[]) AS t(pid, ref, data, at)
ON CONFLICT (project_id, reference_id) DO UPDATE SET data = excluded.data, created_at = excluded.created_at
    WHERE excluded.created_at >= u.created_at
"""

# Copy each waiting description into the notices with its reference id (only where it differs, so a
# redelivered batch rewrites nothing).
MERGE = """
UPDATE notices AS n SET body = jsonb_set(n.body, '{user_description}', d.data)
FROM user_descriptions AS d, unnest($1::int[], $2::text[]) AS t(pid, ref)
WHERE d.project_id = t.pid AND d.reference_id = t.ref
  AND n.project_id = t.pid AND n.reference_id = t.ref
  AND n.body -> 'user_description' IS DISTINCT FROM d.data
"""


def lock_key(project_id: int, reference_id: str) -> int:
    """A signed 64-bit advisory-lock key for one reference id of one project."""
    digest = hashlib.blake2b(f"user_description\x00{project_id}\x00{reference_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def latest(descriptions: Iterable[tuple[bytes, Description]]) -> list[Description]:
    """One description per reference id: the last received (a batch may hold several)."""
    chosen: dict[tuple[int, str], Description] = {}
    for _, d in descriptions:
        key = (d.project_id, d.reference_id)
        if key not in chosen or d.received_at >= chosen[key].received_at:
            chosen[key] = d
    return list(chosen.values())


def notice_refs(rows: Iterable[Sequence[Any]]) -> set[tuple[int, str]]:
    """(project id, reference id) of the staged notice rows that carry one."""
    return {(row[_PID], row[_REF]) for row in rows if row[_REF]}


async def apply(
    pool: asyncpg.Pool,
    descriptions: list[tuple[bytes, Description]],
    rows: Sequence[Sequence[Any]],
    fields: dict[bytes, dict[bytes, bytes]],
) -> list[Dead]:
    """Store the batch's descriptions and meet them with the batch's notices, in one transaction.

    Returns the description entries PostgreSQL refused (to dead-letter); connection trouble raises,
    so the whole batch is retried (every step here is idempotent).
    """
    chosen = latest(descriptions)
    refs = notice_refs(rows) | {(d.project_id, d.reference_id) for d in chosen}
    if not refs:
        return []
    pairs = sorted(refs)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK, sorted({lock_key(p, r) for p, r in pairs}))
            if chosen:
                await conn.execute(
                    STORE,
                    [d.project_id for d in chosen],
                    [d.reference_id for d in chosen],
                    [d.data for d in chosen],
                    [d.received_at for d in chosen],
                )
            await conn.execute(MERGE, [p for p, _ in pairs], [r for _, r in pairs])
    except _TRANSIENT:
        raise
    except asyncpg.PostgresError as e:
        logger.warning(
            "user descriptions refused descriptions=%d notices=%d error=%r", len(descriptions), len(rows), e
        )
        return [(entry_id, fields[entry_id], f"{type(e).__name__}: {e}") for entry_id, _ in descriptions]
    if chosen:
        logger.info("user descriptions stored count=%d", len(chosen))
    return []
