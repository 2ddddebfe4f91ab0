"""End to end: gateway + 2 workers + query service under saturating load, then the lag from
acceptance to queryable at half that load.

Stored counts come from the stream (an entry is acknowledged only after its transaction committed)
during the run, and from the errors table afterwards: every accepted notice must be stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from tests.bench import wrk
from tests.bench.payloads import exceptioner
from tests.bench.stack import BenchError, Stack, rss_mib


@dataclass
class Saturated:
    name: str
    result: wrk.WrkResult
    per_request: int
    seconds: float
    stored_in_window: int
    accepted_total: int  # stream entries added by the run (the gateway's own count of queued notices)
    stored_total: int  # notices the workers stored for it, counted in PostgreSQL after the drain
    max_backlog: int
    drain_seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)  # highest RSS seen during the run

    @property
    def accepted_per_s(self) -> float:
        return self.result.rate * self.per_request

    @property
    def stored_per_s(self) -> float:
        return self.stored_in_window / self.seconds


async def stored_notices(conn: asyncpg.Connection, project_id: int) -> int:
    """Notices written for the project (errors.notices_count is never lowered by retention)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(notices_count), 0) FROM errors WHERE project_id = $1", project_id
        )
    )


async def drain(stack: Stack, limit_s: float) -> float:
    """Wait until every queued entry is acknowledged; returns how long that took."""
    t0 = time.monotonic()
    await stack.settled_added(limit_s=limit_s)
    while True:
        added, acked = await stack.stream_counts()
        if acked >= added:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            raise BenchError(f"workers left {added - acked} notices unstored after {limit_s:.0f}s")
        await asyncio.sleep(0.1)


async def saturate(
    stack: Stack,
    conn: asyncpg.Connection,
    name: str,
    url: str,
    requests_file: Path,
    seconds: int,
    connections: int,
    per_request: int,
    pids: dict[str, int],
    drain_timeout: float,
) -> Saturated:
    assert stack.project is not None
    await drain(stack, drain_timeout)
    stored0 = await stored_notices(conn, stack.project.id)
    added0, acked0 = await stack.stream_counts()
    meter = wrk.CpuMeter(pids).start()
    task = asyncio.create_task(wrk.run(url, requests_file, seconds, connections=connections))
    t0 = time.monotonic()
    first: tuple[float, int] | None = None
    last = (t0, acked0)
    backlog = 0
    rss: dict[str, float] = {}
    while not task.done():
        await asyncio.sleep(0.25)
        now = time.monotonic()
        added, acked = await stack.stream_counts()
        backlog = max(backlog, added - acked)
        for k, pid in pids.items():
            rss[k] = max(rss.get(k, 0.0), rss_mib(pid))
        if now - t0 >= 0.5 and first is None:  # skip the first half second: connections ramp up
            first = (now, acked)
        if not task.done():
            last = (now, acked)
    result = await task
    cpu = meter.stop()
    cpu["wrk"] = result.cores
    added_end = await stack.settled_added()
    drained = await drain(stack, drain_timeout)
    stored = await stored_notices(conn, stack.project.id) - stored0
    # The stream holds one raw entry per accepted request, each of `per_request` notices.
    entries = added_end - added0
    accepted = entries * per_request
    if stored != accepted:
        raise BenchError(f"{name}: {accepted} notices accepted but {stored} stored")
    if not result.ok <= entries <= result.ok + connections:
        raise BenchError(f"{name}: wrk counted {result.ok} accepted requests, the stream {entries}")
    if first is None or last[0] <= first[0]:
        first, last = (t0, acked0), (time.monotonic(), acked0 + entries)
    return Saturated(
        name,
        result,
        per_request,
        last[0] - first[0],
        (last[1] - first[1]) * per_request,
        accepted,
        stored,
        backlog,
        drained,
        cpu,
        rss,
    )


@dataclass
class Lag:
    target_per_s: float  # background load asked for (0: probes only)
    background_per_s: float  # background load achieved (accepted notices/s)
    lags_ms: list[float]

    def percentile(self, p: float) -> float:
        if not self.lags_ms:
            return math.nan
        s = sorted(self.lags_ms)
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


async def lag(
    stack: Stack,
    conn: asyncpg.Connection,
    url: str,
    requests_file: Path,
    target_per_s: float,
    seconds: int,
    connections: int,
    probe_interval: float,
    drain_timeout: float,
) -> Lag:
    """Probe notices every `probe_interval` s on top of a paced background load; each probe's lag is
    the time from its 201 to the moment its row is visible in PostgreSQL (which the query service reads
    without any cache)."""
    assert stack.project is not None
    await drain(stack, drain_timeout)
    task = None
    if target_per_s > 0:
        # Each connection waits `pause` ms before each request; at this load answers take ~2-4 ms.
        pause = max(1, round(connections * 1000 / target_per_s - 3))
        task = asyncio.create_task(
            wrk.run(url, requests_file, seconds, connections=connections, pause_ms=pause)
        )
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    since = time.time() - 60
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set() or len(seen) < len(sent):
            waiting = [i for i in sent if i not in seen]
            if waiting:
                rows = await conn.fetch(
                    "SELECT id::text FROM notices"
                    " WHERE id = ANY($1::uuid[]) AND received_at >= to_timestamp($2)",
                    waiting,
                    since,
                )
                now = time.monotonic()
                for r in rows:
                    seen.setdefault(r[0], now)
            if stop.is_set() and time.monotonic() > deadline:
                return
            await asyncio.sleep(0.01)

    deadline = time.monotonic() + seconds + drain_timeout
    poller = asyncio.create_task(poll())
    async with aiohttp.ClientSession() as http:
        t_end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < t_end:
            req = exceptioner(stack.project, 100_000 + k, 1)
            k += 1
            async with http.post(url + req.path, data=req.body, headers=req.headers) as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise BenchError(f"lag probe answered {resp.status}: {body}")
                sent[body["id"]] = time.monotonic()
            await asyncio.sleep(probe_interval)
    achieved = 0.0
    if task is not None:
        result = await task
        achieved = result.rate
    stop.set()
    deadline = time.monotonic() + drain_timeout
    await poller
    if len(seen) < len(sent):
        raise BenchError(f"{len(sent) - len(seen)} of {len(sent)} lag probes never became queryable")
    return Lag(target_per_s, achieved, [(seen[i] - sent[i]) * 1000 for i in sent])
