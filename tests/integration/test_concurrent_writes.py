"""Workers writing batches that share errors at the same time never deadlock, and count every notice once.

Every worker reads every shard, so two batches in flight often touch the same `errors` and
`error_hourly` rows, and a reclaimed entry can be written by the worker that reclaimed it while its
first reader's batch is still in flight: the same notices in two transactions. Each batch takes its
row locks in one order (store.WRITE's ORDER BYs). Here two connections write the same batches
(different sizes and error mixes) at once, in opposite row orders; without the ORDER BY on the
notices insert this deadlocked.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg

from services.worker import pipeline, store
from shared import ids, stream
from tests.bench.fill import raw_notice, templates
from tests.bench.stack import Project
from tests.conftest import make_project

ROUNDS = 12


def batches(project: Project, seed: int) -> list[list[tuple]]:  # type: ignore[type-arg]
    """Batches of 50..400 notices over random subsets of 120 errors, spread over three hours."""
    rng = random.Random(seed)
    tpls = templates(project, 120)
    now = ids.uuid7_ms(ids.uuid7())
    out = []
    for b in range(ROUNDS):
        subset = rng.sample(tpls, rng.randint(5, 120))
        entries = []
        for i in range(rng.randint(50, 400)):
            ms = now - rng.randint(0, 3 * 3600 * 1000)
            notice = raw_notice(project, subset[i % len(subset)], ms)
            entries.append((f"{seed}-{b}-{i}".encode(), stream.encode(notice)))
        rows = pipeline.process(entries, lambda _: pipeline.Rules()).rows
        rng.shuffle(rows)
        out.append(rows)
    return out


async def test_concurrent_batches_on_shared_errors_never_deadlock(pool: asyncpg.Pool) -> None:
    info = await make_project(pool)
    project = Project(info.id, info.key)
    shared = batches(project, 1)
    work = [shared, [rows[::-1] for rows in shared]]  # the same notices, in opposite orders

    async def writer(mine: list[list[tuple]]) -> int:  # type: ignore[type-arg]
        stored = 0
        async with pool.acquire() as conn:
            for rows in mine:
                stored += await store.write_batch(conn, rows)  # DeadlockDetectedError would raise here
        return stored

    stored = await asyncio.wait_for(asyncio.gather(*(writer(w) for w in work)), 120)
    total = sum(len(rows) for rows in shared)
    assert sum(stored) == total  # each notice inserted by one of the two, counted once
    async with pool.acquire() as conn:
        counted = await conn.fetchval("SELECT sum(notices_count) FROM errors WHERE project_id = $1", info.id)
        hourly = await conn.fetchval(
            "SELECT sum(h.count) FROM error_hourly h JOIN errors e ON e.id = h.error_id WHERE e.project_id = $1",
            info.id,
        )
    assert counted == hourly == total
