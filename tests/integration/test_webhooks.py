"""Webhooks end to end in one process: the real gateway, worker step, query service and delivery loop,
and a real aiohttp receiver on 127.0.0.1 (tests/receiver.py)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.query.app import create_app as create_query
from services.worker import delivery
from services.worker.consumer import Consumer
from shared import webhooks
from shared.settings import Settings
from tests.conftest import ProjectInfo, drain, reload_keys
from tests.integration.test_exceptioner import notice, post
from tests.integration.test_worker import shard_of
from tests.receiver import Receiver, receiving

ALL = ["error.new", "error.regressed", "error.spike", "deploy.created"]


@pytest.fixture(scope="module")
def hook_settings(settings: Settings) -> Settings:
    """Loopback receivers allowed (tests only), quick retries, no pacing worth waiting for."""
    return dataclasses.replace(
        settings,
        webhook_allow_private=True,
        webhook_backoff=0.05,
        webhook_timeout=2.0,
        webhook_rate=1000.0,
        webhook_attempts=5,
    )


@pytest.fixture(scope="module")
async def hq(hook_settings: Settings) -> AsyncIterator[TestClient]:
    """A query service that accepts loopback hook URLs."""
    client = TestClient(TestServer(create_query(hook_settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def deliverer(hook_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[delivery.Deliverer]:
    # The delivery step claims every hook in the database; hooks other modules left (aimed at public
    # addresses to pass the URL check) are switched off so that tests never reach past 127.0.0.1.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhooks SET enabled = false WHERE url NOT LIKE 'http://127.0.0.1:%'")
    async with aiohttp.ClientSession(connector=delivery.connector(hook_settings)) as session:
        yield delivery.Deliverer(hook_settings, pool, session)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


async def make_hook(hq: TestClient, token: str, project: int, url: str, **fields: Any) -> dict[str, Any]:
    await reload_keys(hq)
    body = {"url": url, "events": ALL, "spike_threshold": 3, **fields}
    resp = await hq.post(f"/v1/projects/{project}/webhooks", json=body, headers={"Api-Key": token})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def settle(deliverer: delivery.Deliverer, pool: asyncpg.Pool, hook_id: int, within: float = 15) -> None:
    """Run the delivery step until the hook has nothing pending or sending."""
    deadline = time.monotonic() + within
    while True:
        await deliverer.run_once()
        async with pool.acquire() as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE hook_id = $1 AND status IN ('pending', 'sending')",
                hook_id,
            )
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} deliveries still pending after {within}s"


def verified(secret: str, got: Any) -> bool:
    h = got.headers
    return webhooks.verify(secret, h["Faultline-Timestamp"], h["Faultline-Signature"], got.body)


def worker_count(metrics: str, outcome: str) -> float:
    """The test consumer's webhook_<outcome> counter as the gateway's /metrics renders it."""
    found = re.search(
        rf'^faultline_worker_webhook_{outcome}_total\{{worker="test-consumer"\}} (\S+)$', metrics, re.M
    )
    assert found, f"no webhook_{outcome} series for the test consumer"
    return float(found.group(1))


async def test_each_event_fires_exactly_once_for_its_cause(
    gateway,
    query,
    hq,
    consumer: Consumer,
    project: ProjectInfo,
    user_token,
    pool,
    redis,
    settings,
    deliverer,
    receiver,
):
    hook = await make_hook(hq, user_token, project.id, receiver.url)
    # error.new: the first notice of an error; the same batch handed to the worker again adds nothing.
    _, first = await post(gateway, project.key, notice(exception="HookNewError"))
    shard = shard_of(settings, project.id)
    entries = await redis.xrange(shard.stream, count=100_000)
    mine = [(shard.entry_id(i), f) for i, f in entries if msgpack.unpackb(f[b"m"]).get("id") == first["id"]]
    await drain(consumer)
    await consumer.process(mine)  # redelivered, as after a lost XACK
    await settle(deliverer, pool, hook["id"])
    assert [r.event for r in receiver.requests] == ["error.new"]
    new = receiver.requests[0].json
    assert new["error"]["id"] == first["error_id"] and new["notice"]["id"] == first["id"]
    assert new["error"]["backtrace"] and new["links"]["notice_page"].startswith(
        settings.public_url + "/notices/"
    )
    assert new["links"]["error"] == f"{settings.public_url}/v1/errors/{first['error_id']}"
    # error.spike: the threshold (3 in the last hour) reached once; more notices in the hour: nothing.
    for _ in range(4):
        await post(gateway, project.key, notice(exception="HookNewError"))
    await drain(consumer)
    await settle(deliverer, pool, hook["id"])
    assert [r.event for r in receiver.requests] == ["error.new", "error.spike"]
    assert receiver.of("error.spike")[0].json["error"]["notices_count"] >= 3
    # error.regressed: a notice for a resolved error reopens it, once.
    resp = await query.patch(
        f"/v1/errors/{first['error_id']}", json={"resolved": True}, headers={"Api-Key": user_token}
    )
    assert resp.status == 200
    _, again = await post(gateway, project.key, notice(exception="HookNewError"))
    await post(gateway, project.key, notice(exception="HookNewError"))
    await drain(consumer)
    await settle(deliverer, pool, hook["id"])
    regressed = receiver.of("error.regressed")
    assert len(regressed) == 1
    assert (
        regressed[0].json["notice"]["id"] == again["id"] and regressed[0].json["error"]["resolved"] is False
    )
    # deploy.created, from the query API.
    resp = await query.post(
        "/v1/deploys",
        json={"project_id": project.id, "environment": "production", "revision": "abc123"},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 201
    await settle(deliverer, pool, hook["id"])
    events = [r.event for r in receiver.requests]
    assert sorted(events) == sorted(ALL), events
    deploy = receiver.of("deploy.created")[0].json
    assert deploy["deploy"]["revision"] == "abc123" and deploy["links"]["deploy"].endswith(
        f"/v1/deploys/{deploy['deploy']['id']}"
    )
    # Signed with the secret of the creation answer; each delivery id seen once.
    assert all(verified(hook["secret"], r) for r in receiver.requests)
    assert len({r.delivery for r in receiver.requests}) == len(receiver.requests)
    assert {r.json["delivery_id"] for r in receiver.requests} == {r.delivery for r in receiver.requests}


async def test_a_new_error_in_a_project_without_hooks_records_nothing(gateway, consumer, project, pool):
    _, body = await post(gateway, project.key, notice(exception="NoHookError"))
    await drain(consumer)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE project_id = $1", project.id)
            == 0
        )


async def test_airbrake_deploy_through_the_worker_fires_deploy_created(
    gateway, hq, consumer, project, user_token, pool, deliverer, receiver
):
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["deploy.created"])
    resp = await gateway.post(
        f"/api/v4/projects/{project.id}/deploys?key={project.key}",
        json={"environment": "staging", "username": "ci", "revision": "r-42"},
    )
    assert resp.status in (200, 201), await resp.text()
    await drain(consumer)
    await drain(consumer)
    await settle(deliverer, pool, hook["id"])
    assert [r.event for r in receiver.requests] == ["deploy.created"]
    assert receiver.requests[0].json["deploy"]["revision"] == "r-42"


async def test_a_receiver_failing_three_times_gets_it_on_the_fourth(
    gateway, hq, consumer, project, user_token, pool, deliverer, receiver
):
    receiver.fail_first = 3
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["error.new"])
    await post(gateway, project.key, notice(exception="FlakyReceiverError"))
    await drain(consumer)
    deliverer.counters = consumer.stats  # as the worker wires it: attempts published with its stats
    await settle(deliverer, pool, hook["id"])
    assert len(receiver.requests) == 4
    assert len({r.delivery for r in receiver.requests}) == 1  # one delivery id, four attempts
    assert [r.headers["Faultline-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    assert len({r.body for r in receiver.requests}) == 1  # the same bytes every time
    resp = await hq.get(
        f"/v1/projects/{project.id}/webhooks/{hook['id']}/deliveries", headers={"Api-Key": user_token}
    )
    assert resp.status == 200
    (row,) = await resp.json()
    assert row["id"] == receiver.requests[0].delivery
    assert (row["status"], row["attempts"], row["last_status"], row["next_attempt_at"]) == (
        "delivered",
        4,
        200,
        None,
    )
    metrics = await (await hq.get("/metrics")).text()
    assert 'faultline_webhook_deliveries{outcome="delivered"}' in metrics
    await consumer.publish_stats()  # and the gateway's /metrics, from the worker's own counts
    metrics = await (await gateway.get("/metrics")).text()
    assert worker_count(metrics, "retried") >= 3 and worker_count(metrics, "delivered") >= 1


async def test_a_receiver_that_never_answers_2xx_ends_failed_and_visible(
    gateway, hq, consumer, project, user_token, pool, deliverer, receiver
):
    receiver.status = 503
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["error.new"])
    await post(gateway, project.key, notice(exception="DeadReceiverError"))
    await drain(consumer)
    await settle(deliverer, pool, hook["id"])
    assert len(receiver.requests) == deliverer.s.webhook_attempts
    resp = await hq.get(
        f"/v1/projects/{project.id}/webhooks/{hook['id']}/deliveries?status=failed",
        headers={"Api-Key": user_token},
    )
    (row,) = await resp.json()
    assert (row["status"], row["attempts"], row["last_status"]) == ("failed", 5, 503)
    assert row["last_error"] == "HTTP 503"
    metrics = await (await hq.get("/metrics")).text()
    assert 'faultline_webhook_deliveries{outcome="failed"}' in metrics


async def test_slack_format_has_slacks_shape(
    gateway, hq, consumer, project, user_token, pool, deliverer, receiver
):
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["error.new"], format="slack")
    await post(gateway, project.key, notice(exception="SlackError", message="a <b> & c"))
    await drain(consumer)
    resp = await hq.post(
        f"/v1/projects/{project.id}/webhooks/{hook['id']}/test", headers={"Api-Key": user_token}
    )
    assert resp.status == 202
    await settle(deliverer, pool, hook["id"])
    assert sorted(r.event for r in receiver.requests) == ["error.new", "webhook.test"]
    for got in receiver.requests:
        body = got.json
        assert verified(hook["secret"], got)
        # Slack's incoming webhooks: `text` (the notification fallback) and Block Kit `blocks`.
        assert isinstance(body["text"], str) and body["text"]
        assert isinstance(body["blocks"], list) and 0 < len(body["blocks"]) <= 50
        for block in body["blocks"]:
            assert block["type"] in ("section", "context")
            texts = [block["text"]] if block["type"] == "section" else block["elements"]
            for t in texts:
                assert t["type"] == "mrkdwn" and isinstance(t["text"], str) and 0 < len(t["text"]) <= 3000
    new = receiver.of("error.new")[0].json
    assert "a &lt;b&gt; &amp; c" in new["text"]  # Slack's control characters escaped
    assert "<http://" in new["blocks"][0]["text"]["text"]  # a link in Slack's <url|label> form


async def test_per_hook_concurrency_is_bounded(hq, project, user_token, pool, deliverer, receiver):
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["error.new"])
    for _ in range(12):
        resp = await hq.post(
            f"/v1/projects/{project.id}/webhooks/{hook['id']}/test", headers={"Api-Key": user_token}
        )
        assert resp.status == 202
    await settle(deliverer, pool, hook["id"])
    assert len(receiver.requests) == 12
    assert receiver.max_in_flight <= deliverer.s.webhook_concurrency


async def test_hook_crud_and_the_secret_is_never_shown_again(hq, project, user_token):
    headers = {"Api-Key": user_token}
    base = f"/v1/projects/{project.id}/webhooks"
    made = await make_hook(hq, user_token, project.id, "http://127.0.0.1:9/x", secret="s" * 20 + "wxyz")
    assert made["secret"] == "s" * 20 + "wxyz" and made["secret_hint"] == "…wxyz"
    generated = await make_hook(hq, user_token, project.id, "http://127.0.0.1:9/y", events=["error.new"])
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 30
    listed = await (await hq.get(base, headers=headers)).json()
    assert [h["id"] for h in listed] == [made["id"], generated["id"]]
    assert all("secret" not in h for h in listed)
    one = await (await hq.get(f"{base}/{made['id']}", headers=headers)).json()
    assert "secret" not in one and one["events"] == ALL
    resp = await hq.patch(
        f"{base}/{made['id']}",
        json={"events": ["error.new"], "enabled": False, "secret": "t" * 30},
        headers=headers,
    )
    changed = await resp.json()
    assert resp.status == 200 and changed["events"] == ["error.new"] and changed["enabled"] is False
    assert "secret" not in changed and changed["secret_hint"] == "…tttt"
    bad = await hq.patch(
        f"{base}/{made['id']}", json={"events": ["error.spike"], "spike_threshold": None}, headers=headers
    )
    assert bad.status == 422
    for body in (
        {"url": "ftp://example.com/x", "events": ["error.new"]},
        {"url": "http://x", "events": ["nope"]},
    ):
        assert (await hq.post(base, json=body, headers=headers)).status == 422
    assert (await hq.delete(f"{base}/{made['id']}", headers=headers)).status == 204
    assert (await hq.get(f"{base}/{made['id']}", headers=headers)).status == 404
    assert (await hq.get(f"/v1/projects/{project.id}/webhooks/{generated['id']}", headers={})).status == 401
    assert (await hq.get(base, headers={"Api-Key": project.key})).status == 403


async def test_private_and_loopback_receivers_are_refused_by_default(query, project, user_token):
    """The session's query service runs with the default (FAULTLINE_WEBHOOK_ALLOW_PRIVATE unset)."""
    await reload_keys(query)
    base = f"/v1/projects/{project.id}/webhooks"
    for url in (
        "http://127.0.0.1:8080/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data",
    ):
        resp = await query.post(
            base, json={"url": url, "events": ["error.new"]}, headers={"Api-Key": user_token}
        )
        assert resp.status == 422, url
        assert (await resp.json())["errors"][0]["code"] == "private_address"


