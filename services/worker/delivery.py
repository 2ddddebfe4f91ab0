"""The webhook delivery loop: a task in every worker process (issue 19).

Each pass claims due outbox rows (webhook_deliveries) with FOR UPDATE SKIP LOCKED, a few per hook, and
leases them: status `sending`, attempts + 1, next_attempt_at = the lease's end, committed at once, so
no transaction stays open across an HTTP request. Each is POSTed, signed, under its stable delivery
id, then marked delivered, or put back with exponential back-off and jitter, or failed after
FAULTLINE_WEBHOOK_ATTEMPTS. A process killed between sending and marking leaves the row `sending`;
when its lease runs out any worker claims it again and sends the same bytes under the same id.

Per hook and per worker process: at most FAULTLINE_WEBHOOK_CONCURRENCY requests in flight and
FAULTLINE_WEBHOOK_RATE started per second, so a burst of new errors queues in the table instead of
flooding the receiver; ingest never waits for any of this (the outbox row is one statement per batch).

Why in the workers rather than a `faultline notifier` service: nothing more to deploy, supervise,
probe or scale (deliveries scale with the workers, and SKIP LOCKED plus the lease make any number of
them safe together); the worker already holds what a payload needs (the database, the settings).
The cost: the per-hook limits are per process (N workers, N times the rate), and sending shares a
process with ingest, which is why it yields to a backlog (Backlog below).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult

from services.worker import hookbody
from shared import db, webhooks
from shared.settings import Settings

logger = logging.getLogger(__name__)

POLL = 0.5  # seconds between claims when nothing finished
MAX_BACKOFF = 3600.0
CLAIM_LIMIT = 200  # rows per claim, over all hooks
RETENTION_DAYS = 7  # delivered and failed rows kept this long
PRUNE_EVERY = 3600.0
USER_AGENT = "Faultline-Webhooks/1"
# Ingest first: while this process's consumer drains a backlog (Backlog), its delivery task claims
# only every BUSY_CLAIM_EVERY seconds; deliveries catch up after. Measured (tests/bench/hooks.py):
# claiming freely during a burst cost ingest ~20-30 % of its rate on a 2-core machine.
BUSY_CLAIM_EVERY = 15.0
TRANSIENT = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

CLAIM = """
WITH due AS (
    SELECT h.id AS hook_id, x.cause
    FROM webhooks h
    CROSS JOIN LATERAL (
        SELECT d.cause FROM webhook_deliveries d
        WHERE d.hook_id = h.id AND d.status IN ('pending', 'sending') AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ) x
    WHERE h.enabled AND h.id <> ALL ($2::bigint[])
    LIMIT $3
)
UPDATE webhook_deliveries d
SET status = 'sending', attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $4)
FROM due, webhooks h
WHERE (d.hook_id, d.cause) = (due.hook_id, due.cause) AND h.id = d.hook_id
RETURNING d.id, d.hook_id, d.cause, d.project_id, d.event, d.error_id, d.notice_id, d.deploy_id, d.body,
          d.attempts, d.created_at, h.url, h.secret, h.format
"""

DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', last_status = $4, last_error = NULL, delivered_at = now()
WHERE hook_id = $1 AND cause = $2 AND attempts = $3
"""
RETRY = """
UPDATE webhook_deliveries
SET status = 'pending', last_status = $4, last_error = $5, next_attempt_at = now() + make_interval(secs => $6)
WHERE hook_id = $1 AND cause = $2 AND attempts = $3
"""
FAILED = """
UPDATE webhook_deliveries SET status = 'failed', last_status = $4, last_error = $5
WHERE hook_id = $1 AND cause = $2 AND attempts = $3
"""


class RefusedAddress(OSError):
    """The receiver's host is private, loopback or otherwise not public (FAULTLINE_WEBHOOK_ALLOW_PRIVATE)."""


class PublicResolver(AbstractResolver):
    """Resolves as aiohttp does, but never to an address that is not public: a hook's name cannot be
    re-pointed at an internal service after its URL was checked."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if webhooks.public_address(r["host"])]
        if not public:
            raise RefusedAddress(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, half of it jittered."""
    delay = min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def headers(row: Any, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Faultline-Delivery": str(row["id"]),
        "Faultline-Event": row["event"],
        "Faultline-Attempt": str(row["attempts"]),
        "Faultline-Timestamp": str(ts),
        "Faultline-Signature": webhooks.sign(row["secret"], ts, body),
    }


