"""The query service: reads, management writes and location look-ups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from services.query import (
    dead_letters,
    deploys,
    errors,
    exceptionless_config,
    grouping,
    locate,
    ops,
    pages,
    projects,
    stats,
    webhooks,
)
from services.query import keys as lifecycle
from services.query.reads import READS, ReadRouter, routing
from services.query.state import KEYS, POOL, READ_POOL, SETTINGS
from shared.db import create_pool, ping
from shared.keys import KeyCache, prefetch
from shared.metrics import Metrics
from shared.settings import Settings
from shared.web import METRICS, error_middleware, health, root

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_S = 5
CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "faultline-query"  # in pg_stat_activity, on the primary and on the replica


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    assert s.database_url
    # Every statement is cancelled by PostgreSQL after STATEMENT_TIMEOUT (the answer is then a 503),
    # so no read holds a pooled connection for long; connecting gives up after CONNECT_TIMEOUT.
    limits: dict[str, Any] = {
        "max_size": 10,
        "command_timeout": STATEMENT_TIMEOUT_S * 2,
        "timeout": CONNECT_TIMEOUT_S,
        "server_settings": {
            "statement_timeout": f"{STATEMENT_TIMEOUT_S * 1000}",
            "application_name": APPLICATION_NAME,
        },
    }
    pool = await create_pool(s.database_url, min_size=1, **limits)
    app[POOL] = pool
    read_pool = pool
    if s.query_database_url and s.query_database_url != s.database_url:
        # min_size 0: a replica that is down does not stop start-up (reads.py reads from the primary then).
        read_pool = await create_pool(s.query_database_url, min_size=0, **limits)
    app[READ_POOL] = read_pool
    app[READS] = router = ReadRouter(pool, read_pool)
    if read_pool is not pool and (state := await ping(read_pool, CONNECT_TIMEOUT_S)) != "ok":
        router.replica_failed(f"{state} at start-up")
    cache = KeyCache(pool, s.key_refresh)
    await cache.reload()
    app[KEYS] = cache
    task = asyncio.create_task(cache.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.wait_for(pool.close(), 5)
    if read_pool is not pool:
        await asyncio.wait_for(read_pool.close(), 5)


def create_app(settings: Settings) -> web.Application:
    # auto_decompress off: shared.web.read_body inflates Content-Encoding itself, within its caps.
    app = web.Application(
        middlewares=[error_middleware, routing],
        client_max_size=settings.max_body,
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(pool_ctx)
    app.cleanup_ctx.append(ops.redis_ctx)
    app.add_routes(ops.routes())
    app.add_routes([web.get("/", root), web.get("/healthz", health)])
    app.add_routes(errors.routes())
    app.add_routes(grouping.routes())  # merge and split (docs/grouping.md)
    app.add_routes(deploys.routes())
    app.add_routes(projects.routes())
    app.add_routes(lifecycle.routes())
    app.middlewares.append(prefetch(KEYS))  # a key or token works on its first request
    app.add_routes(stats.routes())
    app.add_routes(locate.routes())
    app.add_routes(pages.routes())
    app.add_routes(exceptionless_config.routes())
    app.add_routes(dead_letters.routes())
    app.add_routes(webhooks.routes())
    return app
