"""The fuzzers' end-to-end property: whatever the gateway acknowledged, a worker stores."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.worker.consumer import Consumer
from shared.settings import Settings
from tests.conftest import drain
from tests.streams import dead_letters, layout


async def assert_all_stored(consumer: Consumer, redis: aioredis.Redis, settings: Settings) -> None:
    """Drain the stream; nothing of it may land in the dead-letter stream."""
    before = await dead_letters(redis, settings)
    await drain(consumer)
    added = await dead_letters(redis, settings) - before
    assert added == 0, [await redis.xrevrange(s.dead, count=5) for s in layout(settings).every]
