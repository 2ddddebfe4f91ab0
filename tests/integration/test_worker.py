"""The worker's guarantees: counted once however often delivered, reclaimed after a crash, poison isolated."""

from __future__ import annotations

import asyncio

import msgpack
import redis.asyncio as aioredis

from services.worker import pipeline, store
from services.worker.consumer import Consumer
from shared import stream as codec
from shared.stream import GROUP
from tests.conftest import drain
from tests.integration.test_exceptioner import notice, post


def shard_of(settings, project_id: int) -> codec.Shard:
    """The shard the gateway queues a project's notices in."""
    return codec.Layout(settings.stream_prefix, settings.stream_shards).for_project(project_id)


async def error_count(pool, error_id: int) -> tuple[int, int]:
    async with pool.acquire() as conn:
        count = await conn.fetchval("SELECT notices_count FROM errors WHERE id = $1", error_id)
        stored = await conn.fetchval("SELECT count(*) FROM notices WHERE error_id = $1", error_id)
    return count or 0, stored


async def test_redelivered_entry_is_counted_once(gateway, consumer, project, pool, redis, settings):
    _, body = await post(gateway, project.key, notice(exception="RedeliveredError"))
    shard = shard_of(settings, project.id)
    entries = await redis.xrange(shard.stream, count=100_000)
    mine = [(shard.entry_id(i), f) for i, f in entries if msgpack.unpackb(f[b"m"]).get("id") == body["id"]]
    assert len(mine) == 1
    await drain(consumer)
    # The same entry handed to a worker again (as after a lost XACK) must not count twice.
    await consumer.process(mine)
    await consumer.process(mine)
    assert await error_count(pool, body["error_id"]) == (1, 1)


async def test_worker_killed_between_write_and_ack(gateway, consumer, project, pool, redis, settings):
    """A worker that wrote its batch and died before XACK: a peer reclaims the entries, counts stay exact."""
    doomed = Consumer(settings, redis, pool, name="doomed-consumer")
    _, body = await post(gateway, project.key, notice(exception="CrashBeforeAckError"))
    shard = shard_of(settings, project.id)
    resp = await redis.xreadgroup(GROUP, doomed.name, {shard.stream: ">"}, count=1000)
    entries = resp[0][1]
    rows = pipeline.process(entries, lambda _: pipeline.Rules()).rows
    async with pool.acquire() as conn:
        await store.write_batch(conn, rows)  # written ...
    # ... and the process "dies" here: no XACK. The entries stay pending under its name.
    pending = await redis.xpending(shard.stream, GROUP)
    assert pending["pending"] >= len(entries)
    deadline = asyncio.get_running_loop().time() + 10
    reclaimed = 0
    while reclaimed < len(entries):
        assert asyncio.get_running_loop().time() < deadline, "entries were never reclaimed"
        reclaimed += await consumer.reclaim()
        if reclaimed < len(entries):
            await asyncio.sleep(settings.claim_idle_ms / 1000 / 4)  # wait for the idle threshold to pass
    assert await error_count(pool, body["error_id"]) == (1, 1)
    detail = await redis.xpending_range(shard.stream, GROUP, "-", "+", 1000, consumername=doomed.name)
    assert detail == []


async def test_poison_entry_goes_to_dead_letter_stream_and_worker_goes_on(
    gateway, consumer, project, pool, redis: aioredis.Redis, settings
):
    shard = shard_of(settings, project.id)
    stream = shard.stream
    await redis.xadd(stream, {b"m": b"\xc1 not msgpack"})
    await redis.xadd(stream, {b"other": b"field"})
    await redis.xadd(stream, {b"m": msgpack.packb({"v": 99})})
    _, body = await post(gateway, project.key, notice(exception="AfterPoisonError"))
    dead_before = await redis.xlen(shard.dead)
    await drain(consumer)
    assert await error_count(pool, body["error_id"]) == (1, 1)
    dead = await redis.xrange(shard.dead, count=100)
    assert len(dead) - dead_before == 3
    reasons = [f[b"reason"].decode() for _, f in dead[-3:]]
    assert any("msgpack" in r for r in reasons) and any("'m'" in r for r in reasons)
    assert any("format" in r for r in reasons)
    summary = await redis.xpending(stream, GROUP)
    assert summary["pending"] == 0


async def test_entry_the_database_refuses_is_isolated(gateway, consumer, project, pool, redis, settings):
    """One entry PostgreSQL rejects is dead-lettered alone; the rest of its batch is stored."""
    _, good = await post(gateway, project.key, notice(exception="GoodNeighbourError"))
    env = {
        "v": 1,
        "id": "01900000-0000-7000-8000-000000000001",
        "loc": "00000000-0000-4000-8000-000000000000",
        "pid": 2_000_000_000,
        "eid": 5,
        "fp": "f" * 40,
        "gv": 1,
        "n": {
            "protocol": "exceptioner",
            "type": "error",
            "exception": "E",
            "message": "m",
            "environment": "",
            "occurred_at": None,
            "exceptions": [],
        },
        "raw": b"{}",
    }
    # pid is a project that does not exist: the errors foreign key refuses it. A format-1 entry in the
    # pre-sharding key, as an older gateway left it: drained as the legacy shard, its letter there.
    await redis.xadd(settings.notices_stream, {b"m": msgpack.packb(env, use_bin_type=True)})
    dead_before = await redis.xlen(settings.dead_stream)
    await drain(consumer)
    assert await error_count(pool, good["error_id"]) == (1, 1)
    assert await redis.xlen(settings.dead_stream) == dead_before + 1


