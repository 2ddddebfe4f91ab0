"""The fuzzers' end-to-end property: whatever the gateway acknowledged, a worker stores."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.worker.consumer import Consumer
from shared.settings import Settings
from tests.conftest import drain


async def assert_all_stored(consumer: Consumer, redis: aioredis.Redis, settings: Settings) -> None:
    """Drain the stream; nothing of it may land in the dead-letter stream."""
    before = await redis.xlen(settings.dead_stream)
    await drain(consumer)
    added = await redis.xlen(settings.dead_stream) - before
    assert added == 0, await redis.xrevrange(settings.dead_stream, count=min(added, 5))
