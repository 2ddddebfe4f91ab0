"""A worker SIGKILLed between sending a webhook and marking it: another worker sends it again, under the
same delivery id and with the same bytes, once its lease runs out. Nothing is lost.

Real processes (gateway, worker, replacement worker) and a real aiohttp receiver on 127.0.0.1 that holds
the first request open while the test kills the worker that sent it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared import db, webhooks
from shared.settings import Settings
from tests.faults.procs import Service, post_many, service_env, wait_http
from tests.faults.test_faults import new_project
from tests.receiver import Received, receiving

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def poll(what: str, check, within: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.05)


async def delivery_row(database_url: str, hook_id: int) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT id, status, attempts, last_status FROM webhook_deliveries WHERE hook_id = $1", hook_id
        )
    finally:
        await conn.close()


async def test_worker_sigkilled_between_send_and_mark_redelivers_the_same_id(
    settings: Settings, tmp_path: Path
):
    assert settings.database_url and settings.redis_url
    env = service_env(
        settings.database_url,
        settings.redis_url,
        FAULTLINE_WEBHOOK_ALLOW_PRIVATE="1",
        FAULTLINE_WEBHOOK_TIMEOUT="2",
        FAULTLINE_WEBHOOK_BACKOFF="0.2",
        FAULTLINE_WEBHOOK_RATE="100",
    )
    killed = asyncio.Event()

    async def hold_the_first(got: Received) -> None:
        if len(receiver.requests) == 1:  # answered only after its sender is dead
            await asyncio.wait_for(killed.wait(), 60)

    async with receiving() as receiver:
        receiver.before_answer = hold_the_first
        pid, key = await new_project(settings.database_url)
        conn = await asyncpg.connect(settings.database_url)
        try:
            await db.init_connection(conn)
            hook = await webhooks.create(
                conn,
                pid,
                {"url": receiver.url, "events": ["error.new"], "secret": "k" * 24, "format": "json"},
            )
        finally:
            await conn.close()
        gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
        wk = Service("services.worker", env, tmp_path / "worker.log").start()
        replacement = None
        try:
            await wait_http(f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}/healthz")
            acked, _, _ = await post_many(f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}", key, 1)
            assert len(acked) == 1

            async def sent() -> bool:
                return len(receiver.requests) >= 1

            await poll(f"the first webhook request\n{wk.text()[-3000:]}", sent, 30)
            wk.kill(signal.SIGKILL)  # it sent, and now never hears the answer nor marks the row
            killed.set()
            row = await delivery_row(settings.database_url, hook["id"])
            assert row is not None and (row["status"], row["attempts"]) == ("sending", 1)

            replacement = Service("services.worker", env, tmp_path / "worker2.log").start()

            async def delivered() -> bool:
                r = await delivery_row(settings.database_url, hook["id"])
                return r is not None and r["status"] == "delivered"

            await poll(f"redelivery\n{replacement.text()[-3000:]}", delivered, 40)
            # The replacement's published worker stats count the attempt by outcome.
            r = aioredis.Redis.from_url(settings.redis_url)

            async def counted() -> bool:
                keys = [k async for k in r.scan_iter(match=f"{env['FAULTLINE_STREAM_PREFIX']}:workers:*")]
                values = [await r.hget(k, "webhook_delivered") for k in keys]
                return any(float(v or 0) >= 1 for v in values)

            try:
                await poll("webhook_delivered in the worker's stats", counted, 20)
            finally:
                await r.aclose()
        finally:
            killed.set()
            gw.stop()
            wk.stop()
            if replacement is not None:
                replacement.stop()
    first, again = receiver.requests[0], receiver.requests[-1]
    print(f"\n[webhook SIGKILL] requests={len(receiver.requests)} delivery={first.delivery}")
    assert len(receiver.requests) == 2
    assert again.delivery == first.delivery == str(row["id"])  # the receiver can drop the repeat
    assert again.body == first.body
    assert (first.headers["Faultline-Attempt"], again.headers["Faultline-Attempt"]) == ("1", "2")
    assert webhooks.verify(
        "k" * 24, again.headers["Faultline-Timestamp"], again.headers["Faultline-Signature"], again.body
    )
    final = await delivery_row(settings.database_url, hook["id"])
    assert final is not None and (final["status"], final["attempts"], final["last_status"]) == (
        "delivered",
        2,
        200,
    )
