"""The publisher's own connection (shared.stream.Publisher._send_one) against the real Redis: a server
that forgot the script, and a connection the server closed between flushes, cost no request."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from shared import stream
from shared.settings import Settings


async def test_publish_reloads_a_flushed_script_and_survives_a_closed_connection(
    redis: aioredis.Redis, settings: Settings
) -> None:
    name = f"pub-{uuid.uuid4().hex[:8]}"
    r = stream.connect(settings.redis_url, client_name=name)
    layout = stream.Layout(name, 4)
    shard = layout.for_project(7)
    publisher = stream.Publisher(r, layout, 1 << 30)
    runner = asyncio.create_task(publisher.run())
    try:
        ids = [sid for i in range(3) for sid in await publisher.publish([{b"m": b"%d" % i}], project_id=7)]
        assert [sid for sid, _ in await redis.xrange(shard.stream)] == ids
        await redis.script_flush()  # what a restarted server without persistence looks like
        assert await publisher.publish([{b"m": b"after flush"}], project_id=7)
        ours = [c["id"] for c in await redis.client_list() if c.get("name") == name]
        assert ours  # the publisher's connection, idle between flushes
        for client_id in ours:
            await redis.client_kill_filter(_id=client_id)  # as an idle timeout or a proxy would
        assert await publisher.publish([{b"m": b"after close"}], project_id=7)
        assert [f[b"m"] for _, f in await redis.xrange(shard.stream)] == [
            b"0",
            b"1",
            b"2",
            b"after flush",
            b"after close",
        ]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await publisher.aclose()
        await r.aclose()
        await redis.delete(*[s.stream for s in layout.shards])
