"""The ingest gateway: authenticate, parse, queue. PostgreSQL is never on the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from services.gateway import cors, deploys, ops, routes
from services.gateway.state import KEYS, POOL, PUBLISHER, REDIS, SETTINGS
from shared.db import create_pool
from shared.keys import KeyCache
from shared.metrics import Metrics
from shared.settings import Settings
from shared.stream import Layout, Publisher, connect, ensure_groups
from shared.web import DATABASE_UNAVAILABLE, METRICS, Resolver, guard, not_matched_route

logger = logging.getLogger(__name__)
STARTUP_WAIT = 60.0  # seconds a gateway waits for PostgreSQL's keys at start-up, then exits (status 3)
ATTEMPT_TIMEOUT = 5.0  # one connect-and-load attempt; a server that accepts and never answers costs this


async def _background(*coros: object) -> AsyncIterator[None]:
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(c) for c in coros]  # type: ignore[arg-type]
    yield
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    assert s.redis_url
    client = connect(s.redis_url, socket_timeout=5, socket_connect_timeout=5)
    app[REDIS] = client
    layout = Layout(s.stream_prefix, s.stream_shards)
    publisher = Publisher(client, layout, s.backlog_limit, s.ack)
    try:
        await ensure_groups(client, [shard.stream for shard in layout.shards])
        warning = await publisher.check_ack()
    except Exception:
        await client.aclose()
        raise
    if warning:
        logger.warning("%s", warning)
    app[PUBLISHER] = publisher
    async for _ in _background(publisher.run(), publisher.watch_backlog()):
        yield
    await publisher.aclose()
    await client.aclose()


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    assert s.database_url
    pool, cache = await _first_keys(s.database_url, s.key_refresh)
    app[KEYS] = cache
    app[POOL] = pool
    async for _ in _background(cache.run()):
        yield
    await asyncio.wait_for(pool.close(), 5)


async def _first_keys(dsn: str, refresh: float, wait: float = STARTUP_WAIT) -> tuple[Any, KeyCache]:
    """The pool and a loaded key cache; while PostgreSQL is unavailable, retried with a log line, and
    past `wait` seconds the process exits non-zero so its supervisor restarts it (never a silent hang)."""
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        pool = None
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                pool = await create_pool(dsn, min_size=1, max_size=3)  # one holds the key cache's LISTEN
                cache = KeyCache(pool, refresh)
                await cache.reload()
            return pool, cache
        except (*DATABASE_UNAVAILABLE, OSError) as e:
            if pool is not None:
                pool.terminate()
            left = deadline - time.monotonic()
            if left <= 0:
                logger.error("keys not loaded: PostgreSQL unavailable for %.0fs (%r); exiting", wait, e)
                raise SystemExit(3) from e
            logger.warning("keys not loaded: PostgreSQL unavailable (%r); retrying for %.0fs more", e, left)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


def _resolver(app: web.Application) -> Resolver | None:
    cache = app.get(KEYS)
    return None if cache is None else cache.resolve_key


def create_app(settings: Settings) -> web.Application:
    # auto_decompress off: shared.web.read_body inflates Content-Encoding itself, within its caps.
    # No middleware: every route's handler is `guard`ed instead (the error mapping, the look-up of a
    # key the cache has not heard of yet, the CORS headers), and a last catch-all answers unknown
    # paths in JSON; aiohttp's middleware chain was the dearest part of the hot path it replaces.
    app = web.Application(client_max_size=settings.max_body, handler_args={"auto_decompress": False})
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    ops.describe(app[METRICS])
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(keys_ctx)

    def guarded(table: list[web.RouteDef]) -> list[web.RouteDef]:
        return guard(table, _resolver, cors.finish)

    app.add_routes(guarded(routes.table()))
    app.add_routes(guarded(deploys.routes()))
    cors.install(app, wrap=guarded)
    app.add_routes(guarded(ops.routes()))
    app.add_routes(guarded([not_matched_route()]))  # last
    return app
