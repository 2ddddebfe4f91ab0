"""Who is using the CPU: the service processes, their PostgreSQL backends, the Redis server."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from tests.bench.wrk import CpuMeter


async def redis_pid(redis: aioredis.Redis) -> int | None:
    info = await redis.info("server")
    pid = info.get("process_id")
    return int(pid) if pid else None


async def backend_pids(conn: asyncpg.Connection, database: str) -> list[int]:
    """PostgreSQL backends serving the benchmark database, except this connection."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
    )
    return [r["pid"] for r in rows]


async def meter(
    redis: aioredis.Redis, conn: asyncpg.Connection, database: str, services: dict[str, int]
) -> CpuMeter:
    """A started CpuMeter over the services, all PostgreSQL backends of the database, and Redis."""
    pids = dict(services)
    for i, pid in enumerate(await backend_pids(conn, database)):
        pids[f"postgres#{i}"] = pid
    rp = await redis_pid(redis)
    if rp:
        pids["redis"] = rp
    return CpuMeter(pids).start()


def summarise(shares: dict[str, float]) -> dict[str, float]:
    """Shares per kind of process (postgres backends added up)."""
    out: dict[str, float] = {}
    for k, v in shares.items():
        kind = k.split("#", 1)[0]
        out[kind] = out.get(kind, 0.0) + v
    return out


async def commandstats(redis: aioredis.Redis) -> dict[str, int]:
    """Server-wide call counters of the commands the pipeline sends."""
    info = await redis.info("commandstats")
    out = {}
    for name, stats in info.items():
        if isinstance(stats, dict):
            out[name.removeprefix("cmdstat_")] = int(stats.get("calls", 0))
    return out


async def xact_commits(conn: asyncpg.Connection, database: str) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database))
