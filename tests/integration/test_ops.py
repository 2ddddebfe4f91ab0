"""Operability: readiness, Prometheus metrics, request ids."""

from __future__ import annotations

import re

from tests.conftest import drain
from tests.integration.test_exceptioner import notice


async def test_readyz_reports_both_servers(gateway, query):
    resp = await gateway.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready", "redis": "ok", "keys": "ok", "postgres": "ok"}
    resp = await query.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready", "redis": "ok", "postgres": "ok"}
    for client in (gateway, query):
        assert (await client.get("/healthz")).status == 200


async def test_metrics_count_accepted_rejected_backlog_and_workers(gateway, consumer, project):
    await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})
    await gateway.post("/v1/notices", data=b"{", headers={"Api-Key": project.key})
    await gateway.post("/v1/notices", json=notice())
    await drain(consumer)
    await consumer.publish_stats()
    text = await (await gateway.get("/metrics")).text()
    assert re.search(r'^faultline_notices_accepted_total\{protocol="exceptioner"\} [1-9]', text, re.M)
    assert re.search(r'^faultline_requests_rejected_total\{reason="bad_request"\} [1-9]', text, re.M)
    assert re.search(r'^faultline_requests_rejected_total\{reason="unauthenticated"\} [1-9]', text, re.M)
    assert re.search(r"^faultline_stream_consumer_lag 0$", text, re.M)
    assert re.search(r'^faultline_worker_notices_stored_total\{worker="test-consumer"\} [1-9]', text, re.M)
    assert "# TYPE faultline_worker_write_seconds_max gauge" in text


async def test_request_id_is_echoed_or_made(gateway, query):
    resp = await gateway.get("/", headers={"X-Request-Id": "abc123"})
    assert resp.headers["X-Request-Id"] == "abc123"
    resp = await query.get("/v1/errors")
    assert resp.status == 401 and len(resp.headers["X-Request-Id"]) == 16


async def test_metrics_list_live_workers_only_and_the_backlog_limit(gateway, redis, settings):
    key = f"{settings.stream_prefix}:workers:gone-worker"
    await redis.hset(key, mapping={"stored": "7", "batches": "2"})
    try:
        text = await (await gateway.get("/metrics")).text()
        assert re.search(r'^faultline_worker_notices_stored_total\{worker="gone-worker"\} 7$', text, re.M)
        assert re.search(rf"^faultline_stream_backlog_limit {settings.backlog_limit}$", text, re.M)
    finally:
        await redis.delete(key)  # what the 120 s expiry does to a worker that stopped
    text = await (await gateway.get("/metrics")).text()
    assert 'worker="gone-worker"' not in text
    assert "# TYPE faultline_worker_notices_stored_total counter" in text


async def test_unknown_paths_and_methods_answer_json_404_and_405(gateway, query):
    """The gateway has no middleware (its routes are guarded one by one, shared.web.guard): its
    catch-all route still answers like the query service's middleware does."""
    for client in (gateway, query):
        resp = await client.get("/no/such/path", headers={"X-Request-Id": "rid-404"})
        assert resp.status == 404 and await resp.json() == {"message": "Not Found"}
        assert resp.headers["X-Request-Id"] == "rid-404"
    resp = await gateway.get("/v1/notices")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert (await resp.json())["message"] == "Method GET not allowed on /v1/notices"
    resp = await gateway.delete("/api/v2/events")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert (await gateway.head("/healthz")).status == 200  # aiohttp's HEAD beside each GET still works
    text = await (await gateway.get("/metrics")).text()
    assert re.search(r'^faultline_http_responses_total\{status="404"\} [1-9]', text, re.M)
    assert re.search(r'^faultline_requests_rejected_total\{reason="method_not_allowed"\} [1-9]', text, re.M)