class Backlog:
    """Whether this process's consumer is draining a backlog: its batches since the last look held at
    least min(500, FAULTLINE_BATCH_SIZE / 2) rows on average, or its writes took a quarter of the time
    (a trickle makes batches of a few rows, written in milliseconds). From its stats; no I/O."""

    def __init__(self, stats: dict[str, float], batch_size: int) -> None:
        self.stats = stats
        self.full = max(1.0, min(500.0, batch_size / 2))
        self._batches = stats.get("batches", 0.0)
        self._entries = stats.get("batch_entries", 0.0)
        self._written = stats.get("write_seconds", 0.0)
        self._seen = time.monotonic()
        self._busy = False

    def __call__(self) -> bool:
        now = time.monotonic()
        batches, entries = self.stats.get("batches", 0.0), self.stats.get("batch_entries", 0.0)
        if batches > self._batches:
            written = self.stats.get("write_seconds", 0.0)
            duty = (written - self._written) / max(1e-3, now - self._seen)
            self._busy = (entries - self._entries) / (batches - self._batches) >= self.full or duty >= 0.25
            self._batches, self._entries, self._written, self._seen = batches, entries, written, now
        elif now - self._seen > 2.0:  # no batch written for a while: nothing to drain
            self._busy = False
        return self._busy


