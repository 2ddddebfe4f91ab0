"""Grouping that changes without splitting history (issue 17): versions, the window, merge, split.

Real gateway, real stream, real workers, real PostgreSQL. Exceptioner notices without a backtrace are
grouped by their message, where version 2's rule shows: "lost worker17" and "lost worker42" are two
errors under version 1 (a number glued to a word stays) and one under version 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.query.app import create_app
from services.query.state import KEYS
from services.worker import pipeline, store
from services.worker.consumer import Consumer
from shared import ids, stream
from shared.fingerprint import fingerprint
from shared.protocols.exceptioner import parse_notice
from shared.settings import Settings, SettingsError
from tests.bench.fill import raw_notice, templates
from tests.bench.stack import Project
from tests.conftest import ProjectInfo, drain, make_project, reload_keys
from tests.integration.test_exceptioner import notice, post


def body(message: str, exception: str = "TimeoutError") -> dict[str, Any]:
    return notice(exception=exception, message=message, backtrace=[])


async def report(
    gateway: TestClient, project: ProjectInfo, message: str, exception: str = "TimeoutError"
) -> Any:
    status, answer = await post(gateway, project.key, body(message, exception))
    assert status == 201, answer
    return answer


async def configure(
    query: TestClient,
    gateway: TestClient,
    consumer: Consumer,
    project: ProjectInfo,
    token: str,
    **settings: Any,
) -> dict[str, Any]:
    resp = await query.patch(
        f"/v1/projects/{project.id}", json={"settings": settings}, headers={"Api-Key": token}
    )
    assert resp.status == 200, await resp.text()
    await reload_keys(gateway, query)  # the gateway answers with the project's version
    await consumer.load_projects()
    return (await resp.json())["settings"]  # type: ignore[no-any-return]


async def get_error(query: TestClient, token: str, error_id: int) -> tuple[int, Any]:
    resp = await query.get(f"/v1/errors/{error_id}", headers={"Api-Key": token})
    return resp.status, await resp.json()


async def project_errors(pool: Any, project: ProjectInfo) -> dict[int, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, notices_count FROM errors WHERE project_id = $1", project.id)
    return {r["id"]: r["notices_count"] for r in rows}


def test_version_2_drops_a_number_version_1_keeps() -> None:
    one, two = parse_notice(body("lost worker17")), parse_notice(body("lost worker42"))
    assert fingerprint(one, version=1) != fingerprint(two, version=1)
    assert fingerprint(one, version=2) == fingerprint(two, version=2)
    other = parse_notice(body("lost utf8 worker17"))  # one digit is no number in either version
    assert fingerprint(other, version=2) != fingerprint(one, version=2)


async def test_rule_change_inside_the_window_splits_nothing(
    gateway, query, consumer, project, user_token, pool
):
    a = await report(gateway, project, "lost worker17")
    b = await report(gateway, project, "lost worker42")
    await drain(consumer)
    assert a["error_id"] != b["error_id"]

    settings = await configure(query, gateway, consumer, project, user_token, grouping_version=2)
    assert settings["grouping_version"] == 2 and settings["grouping_transition"]["from"] == 1

    again_a = await report(gateway, project, "lost worker17")
    again_b = await report(gateway, project, "lost worker42")
    unseen = await report(gateway, project, "lost worker99")  # no error under version 1
    await drain(consumer)
    # Inside the window both errors keep their notices and their ids; nothing new appears.
    assert again_a["error_id"] == a["error_id"] and again_b["error_id"] == b["error_id"]
    counts = await project_errors(pool, project)
    assert set(counts) == {a["error_id"], b["error_id"]}
    # The unseen number's new-version fingerprint was already attached (to the first error it met):
    # it joins that error, and the id the client was answered resolves to it.
    status, joined = await get_error(query, user_token, unseen["error_id"])
    assert status == 200 and joined["id"] in counts
    assert sorted(counts.values()) == [2, 3] and counts[joined["id"]] == 3
    assert joined["grouping_version"] == 1  # the error made by version 1, still counting

    # The window closed: version 2 alone. worker42's notices now go where version 2 groups them.
    await configure(query, gateway, consumer, project, user_token, grouping_transition=None)
    late = await report(gateway, project, "lost worker42")
    await drain(consumer)
    status, where = await get_error(query, user_token, late["error_id"])
    assert status == 200 and where["id"] == joined["id"]
    assert await project_errors(pool, project) == {**counts, joined["id"]: 4}


async def test_rule_change_without_a_window_starts_new_errors(
    gateway, query, consumer, project, user_token, pool
):
    a = await report(gateway, project, "lost worker17")
    b = await report(gateway, project, "lost worker42")
    await drain(consumer)
    settings = await configure(
        query, gateway, consumer, project, user_token, grouping_version=2, grouping_window_days=0
    )
    assert "grouping_transition" not in settings
    again_a = await report(gateway, project, "lost worker17")
    again_b = await report(gateway, project, "lost worker42")
    await drain(consumer)
    # No window: both notices are version 2's one new error; the old ones keep their history.
    assert again_a["error_id"] == again_b["error_id"] not in (a["error_id"], b["error_id"])
    assert await project_errors(pool, project) == {a["error_id"]: 1, b["error_id"]: 1, again_a["error_id"]: 2}
    status, new = await get_error(query, user_token, again_a["error_id"])
    assert status == 200 and new["grouping_version"] == 2


async def test_merge_three_errors_under_concurrent_ingest(
    gateway, query, consumer, project, user_token, pool, settings, redis
):
    kinds = ("MergeOneError", "MergeTwoError", "MergeThreeError")
    first = [await report(gateway, project, "it broke", k) for k in kinds]
    await drain(consumer)
    target, *others = [f["error_id"] for f in first]
    workers = [Consumer(settings, redis, pool, name=f"merge-worker-{i}") for i in range(3)]
    for w in workers:
        await w.setup()
    posted = len(kinds)
    merged = asyncio.Event()
    after_merge = 0

    async def ingest() -> None:
        nonlocal posted, after_merge
        while after_merge < 8:  # rounds before, during and after the merge
            for k in kinds:
                await report(gateway, project, "it broke", k)
                posted += 1
            await asyncio.gather(*(w.run_once(block_ms=None) for w in workers))
            if merged.is_set():
                after_merge += 1

    async def merge() -> Any:
        deadline = asyncio.get_running_loop().time() + 30
        while posted < 12:  # some notices stored before the merge starts
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0)
        resp = await query.post(
            f"/v1/errors/{target}/merge", json={"ids": others}, headers={"Api-Key": user_token}
        )
        merged.set()
        return resp.status, await resp.json()

    _, (status, answer) = await asyncio.wait_for(asyncio.gather(ingest(), merge()), 120)
    assert status == 200, answer
    assert answer["id"] == target
    await drain(consumer)

    # New notices of each merged fingerprint land in the target; the ids they are answered resolve.
    last = [await report(gateway, project, "it broke", k) for k in kinds]
    posted += len(last)
    await drain(consumer)
    for n in last:
        resp = await query.get(
            f"/v1/errors/{n['error_id']}/notices/{n['id']}", headers={"Api-Key": user_token}
        )
        assert resp.status == 200
        assert (await resp.json())["error_id"] == target

    # Every notice counted once, in the target: its count, its stored notices, its hourly series.
    async with pool.acquire() as conn:
        errors = await conn.fetch(
            "SELECT id, notices_count, stored_count FROM errors WHERE project_id = $1", project.id
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM notices WHERE project_id = $1 AND error_id = $2", project.id, target
        )
        elsewhere = await conn.fetchval(
            "SELECT count(*) FROM notices WHERE error_id = ANY($1::bigint[])", others
        )
        hourly = await conn.fetchval("SELECT sum(count) FROM error_hourly WHERE error_id = $1", target)
        stale_hours = await conn.fetchval(
            "SELECT count(*) FROM error_hourly WHERE error_id = ANY($1::bigint[])", others
        )
    assert [(r["id"], r["notices_count"], r["stored_count"]) for r in errors] == [(target, posted, posted)]
    assert stored == hourly == posted and elsewhere == stale_hours == 0

    # An id a client was answered before the merge answers with the error it is now part of.
    for old in others:
        resp = await query.get(f"/v1/errors/{old}", headers={"Api-Key": user_token})
        assert resp.status == 200
        assert (await resp.json())["id"] == target
        assert resp.headers["Content-Location"] == f"/v1/errors/{target}"
        resp = await query.get(f"/v1/errors/{old}/stats", headers={"Api-Key": user_token})
        assert (await resp.json())["error_id"] == target

    # Merging again changes nothing.
    resp = await query.post(
        f"/v1/errors/{target}/merge", json={"ids": others}, headers={"Api-Key": user_token}
    )
    assert resp.status == 200 and (await resp.json())["notices_count"] == posted

    # Split the second kind back out, by one of its notices: its notices and its future ones.
    second = last[1]
    resp = await query.post(
        f"/v1/errors/{target}/split", json={"notice_id": second["id"]}, headers={"Api-Key": user_token}
    )
    assert resp.status == 200, await resp.text()
    split = await resp.json()
    assert split["id"] == others[0] and split["from"] == target  # its own derived id again
    moved = split["notices_moved"]
    assert moved >= 2 and split["error"]["notices_count"] == moved
    status, rest = await get_error(query, user_token, target)
    assert rest["notices_count"] == posted - moved
    after = await report(gateway, project, "it broke", kinds[1])
    await drain(consumer)
    status, own = await get_error(query, user_token, after["error_id"])
    assert own["id"] == others[0] and own["notices_count"] == moved + 1
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT sum(count) FROM error_hourly WHERE error_id = $1", others[0])
            == moved + 1
        )
        assert (
            await conn.fetchval("SELECT sum(count) FROM error_hourly WHERE error_id = $1", target)
            == posted - moved
        )
    # Again: the same answer, nothing moved. The error's own fingerprint is its own already.
    resp = await query.post(
        f"/v1/errors/{target}/split", json={"notice_id": second["id"]}, headers={"Api-Key": user_token}
    )
    assert resp.status == 404  # that notice is no longer the target's
    resp = await query.post(
        f"/v1/errors/{target}/split",
        json={"fingerprint": split["fingerprint"]},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 200 and (await resp.json())["id"] == others[0]
    resp = await query.post(
        f"/v1/errors/{target}/split",
        json={"fingerprint": rest["fingerprint"]},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 200  # its own fingerprint: its own error already, nothing moves
    assert (await resp.json())["id"] == target and (await resp.json())["notices_moved"] == 0


async def test_merge_refuses_what_it_cannot_do(query, gateway, consumer, project, user_token):
    a = await report(gateway, project, "refused one", "RefuseOneError")
    await drain(consumer)
    h = {"Api-Key": user_token}
    assert (await query.post(f"/v1/errors/{a['error_id']}/merge", json={"ids": []}, headers=h)).status == 422
    assert (
        await query.post(
            f"/v1/errors/{a['error_id']}/merge", json={"ids": [ids.error_id(1, "x", "y")]}, headers=h
        )
    ).status == 404
    assert (
        await query.post(f"/v1/errors/{a['error_id']}/merge", json={"ids": [a["error_id"]]})
    ).status == 401
    resp = await query.post(f"/v1/errors/{a['error_id']}/merge", json={"ids": [a["error_id"]]}, headers=h)
    assert resp.status == 200  # itself: nothing to do
    assert (await query.post(f"/v1/errors/{a['error_id']}/split", json={}, headers=h)).status == 422


async def test_notice_page_marks_app_frames_by_the_projects_patterns(
    gateway, query, consumer, project, user_token
):
    trace = [
        "/srv/shop/vendor/shopkit/lib/cart.rb:12:in `total'",  # vendored: a library frame by default
        "[PROJECT_ROOT]/app/controllers/cart_controller.rb:7:in `show'",
    ]
    plain = notice(exception="PatternPageError", message="cart", backtrace=trace)
    await configure(query, gateway, consumer, project, user_token, library_patterns=["*/app/controllers/*"])
    await configure(query, gateway, consumer, project, user_token, app_patterns=["*/vendor/shopkit/*"])
    _, answer = await post(gateway, project.key, plain)
    await drain(consumer)
    h = {"Api-Key": user_token}
    stored = await (
        await query.get(f"/v1/errors/{answer['error_id']}/notices/{answer['id']}", headers=h)
    ).json()
    page = await (await query.get(f"/notices/{stored['location_id']}", headers=h)).text()
    # The page says what the grouping decided: the project's patterns turn both defaults round.
    assert '<li class="app"><code>/srv/shop/vendor/shopkit/lib/cart.rb:12' in page
    assert '<li class="lib"><code>[PROJECT_ROOT]/app/controllers/cart_controller.rb:7' in page
    parsed = parse_notice(plain)
    parsed["environment"] = "production"
    app, lib = ("*/vendor/shopkit/*",), ("*/app/controllers/*",)
    assert fingerprint(parsed, app, lib) != fingerprint(parsed)  # and grouping used the same patterns
    assert ids.error_id(project.id, "production", fingerprint(parsed, app, lib)) == answer["error_id"]


async def test_new_projects_start_with_the_configured_version(settings, user_token):
    assert Settings.from_env({"FAULTLINE_GROUPING_VERSION": "2"}).grouping_version == 2
    with pytest.raises(SettingsError, match="FAULTLINE_GROUPING_VERSION"):
        Settings.from_env({"FAULTLINE_GROUPING_VERSION": "3"})
    client = TestClient(TestServer(create_app(dataclasses.replace(settings, grouping_version=2))))
    await client.start_server()
    try:
        await client.app[KEYS].reload()  # type: ignore[index]
        resp = await client.post(
            "/v1/projects", json={"name": "starts-at-2"}, headers={"Api-Key": user_token}
        )
        assert resp.status == 201, await resp.text()
        made = await resp.json()
        assert made["settings"] == {"grouping_version": 2}  # no window: it has no errors to keep
    finally:
        await client.close()


async def test_merges_racing_batch_writers_lose_nothing_and_never_deadlock(query, pool, user_token, gateway):
    """Three connections write batches over three errors while two merges fold them together."""
    info = await make_project(pool)
    await reload_keys(gateway, query)
    p = Project(info.id, info.key)
    tpls = templates(p, 3)
    rng = random.Random(17)
    now = ids.uuid7_ms(ids.uuid7())

    def batch(seed: int) -> list[pipeline.Row]:
        entries = [
            (
                f"{seed}-{i}".encode(),
                stream.encode(raw_notice(p, tpls[rng.randrange(3)], now - rng.randrange(7_200_000))),
            )
            for i in range(rng.randint(50, 300))
        ]
        return pipeline.process(entries, lambda _: pipeline.Rules()).rows

    work = [[batch(w * 100 + b) for b in range(12)] for w in range(3)]
    first, second, third = (t.eid for t in tpls)
    async with pool.acquire() as conn:
        await store.write_batch(conn, batch(999))  # all three errors exist before the merges
    total = sum(len(b) for w in work for b in w)
    async with pool.acquire() as conn:
        total += await conn.fetchval("SELECT count(*) FROM notices WHERE project_id = $1", info.id)

    written = 0

    async def writer(batches: list[list[pipeline.Row]]) -> None:
        nonlocal written
        async with pool.acquire() as conn:
            for rows in batches:
                await store.write_batch(conn, rows)  # a deadlock would raise here
                written += 1

    async def merge(into: int, other: int, after: int) -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while written < after:  # mid-stream: batches before, during and after it
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0)
        resp = await query.post(
            f"/v1/errors/{into}/merge", json={"ids": [other]}, headers={"Api-Key": user_token}
        )
        assert resp.status == 200, await resp.text()

    await asyncio.wait_for(
        asyncio.gather(*(writer(w) for w in work), merge(first, second, 8), merge(first, third, 20)), 120
    )
    async with pool.acquire() as conn:
        errors = await conn.fetch("SELECT id, notices_count FROM errors WHERE project_id = $1", info.id)
        stored = await conn.fetch(
            "SELECT error_id, count(*) AS n FROM notices WHERE project_id = $1 GROUP BY 1", info.id
        )
        hourly = await conn.fetchval(
            "SELECT sum(count) FROM error_hourly WHERE error_id = ANY($1::bigint[])", [first, second, third]
        )
    assert [(r["id"], r["notices_count"]) for r in errors] == [(first, total)]
    assert [(r["error_id"], r["n"]) for r in stored] == [(first, total)]
    assert hourly == total


async def test_merge_combines_deploy_revisions_and_resolution(gateway, query, consumer, project, user_token):
    h = {"Api-Key": user_token}

    async def deploy(revision: str) -> None:
        resp = await query.post(
            "/v1/deploys",
            json={"environment": "production", "revision": revision, "project_id": project.id},
            headers=h,
        )
        assert resp.status == 201, await resp.text()

    await deploy("r1")
    older = await report(gateway, project, "rev one", "RevisionOneError")
    await drain(consumer)
    await deploy("r2")
    newer = await report(gateway, project, "rev two", "RevisionTwoError")
    await drain(consumer)
    resp = await query.patch(f"/v1/errors/{older['error_id']}", json={"resolved": True}, headers=h)
    assert resp.status == 200
    resp = await query.post(
        f"/v1/errors/{newer['error_id']}/merge", json={"ids": [older["error_id"]]}, headers=h
    )
    merged = await resp.json()
    assert (merged["first_seen_revision"], merged["last_seen_revision"]) == ("r1", "r2")
    assert merged["notices_count"] == 2 and merged["resolved"] is False  # one part was still open
    assert merged["first_notice_at"] <= merged["most_recent_notice_at"]
    # The merged id still takes writes: resolving it resolves the error it is part of.
    resp = await query.patch(f"/v1/errors/{older['error_id']}", json={"resolved": True}, headers=h)
    assert resp.status == 200 and (await resp.json())["id"] == newer["error_id"]
    status, now = await get_error(query, user_token, newer["error_id"])
    assert now["resolved"] is True


async def test_a_merged_fingerprint_stays_merged_across_a_version_change(
    gateway, query, consumer, project, user_token, pool
):
    a = await report(gateway, project, "kept together", "KeptOneError")
    b = await report(gateway, project, "kept together", "KeptTwoError")
    await drain(consumer)
    h = {"Api-Key": user_token}
    resp = await query.post(f"/v1/errors/{a['error_id']}/merge", json={"ids": [b["error_id"]]}, headers=h)
    assert resp.status == 200
    # Version 2 gives these notices the fingerprints version 1 gave them; with no window at all, the
    # mapping still says where they go (not their derived ids, one of which was merged away).
    await configure(query, gateway, consumer, project, user_token, grouping_version=2, grouping_window_days=0)
    again = await report(gateway, project, "kept together", "KeptTwoError")
    await drain(consumer)
    assert again["error_id"] == b["error_id"]  # the id the client knows; it resolves to the target
    assert await project_errors(pool, project) == {a["error_id"]: 3}
