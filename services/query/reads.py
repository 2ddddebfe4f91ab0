"""Where the query service reads: the replica (FAULTLINE_QUERY_DATABASE_URL) unless it could miss a write.

- Writes, and the reads a write handler makes, use the primary (POOL); so does the key cache, so a
  token works (and a revoked one stops) within FAULTLINE_KEY_REFRESH whatever the replica's lag.
- After this process answers a write request it notes the primary's WAL position; reads go to the
  primary until the replica has replayed past it (pg_last_wal_replay_lsn), so a change shows up in
  the next read. The check costs one round trip only while the replica is behind a write.
- A GET that finds nothing (404) on the replica is asked once more of the primary: the notice a
  worker stored a moment ago (`/locate` right after ingest), a project or deploy just made.
- A replica that cannot be reached sends reads to the primary for REPLICA_BACKOFF_S.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from services.query.state import POOL
from shared.web import ApiError, Handler

logger = logging.getLogger(__name__)

REPLICA_BACKOFF_S = 5.0
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# pg_lsn as a number; NULL on a server that is not replaying (a primary, a promoted replica).
_INSERT_LSN = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
_REPLAY_LSN = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
# The replica is gone or not accepting (not: a slow query, which would be as slow on the primary).
REPLICA_GONE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.InternalClientError,  # a pooled connection the replica closed while the loop was busy elsewhere
)


class ReadRouter:
    """Chooses the pool for a request's reads; shared by every request of one process."""

    def __init__(self, primary: asyncpg.Pool, replica: asyncpg.Pool) -> None:
        self.primary = primary
        self.replica = None if replica is primary else replica
        self.written = 0  # primary WAL position after this process's latest write
        self.replayed = 0  # highest replay position seen on the replica
        self._down_until = 0.0

    async def note_write(self) -> None:
        try:
            async with self.primary.acquire() as conn:
                lsn = await conn.fetchval(_INSERT_LSN)
        except (*REPLICA_GONE, TimeoutError, asyncpg.PostgresError) as e:  # the write most likely failed too
            logger.warning("could not read the primary's WAL position error=%s", type(e).__name__)
            return
        self.written = max(self.written, int(lsn))

    def replica_failed(self, why: str) -> None:
        logger.warning(
            "read replica unavailable, reading from the primary for %ss error=%s", REPLICA_BACKOFF_S, why
        )
        self._down_until = time.monotonic() + REPLICA_BACKOFF_S

    async def choose(self) -> asyncpg.Pool:
        if self.replica is None or time.monotonic() < self._down_until:
            return self.primary
        if self.written <= self.replayed:
            return self.replica
        try:
            async with self.replica.acquire() as conn:
                lsn = await conn.fetchval(_REPLAY_LSN)
        except REPLICA_GONE as e:
            self.replica_failed(type(e).__name__)
            return self.primary
        if lsn is not None:
            self.replayed = max(self.replayed, int(lsn))
        return self.replica if self.written <= self.replayed else self.primary


READS = web.AppKey("reads", ReadRouter)
_FROM = web.RequestKey("read_from", asyncpg.Pool)  # this request's choice, made at its first read
_ON_REPLICA = web.RequestKey("read_on_replica", bool)


@contextlib.asynccontextmanager
async def read_conn(request: web.Request) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """A connection for a read-only handler: the replica when that cannot miss a write, else the primary."""
    pool = request.get(_FROM)
    if pool is None:
        pool = request[_FROM] = await request.app[READS].choose()
    if pool is not request.app[POOL]:
        request[_ON_REPLICA] = True
    async with pool.acquire() as conn:
        yield conn


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _on_primary(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[_FROM] = request.app[POOL]
    request[_ON_REPLICA] = False
    return await handler(request)


@web.middleware
async def routing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Notes the WAL position after writes; a read that missed on the replica is asked of the primary."""
    router = request.app[READS]
    if router.replica is None:
        return await handler(request)
    if request.method not in SAFE_METHODS:
        try:
            return await handler(request)
        finally:
            await router.note_write()
    try:
        response = await handler(request)
    except ApiError as e:
        if e.status != 404 or not request.get(_ON_REPLICA):
            raise
        return await _on_primary(request, handler)
    except REPLICA_GONE as e:
        if not request.get(_ON_REPLICA) or _client_gone(request):
            raise
        router.replica_failed(type(e).__name__)
        return await _on_primary(request, handler)
    if response.status == 404 and request.get(_ON_REPLICA):
        return await _on_primary(request, handler)
    return response
