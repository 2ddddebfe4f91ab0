"""Queueing accepted notices: XADDs coalesced across concurrent requests, and load shedding.

Requests hand their entries to one flusher task, which sends everything that piled up while the
previous round trip was in flight as one script call that XADDs them all. A request is answered
only after Redis acknowledged its XADDs, so a 2xx always means "queued".

One EVALSHA instead of a pipeline of XADDs: redis-py spends about 20 us of Python per pipelined
command (packing, then parsing each reply), which at a few thousand notices per second was a
tenth of the gateway's CPU; the script's single reply (the ids joined by spaces) costs almost
nothing to parse.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from shared.web import ApiError

logger = logging.getLogger(__name__)

GROUP = "workers"
RETRY_AFTER = "5"
MAX_PER_CALL = 2000  # entries per script call: bounds how long one call holds the Redis server

# KEYS[1]: the stream. ARGV[1]: seconds a once-key lives. Then per entry: its once-key ('' for
# none), its field count n, and its n field/value pairs. An entry whose once-key already exists is
# not added ('-' in its place): claim and XADD happen together, so a failed call claims nothing.
# Returns the new entry ids joined by single spaces. (Once-keys are not in KEYS: fine on one
# Redis node, which is what the gateway talks to; a cluster would need them in the stream's slot.)
_XADD_ALL = """
local ttl, ids, i, k, argc = ARGV[1], {}, 2, 0, #ARGV
while i <= argc do
    local once, n = ARGV[i], tonumber(ARGV[i + 1])
    k = k + 1
    if once == '' or redis.call('SET', once, '1', 'NX', 'EX', ttl) then
        ids[k] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + 2 * n))
    else
        ids[k] = '-'
    end
    i = i + 2 + 2 * n
end
return table.concat(ids, ' ')
"""
DUPLICATE = b"-"
ONCE_TTL = 3600  # seconds a once-key is remembered (Sentry event ids: SDK retries come within minutes)


Pending = tuple[list[dict[bytes, bytes]], list[str], "asyncio.Future[list[bytes]]"]


def unavailable(reason: str) -> ApiError:
    return ApiError(503, reason, headers={"Retry-After": RETRY_AFTER})


async def ensure_group(redis: aioredis.Redis, stream: str) -> None:
    """Create the consumer group (and the stream) so no entry is ever without a reader."""
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


class Publisher:
    """Coalesces XADDs and tracks the backlog the workers have not written yet."""

    def __init__(self, redis: aioredis.Redis, stream: str, backlog_limit: int) -> None:
        self._redis = redis
        self._stream = stream
        self._limit = backlog_limit
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._xadd_all = redis.register_script(_XADD_ALL)
        self.backlog = 0
        self.published = 0

    @property
    def overloaded(self) -> bool:
        return self.backlog >= self._limit

    async def publish(self, entries: list[dict[bytes, bytes]], once: list[str] | None = None) -> list[bytes]:
        """Queue entries; returns their stream ids once Redis has them (`DUPLICATE` for an entry whose
        once-key was seen in the last hour, which is then not queued). 503 when it cannot."""
        if self.overloaded:
            raise unavailable(f"Backlog of {self.backlog} notices is over the limit; retry later")
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, once or [""] * len(entries), fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[Pending]) -> None:
        args: list[bytes | int | str] = [ONCE_TTL]
        calls: list[list[bytes | int | str]] = []
        count = 0
        for entries, once, _ in batch:
            for fields, key in zip(entries, once, strict=True):
                args += (key, len(fields))
                for name, value in fields.items():
                    args += (name, value)
                count += 1
                if count % MAX_PER_CALL == 0:
                    calls.append(args)
                    args = [ONCE_TTL]
        if len(args) > 1:
            calls.append(args)
        try:
            ids: list[bytes] = []
            for call in calls:
                reply = await self._xadd_all(keys=[self._stream], args=call)
                ids += reply.split(b" ") if isinstance(reply, bytes) else [i.encode() for i in reply.split()]
        except (RedisError, OSError) as e:
            logger.warning("xadd failed entries=%d error=%r", count, e)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(unavailable("Queue unavailable; retry later"))
            return
        pos = 0
        for entries, _, fut in batch:
            if not fut.done():
                fut.set_result(ids[pos : pos + len(entries)])
            pos += len(entries)
        added = len(ids) - ids.count(DUPLICATE)
        self.published += added
        self.backlog += added

    async def watch_backlog(self, interval: float = 0.5) -> None:
        """Keep `backlog` = entries undelivered + delivered but unacknowledged."""
        while True:
            try:
                groups = await self._redis.xinfo_groups(self._stream)
                group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
                if group is None:
                    self.backlog = await self._redis.xlen(self._stream)
                else:
                    lag = group.get("lag")
                    if lag is None:  # Redis < 7 or an inconsistent lag: count conservatively
                        lag = await self._redis.xlen(self._stream)
                    self.backlog = int(lag) + int(group.get("pending") or 0)
            except ResponseError:
                self.backlog = 0  # no stream yet: nothing queued
            except (RedisError, OSError) as e:
                logger.debug("backlog check failed error=%r", e)
            await asyncio.sleep(interval)
