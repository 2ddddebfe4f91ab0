"""Operability endpoints of the query service: /readyz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from services.query import openapi, webhooks
from services.query.state import POOL, READ_POOL, SETTINGS
from shared.db import ping
from shared.stream import connect
from shared.web import METRICS, json_response

REDIS = web.AppKey("redis", aioredis.Redis)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """A client used only to report readiness; reads never touch Redis."""
    url = app[SETTINGS].redis_url
    client = connect(url, socket_timeout=2, socket_connect_timeout=2) if url else None
    if client is not None:
        app[REDIS] = client
    yield
    if client is not None:
        await client.aclose()


async def readyz(request: web.Request) -> web.Response:
    """200 when PostgreSQL answers: every read and write is there. Redis and a replica are reported, not
    required (reads go to the primary while the replica is down)."""
    checks = {"postgres": await ping(request.app[POOL])}
    if request.app[READ_POOL] is not request.app[POOL]:
        checks["postgres_replica"] = await ping(request.app[READ_POOL])
    client = request.app.get(REDIS)
    if client is None:
        checks["redis"] = "down: not configured"
    else:
        try:
            await asyncio.wait_for(client.ping(), 1)
            checks["redis"] = "ok"
        except (TimeoutError, RedisError, OSError) as e:
            checks["redis"] = f"down: {type(e).__name__}"
    ok = checks["postgres"] == "ok"
    return json_response({"status": "ready" if ok else "unavailable", **checks}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.describe("http_responses_total", "counter", "Responses by status")  # listed from the first scrape
    webhooks.describe(m)
    try:
        await webhooks.report(request.app, m)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        m.inc("metrics_scrape_errors_total")
    return web.Response(text=m.render(), content_type="text/plain", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [web.get("/readyz", readyz), web.get("/metrics", metrics), web.get("/openapi.json", openapi.serve)]
