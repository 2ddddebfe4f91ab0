"""PostgreSQL: the pool (jsonb via orjson) and the migration runner."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from typing import Any

import asyncpg
import orjson

logger = logging.getLogger(__name__)

# A plain connection or one borrowed from a pool: every helper here takes either.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Any session-level lock id unique to this project: serialises concurrent `migrate` runs.
_MIGRATION_LOCK = 0x6661756C746C6E


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: Conn) -> None:
    """Register the codecs every connection uses (jsonb as orjson, binary)."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, init: Any = None, **kw: Any
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python objects (`init` replaces the default set-up)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init or init_connection, **kw
    )
    assert pool is not None
    return pool


def _migrations() -> list[tuple[int, str, str]]:
    files = importlib.resources.files("shared") / "migrations"
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(conn: Conn) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; safe to run twice."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            logger.info("migration applied name=%s", name)
            applied.append(name)
        await ensure_partitions(conn)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def ensure_partitions(conn: Conn, back: int = 1, ahead: int = 7) -> int:
    """Make the daily notice partitions from `back` days ago to `ahead` days from now (UTC)."""
    made: int = await conn.fetchval(
        "SELECT faultline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - $1::int, $2::int)",
        back,
        back + ahead + 1,
    )
    return made


async def ping(pool: asyncpg.Pool, timeout: float = 1.0) -> str:
    """ "ok" when PostgreSQL answers within the timeout, else what went wrong (for /readyz)."""
    try:
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        return "ok"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
        return f"down: {type(e).__name__}"
