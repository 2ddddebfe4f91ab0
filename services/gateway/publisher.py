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

# KEYS[1]: the stream. ARGV: per entry its field count n, then its n field/value pairs.
# Returns the new entry ids joined by single spaces.
_XADD_ALL = """
local ids, i, k, argc = {}, 1, 0, #ARGV
while i <= argc do
    local n = tonumber(ARGV[i])
    k = k + 1
    ids[k] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + 2 * n))
    i = i + 2 * n + 1
end
return table.concat(ids, ' ')
"""


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
        self._pending: list[tuple[list[dict[bytes, bytes]], asyncio.Future[list[bytes]]]] = []
        self._wake = asyncio.Event()
        self._xadd_all = redis.register_script(_XADD_ALL)
        self.backlog = 0
        self.published = 0

    @property
    def overloaded(self) -> bool:
        return self.backlog >= self._limit

    async def publish(self, entries: list[dict[bytes, bytes]]) -> list[bytes]:
        """Queue entries; returns their stream ids once Redis has them. 503 when it cannot."""
        if self.overloaded:
            raise unavailable(f"Backlog of {self.backlog} notices is over the limit; retry later")
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[list[dict[bytes, bytes]], asyncio.Future[list[bytes]]]]) -> None:
        args: list[bytes | int] = []
        calls: list[list[bytes | int]] = []
        count = 0
        for entries, _ in batch:
            for fields in entries:
                args.append(len(fields))
                for name, value in fields.items():
                    args += (name, value)
                count += 1
                if count % MAX_PER_CALL == 0:
                    calls.append(args)
                    args = []
        if args:
            calls.append(args)
        try:
            ids: list[bytes] = []
            for call in calls:
                reply = await self._xadd_all(keys=[self._stream], args=call)
                ids += reply.split(b" ") if isinstance(reply, bytes) else [i.encode() for i in reply.split()]
        except (RedisError, OSError) as e:
            logger.warning("xadd failed entries=%d error=%r", sum(len(e_) for e_, _ in batch), e)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(unavailable("Queue unavailable; retry later"))
            return
        pos = 0
        for entries, fut in batch:
            if not fut.done():
                fut.set_result(ids[pos : pos + len(entries)])
            pos += len(entries)
        self.published += pos
        self.backlog += pos

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
