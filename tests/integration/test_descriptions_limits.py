"""User descriptions (issue 13, finding 8): counted against the rate limit, capped in size, orphans pruned."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson

from services.worker import maintenance
from tests.conftest import drain, reload_keys


def _path(ref: str) -> str:
    return f"/api/v2/events/by-ref/{ref}/user-description"


async def test_descriptions_count_against_the_rate_limit(gateway, query, consumer, project, user_token):
    await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"rate_limit_per_minute": 3}},
        headers={"Api-Key": user_token},
    )
    await reload_keys(gateway, query)
    auth = {"Authorization": f"Bearer {project.key}"}
    statuses = []
    for _ in range(5):
        resp = await gateway.post(_path(uuid.uuid4().hex), json={"description": "it broke"}, headers=auth)
        statuses.append(resp.status)
        assert await resp.read() == b"" or resp.status == 202
    assert statuses == [202, 202, 202, 429, 429]
    assert resp.headers["Retry-After"].isdigit()
    await drain(consumer)


async def test_a_description_is_capped_in_size_and_depth(gateway, consumer, project):
    auth = {"Authorization": f"Bearer {project.key}"}
    big = {"description": "x" * (64 * 1024 + 1)}
    resp = await gateway.post(_path(uuid.uuid4().hex), data=orjson.dumps(big), headers=auth)
    assert resp.status == 413 and await resp.read() == b""  # bodiless, as the real server answers
    deep = b'{"description": "d", "data": ' + b'{"k":' * 200 + b"1" + b"}" * 200 + b"}"
    resp = await gateway.post(_path(uuid.uuid4().hex), data=deep, headers=auth)
    assert resp.status == 400
    assert await drain(consumer) == 0


async def test_orphan_descriptions_are_pruned_after_the_retention_window(gateway, consumer, pool, project):
    auth = {"Authorization": f"Bearer {project.key}"}
    orphan, kept = uuid.uuid4().hex, uuid.uuid4().hex
    for ref in (orphan, kept):
        resp = await gateway.post(_path(ref), json={"description": "it broke"}, headers=auth)
        assert resp.status == 202
    resp = await gateway.post(
        "/api/v2/events", json={"type": "error", "message": "m", "reference_id": kept}, headers=auth
    )
    assert resp.status == 202
    await drain(consumer)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE projects SET settings = settings || '{\"retention_days\": 1}' WHERE id = $1", project.id
        )
        result = await maintenance.run(conn)  # within the window: both stay
        refs = {
            r["reference_id"]
            for r in await conn.fetch(
                "SELECT reference_id FROM user_descriptions WHERE project_id = $1", project.id
            )
        }
        assert refs == {orphan, kept}
        result = await maintenance.run(conn, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
        refs = {
            r["reference_id"]
            for r in await conn.fetch(
                "SELECT reference_id FROM user_descriptions WHERE project_id = $1", project.id
            )
        }
    assert result["orphan_descriptions"] >= 1
    assert orphan not in refs
