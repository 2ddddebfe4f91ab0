"""Operability endpoints of the gateway: /readyz and Prometheus /metrics (stream and workers included)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from services.gateway import openapi
from services.gateway.state import KEYS, POOL, PUBLISHER, REDIS, SETTINGS
from shared.db import ping
from shared.stream import group_infos
from shared.web import METRICS, json_response

WORKER_FIELDS = {
    "stored": ("worker_notices_stored_total", "counter", "Notices written to PostgreSQL"),
    "dead": ("worker_dead_lettered_total", "counter", "Entries sent to the dead-letter stream"),
    "batches": ("worker_batches_total", "counter", "Batches written"),
    "batch_entries": ("worker_batch_entries_total", "counter", "Entries in written batches (sum)"),
    "write_seconds": ("worker_write_seconds_total", "counter", "Time spent in batch writes (sum)"),
    "write_seconds_max": ("worker_write_seconds_max", "gauge", "Slowest batch write"),
    "webhook_delivered": ("worker_webhook_delivered_total", "counter", "Webhook deliveries answered 2xx"),
    "webhook_retried": ("worker_webhook_retried_total", "counter", "Webhook attempts failed, retried later"),
    "webhook_failed": ("worker_webhook_failed_total", "counter", "Webhook deliveries given up on"),
}


async def readyz(request: web.Request) -> web.Response:
    """200 when Redis answers and the key cache has loaded once; PostgreSQL is reported, not required.

    Ingest authenticates from the key cache and queues to Redis, so a PostgreSQL outage must not take
    gateways out of the balancer: they keep accepting with the keys they last loaded.
    """
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), 1)
        checks["redis"] = "ok"
    except (TimeoutError, RedisError, OSError) as e:
        checks["redis"] = f"down: {type(e).__name__}"
    keys = request.app.get(KEYS)
    checks["keys"] = "ok" if keys is not None and keys.loaded.is_set() else "down: not loaded yet"
    ok = checks["redis"] == "ok" and checks["keys"] == "ok"
    checks["postgres"] = await ping(request.app[POOL])
    return json_response({"status": "ready" if ok else "unavailable", **checks}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    s = request.app[SETTINGS]
    redis = request.app[REDIS]
    m.set("stream_backlog", request.app[PUBLISHER].backlog)
    m.set("stream_backlog_limit", s.backlog_limit)
    try:
        # Summed over the shards and the legacy key: one pipeline (one round trip per node).
        layout = request.app[PUBLISHER].layout
        shards = layout.every
        groups = await group_infos(redis, [shard.stream for shard in shards])
        m.set("stream_consumer_lag", sum(int(g.get("lag") or 0) for g in groups if g))
        m.set("stream_pending", sum(int(g.get("pending") or 0) for g in groups if g))
        pipe = redis.pipeline(transaction=False)
        for shard in shards:
            pipe.xlen(shard.stream)
            pipe.xlen(shard.dead)
        lengths = [int(n) for n in await pipe.execute()]
        m.set("stream_length", sum(lengths[0::2]))
        m.set("dead_letter_length", sum(lengths[1::2]))
        m.set("stream_shards", len(layout.shards))
        workers: dict[str, dict[Any, Any]] = {}
        async for key in redis.scan_iter(match=f"{s.stream_prefix}:workers:*", count=100):
            workers[key.decode().rsplit(":", 1)[-1]] = await redis.hgetall(key)
        # Only workers whose stats have not expired: a stopped worker's series goes away instead of
        # staying frozen forever (workers come and go with every rollout and autoscaling step).
        for field, (metric, _, _) in WORKER_FIELDS.items():
            m.reset(metric)
            for name, stats in workers.items():
                value = stats.get(field.encode())
                if value is not None:
                    m.set(metric, float(value), worker=name)
    except (RedisError, RedisClusterException, OSError, ResponseError):
        m.inc("metrics_scrape_errors_total")
    return web.Response(
        text=m.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def describe(m) -> None:  # type: ignore[no-untyped-def]
    m.describe("notices_accepted_total", "counter", "Notices queued, by protocol")
    m.describe(
        "sentry_items_dropped_total", "counter", "Sentry envelope items answered and not kept, by item type"
    )
    m.describe("requests_rejected_total", "counter", "Requests answered 4xx/5xx, by reason")
    m.describe("http_responses_total", "counter", "Responses by status")
    m.describe("stream_backlog", "gauge", "Entries not yet written (lag + pending) as the gateway sees it")
    m.describe(
        "stream_backlog_limit", "gauge", "FAULTLINE_BACKLOG_LIMIT: above this backlog ingest answers 503"
    )
    m.describe("stream_consumer_lag", "gauge", "Entries not yet delivered to any worker (all shards)")
    m.describe("stream_pending", "gauge", "Entries delivered but not acknowledged (all shards)")
    m.describe("stream_length", "gauge", "Entries in the notices streams (all shards)")
    m.describe("dead_letter_length", "gauge", "Entries in the dead-letter streams (all shards)")
    m.describe("stream_shards", "gauge", "FAULTLINE_STREAM_SHARDS: notices stream keys")
    for metric, kind, help_text in WORKER_FIELDS.values():
        m.describe(metric, kind, help_text)


def routes() -> list[web.RouteDef]:
    return [web.get("/readyz", readyz), web.get("/metrics", metrics), web.get("/openapi.json", openapi.serve)]
