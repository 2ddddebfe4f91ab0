"""Deploys queued by the gateway (Airbrake's `POST /api/v4/projects/{id}/deploys`), written by the worker.

The gateway never writes PostgreSQL; it queues a `stream.Deploy` whose `ref` it made, so a redelivered
entry records its deploy once (`deploys.ref` is unique).
"""

from __future__ import annotations

import logging

import asyncpg

from services.worker import outbox
from shared.stream import Deploy

logger = logging.getLogger(__name__)

Refused = tuple[bytes, str]
_TRANSIENT = (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)

INSERT = """
INSERT INTO deploys (project_id, environment, author, repository, revision, ref, created_at, updated_at)
SELECT pid, env, author, repo, rev, ref, to_timestamp(at), to_timestamp(at)
FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::float8[])
    AS t(pid, env, author, repo, rev, ref, at)
ON CONFLICT (ref) DO NOTHING
"""


async def write(pool: asyncpg.Pool, deploys: list[tuple[bytes, Deploy]]) -> list[Refused]:
    """Insert the batch's deploys; the entries PostgreSQL refuses (a deleted project) come back to dead-letter."""
    if not deploys:
        return []
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                outbox.with_deploys(INSERT),  # deploy.created deliveries in the same statement
                [d.project_id for _, d in deploys],
                [d.environment for _, d in deploys],
                [d.author for _, d in deploys],
                [d.repository for _, d in deploys],
                [d.revision for _, d in deploys],
                [d.ref for _, d in deploys],
                [d.received_at for _, d in deploys],
            )
    except _TRANSIENT:
        raise
    except asyncpg.PostgresError as e:
        if len(deploys) == 1:
            logger.warning("deploy refused by database id=%s error=%r", deploys[0][0], e)
            return [(deploys[0][0], f"{type(e).__name__}: {e}")]
        mid = len(deploys) // 2
        return await write(pool, deploys[:mid]) + await write(pool, deploys[mid:])
    logger.info("deploys stored count=%d", len(deploys))
    return []
