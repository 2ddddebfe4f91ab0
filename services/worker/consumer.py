"""The worker: read a batch, write it in one transaction, acknowledge; reclaim what dead peers left."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from services.worker import deploys, descriptions, environments, maintenance, pipeline, store
from services.worker.pipeline import Row, Rules
from shared import stream
from shared.db import Conn, ensure_partitions
from shared.fingerprint import grouping_versions
from shared.protocols.ingest import default_environment
from shared.scrub import fields_for
from shared.settings import Settings
from shared.stream import GROUP, ensure_group

logger = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
Refused = tuple[bytes, str]  # (entry id, reason)
Ahead = tuple[list[Entry], "pipeline.Batch"]  # a batch read and decoded, not yet written
# Decoding runs between two yields to the event loop for about this long: the batch being written
# waits on PostgreSQL in the same loop, and each of its round trips resumes only at a yield. With
# 250-entry slices (~27 ms) a write stalled at every step and the worker idled 22% of a drain
# (5,274/s, 0.43 of the write_batch ceiling); 2 ms slices: 0.93 busy, 0.56-0.58 (tests/bench/quick_workers.py).
# Once decoding got faster than the write, the slice was what PostgreSQL waited on: 2 ms -> 1 ms took
# a drain from 0.73-0.76 to 0.75-0.82 of the ceiling (mean 0.79); 0.5 ms did no better.
DECODE_SLICE_S = 0.001
MAX_DELIVERIES = 5  # an entry delivered this often without being acknowledged is poison
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class Consumer:
    """One consumer of the group. Tests drive `run_once()`; `run()` loops until `stop` is set."""

    def __init__(
        self, settings: Settings, redis: aioredis.Redis, pool: asyncpg.Pool, name: str | None = None
    ) -> None:
        self.s = settings
        self.redis = redis
        self.layout = stream.Layout(settings.stream_prefix, settings.stream_shards)
        self.cluster = stream.is_cluster(redis)
        # The pre-sharding key: on one server it costs only a name in the same XREADGROUP, so it is
        # always read; in a cluster (its own slot, its own call) only while it holds entries.
        self._legacy = not self.cluster
        self._active = len(self.layout.every)  # shards that returned entries in the last read
        self.pool = pool
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stored = 0
        self.dead = 0
        self._own_pending = True  # start by re-reading what this name may still hold
        # Notices per entry seen lately: a batch is read by entries but written by notices, and one
        # Exceptionless entry may hold thousands; reading batch_size / this keeps a batch's rows near
        # batch_size whatever the entries hold.
        self.per_entry = 1.0
        self.projects: dict[int, dict[str, Any]] = {}
        self._rules: dict[int, Rules] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stats: dict[str, float] = dict.fromkeys(
            ("batches", "batch_entries", "write_seconds", "write_seconds_max"), 0.0
        )

    async def setup(self) -> None:
        await stream.ensure_groups(self.redis, [shard.stream for shard in self.layout.shards])
        await self.check_legacy()
        async with self.pool.acquire() as conn:
            await ensure_partitions(conn)
        await self.load_projects()

    async def setup_groups(self) -> None:
        """Groups again after a NOGROUP (a Redis restarted without its data, a key deleted)."""
        await stream.ensure_groups(self.redis, [shard.stream for shard in self.layout.shards])
        await self.check_legacy()

    async def load_projects(self) -> None:
        """Per-project settings the worker applies (scrubbing); refreshed with the other chores."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, settings FROM projects")
        self.projects = {r["id"]: r["settings"] or {} for r in rows}
        self._rules = {}

    def rules(self, project_id: int) -> Rules:
        """Scrubbing and grouping patterns of a project, from its settings (cached until the next load)."""
        rules = self._rules.get(project_id)
        if rules is None:
            settings = self.projects.get(project_id, {})

            def patterns(name: str) -> tuple[str, ...]:
                value = settings.get(name)
                return tuple(str(v) for v in value) if isinstance(value, list) else ()

            limit = settings.get("rate_limit_per_minute")
            rules = Rules(
                fields_for(settings),
                patterns("app_patterns"),
                patterns("library_patterns"),
                isinstance(limit, int) and not isinstance(limit, bool) and limit > 0,
                default_environment(settings),
                *grouping_versions(settings),  # version, and the transition window (docs/grouping.md)
            )
            self._rules[project_id] = rules
        return rules

    async def check_legacy(self) -> None:
        """Ensure the legacy key's group where it exists (id 0: an old gateway's entries all drain);
        in a cluster, read it only while it holds entries."""
        key = self.layout.legacy.stream
        if self.cluster:
            self._legacy = bool(await self.redis.exists(key)) and await self._legacy_left(key) > 0
            if self._legacy:
                await ensure_group(self.redis, key)
        else:
            await ensure_group(self.redis, key)

    async def _legacy_left(self, key: str) -> int:
        (group,) = await stream.group_infos(self.redis, [key])
        if group is None or group.get("lag") is None:
            return int(await self.redis.xlen(key)) + int(group.get("pending") or 0 if group else 0)
        return int(group["lag"]) + int(group.get("pending") or 0)

    @property
    def shards(self) -> list[stream.Shard]:
        """The shards this worker reads: all of them (and the legacy key while it matters)."""
        return self.layout.every if self._legacy else self.layout.shards

    async def read(self, block_ms: int | None = None) -> list[Entry]:
        """The next batch from every shard: this consumer's own pending entries first (after a
        failure), else new ones. Entry ids carry their shard (`Shard.entry_id`)."""
        shards = self.shards
        count = max(1, int(self.s.batch_size / self.per_entry))
        # COUNT is per stream: spread the batch over the shards that had entries last time.
        per_key = max(1, count // max(1, min(self._active, len(shards))))
        entries: list[Entry] = []
        if self._own_pending:
            entries = await self._xread(shards, "0", per_key, None)
            self._own_pending = bool(entries)
        if not entries:
            entries = await self._xread(shards, ">", per_key, None if self.cluster else block_ms)
            if not entries and self.cluster and block_ms is not None:
                entries = await self._xread(shards, ">", per_key, block_ms)
        gone = [i for i, f in entries if not f]  # trimmed while pending
        if gone:
            await self._ack(gone)
        return [(i, f) for i, f in entries if f]

    async def _xread(
        self, shards: list[stream.Shard], since: str, count: int, block: int | None
    ) -> list[Entry]:
        """One XREADGROUP naming every shard on one server; in a cluster one per shard (each its own
        slot), concurrently."""
        if not self.cluster:
            resp: Any = await self.redis.xreadgroup(
                GROUP, self.name, {s.stream: since for s in shards}, count=count, block=block
            )
            replies = [resp or []]
        else:
            replies = await asyncio.gather(
                *(
                    self.redis.xreadgroup(GROUP, self.name, {s.stream: since}, count=count, block=block)
                    for s in shards
                )
            )
        by_key = {s.stream.encode(): s for s in shards}
        out: list[Entry] = []
        active = 0
        for resp in replies:
            for key, items in resp or []:
                shard = by_key[key if isinstance(key, bytes) else key.encode()]
                if items:
                    active += 1
                out += [(shard.entry_id(i), f) for i, f in items]
        if since == ">" and (out or block is not None):
            self._active = max(1, active)
        return out

    async def _ack(self, entry_ids: list[bytes]) -> None:
        """XACK entries of any shards: one round trip (one per node in a cluster)."""
        by_shard = self.layout.by_shard(entry_ids)
        if len(by_shard) == 1:
            ((shard, ids),) = by_shard.items()
            await self.redis.xack(shard.stream, GROUP, *ids)
            return
        pipe = self.redis.pipeline(transaction=False)
        for shard, ids in by_shard.items():
            pipe.xack(shard.stream, GROUP, *ids)
        await pipe.execute()

    async def decode(self, entries: list[Entry]) -> pipeline.Batch:
        """The pure step in slices, yielding between them so a write in flight keeps moving."""
        batch = pipeline.Batch()
        k, step = 0, 8  # entries per slice, fitted to DECODE_SLICE_S as they go (one may hold thousands)
        while k < len(entries):
            started = time.perf_counter()
            batch.extend(pipeline.process(entries[k : k + step], self.rules))
            k += step
            took = time.perf_counter() - started
            step = max(1, min(1000, int(step * DECODE_SLICE_S / max(took, 1e-6))))
            await asyncio.sleep(0)
        self._learn(entries, batch)
        return batch

    def _learn(self, entries: list[Entry], batch: pipeline.Batch) -> None:
        if entries:
            seen = max(1.0, len(batch.rows) / len(entries))
            self.per_entry = seen if seen > self.per_entry else 0.7 * self.per_entry + 0.3 * seen

    async def run_once(self, block_ms: int | None = None) -> int:
        """Read one batch (new entries first, else reclaimed ones), store it, ack it. Returns its size."""
        entries = await self.read(block_ms)
        if entries:
            try:
                await self.process(entries)
            except BaseException:
                self._own_pending = True  # retry these before taking new ones
                raise
        return len(entries)

    async def process(self, entries: list[Entry]) -> None:
        """Decode, write, dead-letter what cannot be stored, then XACK everything in one call."""
        batch = pipeline.process(entries, self.rules)
        self._learn(entries, batch)
        await self.commit(entries, batch)

    async def commit(self, entries: list[Entry], batch: pipeline.Batch) -> None:
        """Write a decoded batch in one transaction, dead-letter what was refused, XACK it all."""
        dead = list(batch.dead)
        await environments.adopt(self.pool, batch)  # rows given the default join environment-less errors
        if batch.deploys:  # Airbrake deploys the gateway queued (it never writes PostgreSQL itself)
            dead += await deploys.write(self.pool, batch.deploys)
        size = self.s.batch_size
        for k in range(0, len(batch.rows), size):  # one transaction per batch_size rows
            dead += await self._write(batch.rows[k : k + size], batch.row_entries[k : k + size])
        if (
            batch.rows or batch.descriptions
        ):  # after the notices: a description meets its notice in either order
            refused = await descriptions.apply(self.pool, batch.descriptions, batch.rows, dict(entries))
            dead += [(entry_id, reason) for entry_id, _, reason in refused]
        if dead:
            await self._dead_letter(dead, batch.decoded)
        if batch.uncounted:
            await self._count(batch.uncounted)
        await self._ack([eid for eid, _ in entries])

    async def _count(self, uncounted: dict[tuple[int, int], int]) -> None:
        """Count the notices of multi-notice bodies against their project's limit (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for (project_id, ms), n in uncounted.items():
            key = self.layout.for_project(project_id).place(
                stream.rate_key(self.s.stream_prefix, project_id, ms)
            )
            pipe.incrby(key, n)
            pipe.pexpire(key, stream.RATE_WINDOW_MS, nx=True)
        await pipe.execute()

    async def run_pipelined(self, block_ms: int, ahead: Ahead | None) -> Ahead | None:
        """One step of the loop: commit a decoded batch while the next is read and decoded.

        Batch N's write waits on PostgreSQL (another process, another core) while this process reads
        and decodes batch N+1; writes stay one at a time, in order, each acknowledged after its commit.
        Returns the batch decoded ahead (None when the stream had nothing more).
        """
        try:
            if ahead is None:
                entries = await self.read(block_ms)
                if not entries:
                    return None
                ahead = (entries, await self.decode(entries))
            writing = asyncio.create_task(self.commit(*ahead))
            nxt: Ahead | None = None
            try:
                more = await self.read(None)
                if more:
                    nxt = (more, await self.decode(more))
            finally:
                await writing
            return nxt
        except BaseException:
            self._own_pending = True  # this batch and the one read ahead are ours: re-read both
            raise

    async def _write(self, rows: list[Row], row_entries: list[bytes]) -> list[Refused]:
        """Write all rows; on a data error, split the batch to isolate the rows PostgreSQL refuses."""
        try:
            started = time.perf_counter()
            async with self.pool.acquire() as conn:
                self.stored += await self._write_retrying_partitions(conn, rows)
            took = time.perf_counter() - started
            self.stats["batches"] += 1
            self.stats["batch_entries"] += len(rows)
            self.stats["write_seconds"] += took
            self.stats["write_seconds_max"] = max(self.stats["write_seconds_max"], took)
            return []
        except TRANSIENT:
            raise
        except asyncpg.PostgresError as e:
            if len(rows) == 1:
                logger.warning("entry refused by database id=%s error=%r", row_entries[0], e)
                return [(row_entries[0], f"{type(e).__name__}: {e}")]
        mid = len(rows) // 2
        return await self._write(rows[:mid], row_entries[:mid]) + await self._write(
            rows[mid:], row_entries[mid:]
        )

    async def _write_retrying_partitions(self, conn: Conn, rows: list[Row]) -> int:
        try:
            return await store.write_batch(conn, rows)
        except asyncpg.CheckViolationError as e:
            if "no partition" not in str(e):
                raise
            await ensure_partitions(conn, back=3, ahead=7)
            return await store.write_batch(conn, rows)

    async def _dead_letter(self, dead: list[Refused], decoded: dict[bytes, stream.Entry]) -> None:
        """Each refused entry's facts and scrubbed body to the dead-letter stream (GET /v1/dead-letters)."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, reason in dict(dead).items():  # an entry with several refused rows: one letter
            logger.error("dead-lettered id=%s reason=%s", entry_id, reason)
            letter = pipeline.dead_letter(entry_id, decoded.get(entry_id), reason, self.name, self.rules)
            pipe.xadd(self.layout.split(entry_id)[0].dead, letter.fields())  # type: ignore[arg-type]
        await pipe.execute()
        self.dead += len(dict(dead))

    async def reclaim(self) -> int:
        """Take over entries a dead or stuck consumer left pending, shard by shard; dead-letter repeat
        offenders. One XPENDING round trip for all shards, then XCLAIM where something is idle."""
        shards = self.shards
        pipe = self.redis.pipeline(transaction=False)
        for shard in shards:
            pipe.xpending_range(
                shard.stream, GROUP, min="-", max="+", count=self.s.batch_size, idle=self.s.claim_idle_ms
            )
        total = 0
        for shard, pending in zip(shards, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(pending, Exception):
                if isinstance(pending, ResponseError) and "NOGROUP" in str(pending):
                    continue  # the legacy key is gone, or a group not made yet
                raise pending
            if pending:
                total += await self._reclaim_shard(shard, pending)
        return total

    async def _reclaim_shard(self, shard: stream.Shard, pending: list[dict[str, Any]]) -> int:
        key = shard.stream
        ids = [p["message_id"] for p in pending]
        poison = {shard.entry_id(p["message_id"]) for p in pending if p["times_delivered"] >= MAX_DELIVERIES}
        claimed: Any = await self.redis.xclaim(key, GROUP, self.name, self.s.claim_idle_ms, ids)
        live: list[Entry] = [(shard.entry_id(i), f) for i, f in claimed if f is not None]
        gone = [i for i, f in claimed if f is None]
        bad = [(i, f) for i, f in live if i in poison]
        if bad:
            reason = f"delivered {MAX_DELIVERIES}+ times without acknowledgement"
            await self._dead_letter([(i, reason) for i, _ in bad], _decodable(bad))
            await self._ack([i for i, _ in bad])
        ok = [(i, f) for i, f in live if i not in poison]
        if ok:
            logger.info("reclaimed entries=%d shard=%s consumer=%s", len(ok), shard.name, self.name)
            await self.process(ok)
        if gone:
            await self.redis.xack(key, GROUP, *gone)
        return len(claimed)

    async def trim(self) -> None:
        """Drop acknowledged entries of every shard: everything older than its oldest pending or
        undelivered one (two round trips for all shards)."""
        shards = self.shards
        keys = [shard.stream for shard in shards]
        groups = await stream.group_infos(self.redis, keys)
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.xpending(key, GROUP)
        summaries = await pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        for key, group, summary in zip(keys, groups, summaries, strict=True):
            if group is None or isinstance(summary, Exception):
                continue
            last = group["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            oldest = summary.get("min") if summary and summary.get("pending") else None
            if oldest is not None:
                floor = oldest.decode() if isinstance(oldest, bytes) else oldest
            else:
                ms, _, seq = last.partition("-")
                floor = f"{ms}-{int(seq or 0) + 1}"
            pipe.xtrim(key, minid=floor, approximate=False)
        await pipe.execute()

    async def publish_stats(self) -> None:
        """This worker's counters, for the gateway's /metrics (expire if the worker dies)."""
        key = stream.workers_key(self.s.stream_prefix, self.name)
        fields = {**self.stats, "stored": self.stored, "dead": self.dead}
        await self.redis.hset(key, mapping={k: str(v) for k, v in fields.items()})  # type: ignore[misc]
        await self.redis.expire(key, 120)

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        """Retention and partitions, off the ingest path: a slow pass never stalls batches."""
        delay = min(60.0, self.s.maintenance_interval)  # partitions were ensured at start-up
        while True:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
            delay = self.s.maintenance_interval
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute("SET lock_timeout = '5s'")
                    try:
                        await maintenance.run(conn)
                    finally:
                        await conn.execute("RESET lock_timeout")
            except (*TRANSIENT, asyncpg.PostgresError) as e:
                logger.warning("maintenance pass failed error=%r", e)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop`: batches, a reclaim and trim every few seconds, back-off on outages."""
        try:
            await self._run(stop)
        finally:
            for task in self._tasks:
                task.cancel()

    async def _run(self, stop: asyncio.Event) -> None:
        await self.setup()
        next_chores = 0.0
        self._tasks.append(asyncio.create_task(self._maintenance_loop(stop)))
        backoff = 0.5
        ahead: Ahead | None = None
        while not stop.is_set():
            try:
                if time.monotonic() >= next_chores:
                    await self.load_projects()
                    if self.cluster:
                        await self.check_legacy()
                    await self.reclaim()
                    await self.trim()
                    await self.publish_stats()
                    next_chores = time.monotonic() + max(1.0, self.s.claim_idle_ms / 2000)
                ahead = await self.run_pipelined(self.s.block_ms, ahead)
                backoff = 0.5
            except (*TRANSIENT, RedisError, RedisClusterException) as e:
                ahead = None
                if isinstance(e, ResponseError) and "NOGROUP" in str(e):
                    await self.setup_groups()
                    continue
                logger.warning("worker outage, retrying in %.1fs error=%r", backoff, e)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 15.0)
        if ahead is not None:  # stopping: the batch read ahead is written, not left pending
            await self.commit(*ahead)


def _decodable(entries: list[Entry]) -> dict[bytes, stream.Entry]:
    """The entries that decode, by id (for what a dead letter keeps of them)."""
    out: dict[bytes, stream.Entry] = {}
    for entry_id, fields in entries:
        try:
            out[entry_id] = stream.decode(fields)
        except stream.CodecError:
            pass
    return out