async def test_delivery_refuses_a_private_address_when_not_allowed(settings, pool, project):
    """A hook stored while private addresses were allowed is still not sent to one afterwards."""
    strict = dataclasses.replace(settings, webhook_allow_private=False, webhook_attempts=1)
    async with pool.acquire() as conn:
        hook = await webhooks.create(
            conn,
            project.id,
            {"url": "http://127.0.0.1:9/x", "events": ["error.new"], "secret": "x" * 20, "format": "json"},
        )
        await webhooks.test_send(conn, project.id, hook["id"])
    async with aiohttp.ClientSession(connector=delivery.connector(strict)) as session:
        d = delivery.Deliverer(strict, pool, session)
        await settle(d, pool, hook["id"])
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, last_error FROM webhook_deliveries WHERE hook_id = $1", hook["id"]
        )
    assert row["status"] == "failed" and row["last_error"].startswith("refused")


async def test_the_cli_manages_hooks(settings, project, tmp_path):
    from tests.integration.test_keys_cli import Cli

    cli = Cli(settings, tmp_path)
    _, err = await cli.run(
        "webhook",
        "create",
        "--project",
        str(project.id),
        "--url",
        "http://127.0.0.1:9/x",
        "--event",
        "error.new",
        status=2,
    )
    assert "private" in err  # refused by default
    cli.env["FAULTLINE_WEBHOOK_ALLOW_PRIVATE"] = "1"
    (made,), _ = await cli.run(
        "webhook",
        "create",
        "--project",
        str(project.id),
        "--url",
        "http://127.0.0.1:9/x",
        "--event",
        "error.new",
        "--event",
        "deploy.created",
        "--format",
        "slack",
    )
    assert made["secret"].startswith("whsec_") and made["events"] == ["error.new", "deploy.created"]
    listed, _ = await cli.run("webhook", "list", "--project", str(project.id))
    assert [h["id"] for h in listed] == [made["id"]] and "secret" not in listed[0]
    (changed,), _ = await cli.run("webhook", "update", str(made["id"]), "--disable")
    assert changed["enabled"] is False and changed["format"] == "slack"
    (queued,), _ = await cli.run("webhook", "test", str(made["id"]))
    deliveries, _ = await cli.run("webhook", "deliveries", str(made["id"]))
    assert [d["id"] for d in deliveries] == [queued["id"]] and deliveries[0]["status"] == "pending"
    await cli.run("webhook", "delete", str(made["id"]))
    _, err = await cli.run("webhook", "show", str(made["id"]), status=1)
    assert "not found" in err