class Deliverer:
    """Claims, sends and marks deliveries. Tests call `run_once()`; `run()` loops until `stop`."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        busy: Callable[[], bool] | None = None,
        counters: dict[str, float] | None = None,
    ) -> None:
        self.s = settings
        # Attempts by outcome, counted into the consumer's stats when given: published with them to
        # {prefix}:workers:<name> (fields webhook_delivered, webhook_retried, webhook_failed).
        self.counters = counters if counters is not None else {}
        self.busy = busy
        self._claimed_at = 0.0
        self._draining = False
        self.pool = pool
        self.session = session
        self.inflight: dict[int, int] = {}
        self._next_start: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.stats = {"delivered": 0, "retried": 0, "failed": 0}

    @property
    def lease(self) -> float:
        """How long a claimed row is ours: the pacing wait, the request, and a margin."""
        return self.s.webhook_timeout + self.s.webhook_concurrency / self.s.webhook_rate + 5.0

    async def claim(self) -> list[Any]:
        busy = [hook for hook, n in self.inflight.items() if n > 0]
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(CLAIM, self.s.webhook_concurrency, busy, CLAIM_LIMIT, self.lease))

    async def run_once(self) -> int:
        """Claim what is due and send it all; returns how many were attempted."""
        rows = await self.claim()
        await asyncio.gather(*(self.send(row) for row in rows))
        return len(rows)

    async def send(self, row: Any) -> None:
        """One attempt: the body (made once), paced per hook, POSTed, then the row marked."""
        hook = row["hook_id"]
        self.inflight[hook] = self.inflight.get(hook, 0) + 1
        try:
            body = row["body"]
            if body is None:
                body = await self._make_body(row)
                if body is None:  # the row is gone (its hook was deleted meanwhile)
                    return
            await self._pace(hook)
            status, problem = await self._post(row, body)
            await self._mark(row, status, problem)
        finally:
            self.inflight[hook] -= 1
            if not self.inflight[hook]:
                del self.inflight[hook]
            self._wake.set()

    async def _make_body(self, row: Any) -> bytes | None:
        async with self.pool.acquire() as conn:
            data = await hookbody.payload(conn, row, self.s.public_url)
            made = hookbody.encode(data, row["format"])
            # coalesce: a body another worker already made (a lease that ran out) wins, so every
            # attempt of this delivery sends the same bytes.
            body: bytes | None = await conn.fetchval(
                "UPDATE webhook_deliveries SET body = coalesce(body, $3)"
                " WHERE hook_id = $1 AND cause = $2 RETURNING body",
                row["hook_id"],
                row["cause"],
                made,
            )
        return body

    async def _pace(self, hook: int) -> None:
        now = time.monotonic()
        start = max(now, self._next_start.get(hook, 0.0))
        self._next_start[hook] = start + 1.0 / self.s.webhook_rate
        if start > now:
            await asyncio.sleep(start - now)

    async def _post(self, row: Any, body: bytes) -> tuple[int | None, str | None]:
        """(HTTP status, what went wrong) of one request; redirects are not followed."""
        url = row["url"]
        if not self.s.webhook_allow_private and _private_literal(url):
            return None, "refused: not a public address"
        try:
            async with self.session.post(
                url,
                data=body,
                headers=headers(row, body),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.s.webhook_timeout),
            ) as resp:
                await resp.content.read(4096)  # enough to finish a small answer; the rest is dropped
                return resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except TimeoutError:
            return None, f"timeout after {self.s.webhook_timeout:g}s"
        except RefusedAddress as e:
            return None, f"refused: {e}"
        except (aiohttp.ClientError, OSError) as e:
            return None, f"{type(e).__name__}: {e}"[:500]

    async def _mark(self, row: Any, status: int | None, problem: str | None) -> None:
        attempts, key = row["attempts"], (row["hook_id"], row["cause"])
        async with self.pool.acquire() as conn:
            if problem is None:
                await conn.execute(DELIVERED, *key, attempts, status)
                outcome = "delivered"
            elif attempts >= self.s.webhook_attempts:
                await conn.execute(FAILED, *key, attempts, status, problem)
                outcome = "failed"
            else:
                delay = backoff(attempts, self.s.webhook_backoff)
                await conn.execute(RETRY, *key, attempts, status, problem, delay)
                outcome = "retried"
        self.stats[outcome] += 1
        self.counters[f"webhook_{outcome}"] = self.counters.get(f"webhook_{outcome}", 0.0) + 1
        log = logger.info if outcome == "delivered" else logger.warning
        log(
            "webhook %s delivery=%s hook=%s event=%s attempt=%d status=%s problem=%s",
            outcome,
            row["id"],
            row["hook_id"],
            row["event"],
            attempts,
            status,
            problem,
        )

    async def prune(self) -> int:
        """Forget delivered and failed rows past the retention (a bounded batch per pass)."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM webhook_deliveries WHERE (hook_id, cause) IN (SELECT hook_id, cause"
                " FROM webhook_deliveries WHERE status IN ('delivered', 'failed')"
                " AND created_at < now() - make_interval(days => $1) LIMIT 10000)",
                RETENTION_DAYS,
            )
        return int(status.rsplit(" ", 1)[1])

    def _may_claim(self) -> bool:
        if self.busy is None or not self.busy():
            self._draining = False
            return True
        now = time.monotonic()
        if not self._draining:  # a backlog began: the first claim under it waits too
            self._draining, self._claimed_at = True, now
        return now >= self._claimed_at + BUSY_CLAIM_EVERY

    def _start(self, row: Any) -> None:
        task = asyncio.create_task(self.send(row))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("webhook attempt failed error=%r", task.exception())

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until `stop`; then give what is in flight the receiver timeout to finish."""
        backoff_s = 0.5
        next_prune = time.monotonic() + 60.0
        while not stop.is_set():
            self._wake.clear()
            try:
                if self._may_claim():
                    self._claimed_at = time.monotonic()
                    for row in await self.claim():
                        self._start(row)
                if time.monotonic() >= next_prune:
                    await self.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
                backoff_s = 0.5
                wait = POLL
            except TRANSIENT as e:
                logger.warning("webhook claim failed, retrying in %.1fs error=%r", backoff_s, e)
                wait, backoff_s = backoff_s, min(backoff_s * 2, 15.0)
            except Exception:  # a bug here must not stop deliveries for good, nor the worker's ingest
                logger.exception("webhook pass failed, retrying in %.1fs", backoff_s)
                wait, backoff_s = backoff_s, min(backoff_s * 2, 15.0)
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if self._tasks:  # unmarked ones are re-sent after their lease, under the same delivery id
            _, late = await asyncio.wait(set(self._tasks), timeout=self.s.webhook_timeout)
            for task in late:
                task.cancel()


def _private_literal(url: str) -> bool:
    """An IP-literal host that is not public (names are checked by PublicResolver when resolved)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not webhooks.public_address(host)


def connector(settings: Settings) -> aiohttp.TCPConnector:
    resolver = None if settings.webhook_allow_private else PublicResolver()
    return aiohttp.TCPConnector(limit=100, resolver=resolver, ttl_dns_cache=60)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    busy: Callable[[], bool] | None = None,
    counters: dict[str, float] | None = None,
) -> None:
    """The worker process's delivery task: its own small pool (never competing with batch writes for
    a connection) and HTTP session; `busy` is the consumer's Backlog, `counters` its stats."""
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with aiohttp.ClientSession(connector=connector(settings)) as session:
            await Deliverer(settings, pool, session, busy, counters).run(stop)
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.close(), 5)
