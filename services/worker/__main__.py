"""`faultline worker`: one consumer process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from services.worker import delivery, health, store
from services.worker.consumer import Consumer
from shared import db, stream
from shared.runtime import calm_gc, load_settings, resolve_urls, setup_logging, use_uvloop

logger = logging.getLogger(__name__)


async def _init(conn: object) -> None:
    await db.init_connection(conn)  # type: ignore[arg-type]
    await store.init_connection(conn)  # type: ignore[arg-type]


async def serve() -> None:
    settings = resolve_urls(load_settings())
    assert settings.redis_url and settings.database_url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = stream.connect(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    # Batches and maintenance take one connection each; the heartbeat's ping must not wait behind them.
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=3, init=_init)
    consumer = Consumer(settings, redis, pool)
    logger.info(
        "worker started consumer=%s shards=%d cluster=%s",
        consumer.name,
        settings.stream_shards,
        stream.is_cluster(redis),
    )
    task = asyncio.create_task(consumer.run(stop))
    # Webhooks: beside ingest, and yielding to it while it drains a backlog.
    hooks = asyncio.create_task(
        delivery.run(settings, stop, delivery.Backlog(consumer.stats, settings.batch_size), consumer.stats)
    )
    stopping = asyncio.create_task(stop.wait())
    beat = None
    if settings.health_file is not None:
        beat = asyncio.create_task(
            health.heartbeat(
                # Shard 0 is named in every read: its group sees this consumer's activity.
                settings.health_file,
                consumer.name,
                consumer.layout.shards[0].stream,
                redis,
                pool,
                task,
                stop,
            )
        )
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a crash: raise it, exit non-zero, and let the supervisor restart us
        # Stop reading; let the batch in flight finish and be acknowledged within the grace period.
        try:
            await asyncio.wait_for(asyncio.shield(task), settings.shutdown_grace)
        except TimeoutError:
            logger.warning("worker did not finish its batch in %.0fs; cancelling", settings.shutdown_grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception):  # it stops on `stop`; a crash of it must not hide the consumer's
            await asyncio.wait_for(hooks, settings.webhook_timeout + 5)
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            assert settings.health_file is not None
            settings.health_file.unlink(missing_ok=True)
        logger.info(
            "worker stopped consumer=%s stored=%d dead=%d", consumer.name, consumer.stored, consumer.dead
        )
        await redis.aclose()
        await asyncio.wait_for(pool.close(), 5)


def main() -> None:
    setup_logging("worker")
    use_uvloop()
    calm_gc()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