async def test_per_hook_rate_is_bounded(hook_settings, pool, project, receiver):
    """FAULTLINE_WEBHOOK_RATE: 10 deliveries to one hook at 20/s take at least 9/20 s to start."""
    paced = dataclasses.replace(hook_settings, webhook_rate=20.0, webhook_concurrency=10)
    async with pool.acquire() as conn:
        hook = await webhooks.create(
            conn,
            project.id,
            {"url": receiver.url, "events": ["error.new"], "secret": "r" * 20, "format": "json"},
        )
        for _ in range(10):
            await webhooks.test_send(conn, project.id, hook["id"])
    async with aiohttp.ClientSession(connector=delivery.connector(paced)) as session:
        started = time.monotonic()
        await settle(delivery.Deliverer(paced, pool, session), pool, hook["id"])
        took = time.monotonic() - started
    assert len(receiver.requests) == 10
    assert took >= 9 / 20, took


async def test_a_delivery_waiting_for_its_retry_shows_the_next_try(
    hq, project, user_token, pool, deliverer, receiver
):
    receiver.status = 500
    hook = await make_hook(hq, user_token, project.id, receiver.url, events=["error.new"])
    resp = await hq.post(
        f"/v1/projects/{project.id}/webhooks/{hook['id']}/test", headers={"Api-Key": user_token}
    )
    assert resp.status == 202
    await deliverer.run_once()
    resp = await hq.get(
        f"/v1/projects/{project.id}/webhooks/{hook['id']}/deliveries", headers={"Api-Key": user_token}
    )
    (row,) = await resp.json()
    assert (row["status"], row["attempts"], row["last_status"], row["last_error"]) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    assert row["next_attempt_at"] is not None and row["event"] == "webhook.test"