async def test_nul_characters_are_stored_not_refused(gateway, query, consumer, project, user_token):
    body = notice(exception="NulError", message="a\u0000b")
    body["error"]["parameters"] = {"k\u0000": "v\u0000"}
    status, answer = await post(gateway, project.key, body)
    assert status == 201
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{answer['error_id']}", headers={"Api-Key": user_token})
    assert resp.status == 200
    assert (await resp.json())["parameters"] == {"k": "v"}


async def test_trim_keeps_unacknowledged_entries(gateway, consumer, project, redis, settings):
    await post(gateway, project.key, notice(exception="TrimError"))
    await drain(consumer)
    await consumer.trim()
    shard = shard_of(settings, project.id)
    assert await redis.xlen(shard.stream) == 0
    _, body = await post(gateway, project.key, notice(exception="TrimError"))
    await consumer.trim()  # nothing read yet: the new entry must survive
    entries = await redis.xrange(shard.stream)
    assert [codec.decode(f).notice_id for _, f in entries] == [body["id"]]
    await drain(consumer)


async def test_secrets_are_scrubbed_before_postgresql(gateway, query, consumer, project, user_token, pool):
    body = notice(exception="LeakyError")
    body["error"]["parameters"] = {
        "user": {"password": "hunter2", "name": "ann"},
        "card": "4111 1111 1111 1111",
    }
    body["error"]["session"] = {"auth_token": "abc"}
    body["error"]["environment"] = {"HTTP_COOKIE": "sid=1", "HTTP_USER_AGENT": "curl"}
    _, answer = await post(gateway, project.key, body)
    await drain(consumer)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT body, raw FROM notices WHERE error_id = $1", answer["error_id"])
    assert row["raw"] is None  # only CrashLog's reads answer with the body as sent: only it is kept
    stored = str(row["body"])
    for secret in ("hunter2", "4111", "sid=1", '"abc"'):
        assert secret not in stored, secret
    resp = await query.get(f"/v1/errors/{answer['error_id']}", headers={"Api-Key": user_token})
    error = await resp.json()
    assert error["parameters"]["user"] == {"password": "[Filtered]", "name": "ann"}
    assert error["environment"] == {"HTTP_COOKIE": "[Filtered]", "HTTP_USER_AGENT": "curl"}


async def test_scrubbing_follows_project_settings(gateway, query, consumer, project, user_token, pool):
    auth = {"Api-Key": user_token}
    await query.patch(
        f"/v1/projects/{project.id}", json={"settings": {"scrub_fields": ["employee_id"]}}, headers=auth
    )
    await consumer.load_projects()
    body = notice(exception="CustomScrubError")
    body["error"]["parameters"] = {"employee_id": "E-42", "password": "p"}
    _, answer = await post(gateway, project.key, body)
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{answer['error_id']}", headers=auth)
    assert (await resp.json())["parameters"] == {"employee_id": "[Filtered]", "password": "[Filtered]"}

    await query.patch(f"/v1/projects/{project.id}", json={"settings": {"scrub": False}}, headers=auth)
    await consumer.load_projects()
    _, answer = await post(gateway, project.key, body)
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{answer['error_id']}", headers=auth)
    assert (await resp.json())["parameters"] == {"employee_id": "E-42", "password": "p"}


async def test_an_error_id_taken_by_another_group_gets_its_own(
    gateway, query, consumer, project, pool, user_token
):
    """A 53-bit derived id can collide; the notice must never land under another project's error."""
    from shared import ids
    from shared.fingerprint import fingerprint
    from shared.grouping import alternate
    from shared.protocols.exceptioner import parse_notice
    from tests.conftest import make_project

    body = notice(exception="CollidingError")
    fp = fingerprint(parse_notice(body))
    taken = ids.error_id(project.id, "production", fp)
    other = await make_project(pool)
    async with pool.acquire() as conn:  # another project's group already owns the id
        await conn.execute(
            "INSERT INTO errors (id, project_id, environment, fingerprint, grouping_version, first_notice_at,"
            " most_recent_notice_at, first_notice_id, last_notice_id)"
            " VALUES ($1, $2, 'production', 'f0f0', 1, now(), now(), $3, $3)",
            taken,
            other.id,
            ids.uuid7(),
        )
    for _ in range(2):
        _, answer = await post(gateway, project.key, body)
        assert answer["error_id"] == taken  # what the gateway derived, before any worker ran
    await drain(consumer)
    own = alternate(project.id, "production", fp, 1)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM notices WHERE error_id = $1", taken) == 0
        row = await conn.fetchrow("SELECT project_id, notices_count FROM errors WHERE id = $1", own)
        assert (row["project_id"], row["notices_count"]) == (project.id, 2)
        assert await conn.fetchval("SELECT notices_count FROM errors WHERE id = $1", taken) == 0
    resp = await query.get(f"/v1/errors?project_id={project.id}", headers={"Api-Key": user_token})
    assert [e["id"] for e in await resp.json()] == [own]
