"""The project's default environment without moving stored errors (issue 18).

A notice whose protocol carries no environment gets its project's `default_environment` setting
("production" unless changed) in the pure step (pipeline.raw_rows). Errors stored before that setting
existed have environment "" and their ids derive from it: so before a batch is written, its rows given
the default are looked up, one query per batch, by the id their error would have had environment-less;
a row whose environment-less error exists is attached to it (environment "" and that error's id), so an
old error stays findable and keeps counting, and only errors never seen before start in the default.
"""

from __future__ import annotations

import asyncpg

from services.worker.pipeline import COLUMNS, PROJECT_ID, Batch
from shared import ids

ERROR_ID = COLUMNS.index("error_id")
ENVIRONMENT = COLUMNS.index("environment")
FINGERPRINT = COLUMNS.index("fingerprint")
BODY = COLUMNS.index("body")

FIND = "SELECT id FROM errors WHERE id = ANY($1::bigint[]) AND environment = ''"


async def adopt(pool: asyncpg.Pool, batch: Batch) -> int:
    """Attach the batch's defaulted rows to their environment-less errors where those exist; returns
    how many rows were attached."""
    if not batch.defaulted:
        return 0
    legacy = {
        i: ids.error_id(batch.rows[i][PROJECT_ID], "", batch.rows[i][FINGERPRINT]) for i in batch.defaulted
    }
    async with pool.acquire() as conn:
        found = {r["id"] for r in await conn.fetch(FIND, sorted(set(legacy.values())))}
    attached = 0
    for i, eid in legacy.items():
        if eid in found:
            row = list(batch.rows[i])
            row[ENVIRONMENT], row[ERROR_ID] = "", eid
            if isinstance(row[BODY], dict):
                row[BODY] = {**row[BODY], "environment": ""}
            batch.rows[i] = tuple(row)
            attached += 1
    return attached
