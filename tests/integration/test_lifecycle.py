"""Error lifecycle, dashboard reads and retention, against the real stack."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid

from services.worker import maintenance
from tests.conftest import drain
from tests.integration.test_exceptioner import notice, post


def auth(token: str) -> dict[str, str]:
    return {"Api-Key": token}


async def test_resolve_on_deploy_and_revisions(gateway, query, consumer, project, user_token):
    _, prod = await post(gateway, project.key, notice(exception="DeployProdError"))
    _, staging = await post(gateway, project.key, notice(exception="DeployStagingError", mode="staging"))
    await drain(consumer)
    resp = await query.post(
        "/v1/deploys",
        headers=auth(user_token),
        json={
            "environment": "production",
            "revision": "abc123",
            "project_id": project.id,
            "resolve_errors": True,
        },
    )
    assert resp.status == 201 and (await resp.json())["resolved_errors"] == 1
    error = await (await query.get(f"/v1/errors/{prod['error_id']}", headers=auth(user_token))).json()
    assert error["resolved"] is True and error["resolved_at"] is not None
    other = await (await query.get(f"/v1/errors/{staging['error_id']}", headers=auth(user_token))).json()
    assert other["resolved"] is False  # another environment is left alone

    # A notice after the deploy reopens it as a regression, seen in the new revision.
    await post(gateway, project.key, notice(exception="DeployProdError"))
    await drain(consumer)
    error = await (await query.get(f"/v1/errors/{prod['error_id']}", headers=auth(user_token))).json()
    assert error["resolved"] is False and error["regressed_at"] is not None
    assert error["first_seen_revision"] is None and error["last_seen_revision"] == "abc123"
    await query.post(
        "/v1/deploys",
        headers=auth(user_token),
        json={"environment": "production", "revision": "def456", "project_id": project.id},
    )
    await post(gateway, project.key, notice(exception="DeployProdError"))
    await drain(consumer)
    error = await (await query.get(f"/v1/errors/{prod['error_id']}", headers=auth(user_token))).json()
    assert error["last_seen_revision"] == "def456" and error["notices_count"] == 3
    resp = await query.post(
        "/v1/deploys",
        headers=auth(user_token),
        json={"environment": "production", "project_id": project.id, "resolve_errors": "yes"},
    )
    assert resp.status == 422


async def test_filters_and_sorts(gateway, query, consumer, project, user_token):
    await post(gateway, project.key, notice(exception="FilterAError", message="user 42 not found"))
    for _ in range(3):
        await post(gateway, project.key, notice(exception="FilterBError", message="timeout talking to db"))
    await post(gateway, project.key, notice(exception="FilterCError", message="boom", mode="staging"))
    await drain(consumer)
    base = f"/v1/errors?project_id={project.id}"

    async def names(query_string: str) -> list[str]:
        resp = await query.get(base + query_string, headers=auth(user_token))
        assert resp.status == 200, await resp.text()
        return [e["exception"] for e in await resp.json()]

    assert await names("") == ["FilterCError", "FilterBError", "FilterAError"]
    assert (await names("&sort=notices_count"))[0] == "FilterBError"
    assert await names("&sort=created") == ["FilterCError", "FilterBError", "FilterAError"]
    assert await names("&environment=staging") == ["FilterCError"]
    assert await names("&exception=FilterAError") == ["FilterAError"]
    assert await names("&q=TIMEOUT") == ["FilterBError"]
    assert await names("&q=filtera") == ["FilterAError"]
    assert await names("&q=100%25") == []  # a literal %, not a wildcard
    assert await names("&type=error") == ["FilterCError", "FilterBError", "FilterAError"]
    assert await names("&type=log") == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    past = "2001-01-01T00:00:00Z"
    assert await names(f"&since={future}") == []
    assert await names(f"&until={past}") == []
    assert len(await names(f"&since={past}&until={future}")) == 3
    for bad in ("&sort=random", "&since=yesterday"):
        resp = await query.get(base + bad, headers=auth(user_token))
        assert resp.status == 422, bad


async def test_stats_series_and_totals(gateway, query, consumer, project, user_token):
    for _ in range(4):
        _, body = await post(gateway, project.key, notice(exception="StatsError"))
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{body['error_id']}/stats?interval=hour", headers=auth(user_token))
    assert resp.status == 200
    stats = await resp.json()
    assert stats["total"] == 4 and len(stats["series"]) in (24, 25)
    assert stats["series"][-1]["count"] == 4 and all(p["count"] == 0 for p in stats["series"][:-1])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", p["t"]) for p in stats["series"])
    resp = await query.get(f"/v1/errors/{body['error_id']}/stats?interval=day", headers=auth(user_token))
    day = await resp.json()
    assert day["series"][-1]["count"] == 4 and day["series"][-1]["t"].endswith("T00:00:00Z")
    for bad in ("interval=week", "since=2001-01-01T00:00:00Z&interval=hour"):
        resp = await query.get(f"/v1/errors/{body['error_id']}/stats?{bad}", headers=auth(user_token))
        assert resp.status == 422, bad
    assert (await query.get("/v1/errors/1/stats", headers=auth(user_token))).status == 404

    resp = await query.get(f"/v1/stats?project_id={project.id}", headers=auth(user_token))
    [totals] = await resp.json()
    assert totals == {
        "project_id": project.id,
        "name": project.name,
        "errors": 1,
        "unresolved": 1,
        "notices": 4,
        "notices_24h": 4,
    }


async def test_keyset_pages_of_a_large_error(gateway, query, consumer, project, user_token):
    ids = []
    for _ in range(25):
        _, body = await post(gateway, project.key, notice(exception="DeepError"))
        ids.append(body["id"])
    await drain(consumer)
    seen: list[str] = []
    url = f"/v1/errors/{body['error_id']}/notices?per_page=10"
    for _ in range(5):  # bounded walk along rel="next"
        resp = await query.get(url, headers=auth(user_token))
        assert resp.status == 200
        seen += [n["id"] for n in await resp.json()]
        match = re.search(r'<([^>]+)>; rel="next"', resp.headers["Link"])
        if not match:
            break
        assert "cursor=" in match.group(1)
        url = match.group(1).split("://", 1)[1].split("/", 1)[1]
        url = "/" + url
    assert seen == list(reversed(ids))  # newest first, each exactly once
    resp = await query.get(f"/v1/errors/{body['error_id']}/notices?cursor=garbage", headers=auth(user_token))
    assert resp.status == 422


async def test_per_error_cap_keeps_first_and_most_recent(gateway, query, consumer, project, user_token, pool):
    await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"max_notices_per_error": 10}},
        headers=auth(user_token),
    )
    ids = []
    for _ in range(130):
        _, body = await post(gateway, project.key, notice(exception="CappedError"))
        ids.append(body["id"])
    await drain(consumer)
    async with pool.acquire() as conn:
        result = await maintenance.run(conn)
        kept = [
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM notices WHERE error_id = $1 ORDER BY received_at, id", body["error_id"]
            )
        ]
    assert result["capped_notices"] >= 120  # other tests' errors in this database may be capped too
    assert kept == ids[:5] + ids[-5:]  # the first few and the most recent
    error = await (await query.get(f"/v1/errors/{body['error_id']}", headers=auth(user_token))).json()
    assert error["notices_count"] == 130 and error["stored_notices_count"] == 10  # the count stays exact


async def test_retention_drops_old_partitions_and_expires_per_project(
    gateway, query, consumer, project, user_token, pool
):
    await post(gateway, project.key, notice(exception="RetainedError"))
    await drain(consumer)
    async with pool.acquire() as conn:
        old_day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).date()
        await conn.execute("SELECT faultline_ensure_partitions($1, 1)", old_day)
        name = f"notices_p{old_day:%Y%m%d}"
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        result = await maintenance.run(conn)
        assert name in result["partitions_dropped"]
        assert not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        # A project with a 1-day retention loses notices older than a day, the others keep theirs.
        await conn.execute(
            "UPDATE projects SET settings = settings || '{\"retention_days\": 1}' WHERE id = $1", project.id
        )
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        result = await maintenance.run(conn, now=later)
        assert result["expired_notices"] >= 1
        left = await conn.fetchval("SELECT count(*) FROM notices WHERE project_id = $1", project.id)
        assert left == 0
        # Partitions ahead exist so tomorrow's notices have somewhere to go.
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"notices_p{tomorrow:%Y%m%d}")


async def test_same_millisecond_errors_list_newest_first(gateway, query, consumer, project, user_token):
    """Errors whose notices were accepted in the same millisecond list in acceptance order.

    Concurrent posts are minted within a millisecond or two by one gateway; the notice id each 201
    answers is the acceptance order (one monotonic UUIDv7 sequence per process).
    """
    base = f"/v1/errors?project_id={project.id}&per_page=100"
    shared_ms = 0
    accepted: list[tuple[str, str]] = []  # (notice id, exception), every round so far
    for round_ in range(6):
        names = [f"SameMs{round_}x{i}Error" for i in range(8)]
        answers = await asyncio.gather(*(post(gateway, project.key, notice(exception=n)) for n in names))
        accepted += [(body["id"], name) for (_, body), name in zip(answers, names, strict=True)]
        millis = [uuid.UUID(body["id"]).int >> 80 for _, body in answers]
        shared_ms += len(millis) - len(set(millis))
        await drain(consumer)
        newest_first = [name for _, name in sorted(accepted, reverse=True)]
        for sort in ("", "&sort=created"):
            resp = await query.get(base + sort, headers=auth(user_token))
            assert resp.status == 200, await resp.text()
            assert [e["exception"] for e in await resp.json()] == newest_first, sort
    assert shared_ms > 0, "no two notices shared a millisecond: the tie was never exercised"
