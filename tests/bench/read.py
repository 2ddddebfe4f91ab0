"""Read side: list and stats latency with a million notices in ten thousand errors.

Seeding goes through the worker's own write statement (`store.WRITE`: notices, the hourly series and
the errors upsert) without HTTP: first one notice per error with `store.write_batch` (COPY from here),
then the bulk staged by PostgreSQL itself from those errors (generate_series into the staging table,
then the same statement), so a million notices take seconds of server time instead of minutes of
client encoding. Bodies are slimmed to one frame: the endpoints measured never return them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from services.worker import pipeline, store
from services.worker.pipeline import COLUMNS
from shared import ids
from tests.bench import fill, wrk
from tests.bench.payloads import Request
from tests.bench.stack import Stack

# Per error: every staging column but the three each notice gets anew (id, received_at, location_id).
_ERROR_COLUMNS = tuple(c for c in COLUMNS if c not in ("id", "received_at", "location_id"))
_KEEP = [COLUMNS.index(c) for c in _ERROR_COLUMNS]

BENCH_ERRORS = """
CREATE TEMP TABLE IF NOT EXISTS bench_errors AS
SELECT 0 AS k, {cols} FROM tmp_notices WITH NO DATA
"""

# $1 notices, $2 now (ms), $3 span (ms), $4 errors. Error k is picked with a skew (a few errors get most
# notices); a notice's id is a UUIDv7 of its received_at, as the gateway makes them.
STAGE = """
INSERT INTO tmp_notices (id, received_at, location_id, {cols})
SELECT (lpad(to_hex(s.ms), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || '8'
        || substr(md5(random()::text), 1, 15))::uuid,
       to_timestamp(s.ms / 1000.0), gen_random_uuid(), {ecols}
FROM (SELECT $2::bigint - floor(random() * $3)::bigint AS ms,
             least($4 - 1, floor($4 * power(random(), 3)))::int AS k
      FROM generate_series(1, $1::int)) s
JOIN bench_errors e ON e.k = s.k
"""


def _slim(t: fill.Template) -> fill.Template:
    n = dict(t.notice)
    n["exceptions"] = [{**e, "frames": e["frames"][:1]} for e in n["exceptions"]]
    for k in ("params", "session", "cgi"):
        n.pop(k, None)
    return fill.Template(n, t.fp, t.eid, b"")


async def seed(
    stack: Stack, errors: int, notices: int, days: int = 14, chunk: int = 20_000, connections: int = 2
) -> float:
    """Store `notices` notices over `errors` errors received in the last `days` days; returns seconds."""
    assert stack.project is not None
    tpls = [_slim(t) for t in fill.templates(stack.project, errors, with_raw=False)]
    t0 = time.monotonic()
    now_ms = int(time.time() * 1000) - 60_000
    span = days * 86_400_000
    first = [
        pipeline.row(
            ids.uuid7(now_ms - (k * 7919) % span),
            uuid.uuid4(),
            stack.project.id,
            t.eid,
            t.fp,
            1,
            t.notice,
            None,
            None,
        )
        for k, t in enumerate(tpls)
    ]
    per_error = [(k, *(row[i] for i in _KEEP)) for k, row in enumerate(first)]

    async def shard(i: int, count: int) -> None:
        # Each connection writes its own errors: two transactions upserting the same error row would
        # wait for each other's commit.
        mine = [(k // connections, *rest) for k, *rest in per_error if k % connections == i]
        conn = await stack.connect()
        try:
            await store.init_connection(conn)
            await conn.execute(BENCH_ERRORS.format(cols=", ".join(_ERROR_COLUMNS)))
            await conn.copy_records_to_table("bench_errors", records=mine, columns=("k", *_ERROR_COLUMNS))
            if i == 0:
                for k in range(0, len(first), 5000):
                    await store.write_batch(conn, first[k : k + 5000])
            stage = STAGE.format(
                cols=", ".join(_ERROR_COLUMNS), ecols=", ".join(f"e.{c}" for c in _ERROR_COLUMNS)
            )
            done = 0
            while done < count:
                n = min(chunk, count - done)
                await _stage_and_write(conn, stage, n, now_ms, span, len(mine))
                done += n
        finally:
            await conn.close()

    bulk = max(0, notices - len(first))
    per = bulk // connections
    await asyncio.gather(
        *(shard(i, per + (bulk - per * connections if i == 0 else 0)) for i in range(connections))
    )
    conn = await stack.connect()
    try:
        # What autovacuum would have done by now: a million upserts leave the errors table mostly dead
        # row versions, which a live system never sees all at once.
        await conn.execute("VACUUM (ANALYZE) errors, error_hourly")
        await conn.execute("ANALYZE notices")
        stored = await conn.fetchval("SELECT count(*) FROM notices")
        errs = await conn.fetchval("SELECT count(*) FROM errors")
    finally:
        await conn.close()
    if stored != notices or errs != errors:
        raise RuntimeError(f"seeded {stored} notices in {errs} errors, wanted {notices} in {errors}")
    return time.monotonic() - t0


async def _stage_and_write(
    conn: asyncpg.Connection, stage: str, n: int, now_ms: int, span: int, errors: int
) -> Any:
    async with conn.transaction():
        await conn.execute(stage, n, now_ms, span, errors)
        return await conn.fetchrow(store.WRITE, *store.mapping_arrays([]))


async def error_ids(stack: Stack, limit: int) -> list[int]:
    conn = await stack.connect()
    try:
        rows = await conn.fetch("SELECT id FROM errors ORDER BY random() LIMIT $1", limit)
    finally:
        await conn.close()
    return [r["id"] for r in rows]


@dataclass
class Endpoint:
    name: str
    route: str
    requests_file: Path | None  # None: not measured
    note: str = ""


async def endpoints(stack: Stack, base: str, workdir: Path, variants: int) -> list[Endpoint]:
    """The read endpoints to measure, each probed once; a route that does not answer 200 is noted."""
    headers = {"Api-Key": stack.user_token}
    ids = await error_ids(stack, variants)
    pages = max(1, 10_000 // 25)
    candidates = [
        (
            "list",
            "GET /v1/errors (random page of the 10,000 errors)",
            [
                Request("GET", f"/v1/errors?page={1 + (i * 37) % min(pages, 40)}", headers, b"")
                for i in range(variants)
            ],
        ),
        (
            "stats",
            "GET /v1/errors/:id/stats (random error)",
            [Request("GET", f"/v1/errors/{i}/stats", headers, b"") for i in ids],
        ),
        (
            "healthz",
            "GET /healthz (ceiling: the same process, no database)",
            [Request("GET", "/healthz", {}, b"")],
        ),
    ]
    out = []
    async with aiohttp.ClientSession() as http:
        for name, route, reqs in candidates:
            async with http.get(base + reqs[0].path, headers=reqs[0].headers) as resp:
                status = resp.status
                await resp.read()
            if status == 200:
                out.append(Endpoint(name, route, wrk.write_requests(workdir / f"read-{name}.lua", reqs)))
            elif status in (404, 405):
                out.append(Endpoint(name, route, None, "not yet available"))
            else:
                out.append(Endpoint(name, route, None, f"answered HTTP {status}"))
    return out
