"""Workers: how fast 1 and 2 worker processes drain a pre-filled stream into PostgreSQL.

The workers start on an empty stream and are paused (SIGSTOP) while the backlog is queued by the
gateway's own publisher, then resumed: the clock runs from the resume to the last acknowledgement,
so start-up and filling are not timed. The ceiling is `store.write_batch` itself, fed pre-built rows
over one connection from this process: what a worker would reach if reading and decoding were free.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

import asyncpg

from services.worker import pipeline, store
from tests.bench import probe, profile
from tests.bench.fill import Template, entries, fill_stream
from tests.bench.stack import GROUP, BenchError, Stack, rss_mib


@dataclass(frozen=True)
class Drain:
    workers: int
    notices: int
    seconds: float
    cpu: dict[str, float]  # share of one core per kind of process
    rss_peak_mib: float  # largest worker peak RSS
    rss_idle_mib: float  # largest worker RSS after start-up, before the backlog
    pg_commits_per_1000: float
    redis_calls_per_1000: float

    @property
    def rate(self) -> float:
        return self.notices / self.seconds

    @property
    def per_worker(self) -> float:
        return self.rate / self.workers


async def drain(
    stack: Stack,
    tpls: list[Template],
    workers: int,
    count: int,
    batch_size: int,
    limit_s: float,
    profile_as: str = "",
) -> Drain:
    assert stack.project is not None
    await truncate(stack)
    await stack.reset_stream()
    env = {"FAULTLINE_BATCH_SIZE": str(batch_size), "FAULTLINE_BLOCK_MS": "200"}
    procs = [stack.worker(f"worker-{workers}x-{i}", **env) for i in range(workers)]
    conn = await stack.connect()
    try:
        await _reading(stack, len(procs), limit_s)
        idle = max(rss_mib(p.pid) for p in procs)
        for p in procs:
            os.kill(p.pid, signal.SIGSTOP)
        try:
            await fill_stream(stack.r, stack.layout, stack.project, tpls, count)
            commits0 = await probe.xact_commits(conn, stack.db_name)
            calls0 = await probe.commandstats(stack.r)
            meter = await probe.meter(
                stack.r, conn, stack.db_name, {f"worker#{i}": p.pid for i, p in enumerate(procs)}
            )
        finally:
            for p in procs:
                os.kill(p.pid, signal.SIGCONT)
        t0 = time.monotonic()
        deadline = t0 + limit_s
        with profile.record(bool(profile_as), procs[0].pid, profile_as, int(limit_s)):
            while True:
                added, acked = await stack.stream_counts()
                if acked >= count:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{workers} worker(s) stored {acked} of {count} in {limit_s:.0f}s")
                for p in procs:
                    p.check()
                await asyncio.sleep(0.02)
        seconds = time.monotonic() - t0
        cpu = probe.summarise(meter.stop())
        peak = max(rss_mib(p.pid, peak=True) for p in procs)
        calls1 = await probe.commandstats(stack.r)
        await asyncio.sleep(1.2)  # PostgreSQL publishes transaction counts about once a second
        commits = await probe.xact_commits(conn, stack.db_name) - commits0
        calls = sum(calls1.get(c, 0) - calls0.get(c, 0) for c in ("xreadgroup", "xack", "xadd", "xclaim"))
        stored = await conn.fetchval("SELECT count(*) FROM notices")
        if stored != count:
            raise BenchError(f"{count} notices were acknowledged but {stored} are stored")
    finally:
        await conn.close()
        stack.stop(*procs)
    return Drain(workers, count, seconds, cpu, peak, idle, commits * 1000 / count, calls * 1000 / count)


async def _reading(stack: Stack, workers: int, limit_s: float) -> None:
    """Wait until `workers` consumers have made their first blocking read of the stream."""
    deadline = time.monotonic() + limit_s
    while len(await stack.r.xinfo_consumers(stack.stream, GROUP)) < workers:
        if time.monotonic() > deadline:
            raise BenchError(f"{workers} worker(s) never started reading within {limit_s:.0f}s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


@dataclass(frozen=True)
class WriteCeiling:
    connections: int
    notices: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.notices / self.seconds


async def write_ceiling(
    stack: Stack, tpls: list[Template], count: int, batch_size: int, connections: int = 1
) -> WriteCeiling:
    """`store.write_batch` alone: pre-built rows over `connections` connections at once, the workers'
    batch size, the same uniform spread over the errors."""
    assert stack.project is not None
    # The same entries the workers drain, decoded here beforehand: the write alone is timed.
    fields = [(b"0-%d" % i, f) for i, f in enumerate(entries(stack.project, tpls, count, seed=2))]
    rows = pipeline.process(fields, lambda _: pipeline.Rules()).rows
    conns = [await stack.connect() for _ in range(connections)]
    try:
        for c in conns:
            await store.init_connection(c)

        async def shard(conn: asyncpg.Connection, part: list[tuple[object, ...]]) -> None:
            for k in range(0, len(part), batch_size):
                await store.write_batch(conn, part[k : k + batch_size])

        t0 = time.monotonic()
        await asyncio.gather(*(shard(c, rows[i::connections]) for i, c in enumerate(conns)))
        seconds = time.monotonic() - t0
    finally:
        for c in conns:
            await c.close()
    return WriteCeiling(connections, count, seconds)


async def truncate(stack: Stack) -> None:
    conn = await stack.connect()
    try:
        await conn.execute("TRUNCATE notices, errors, error_hourly")
    finally:
        await conn.close()
