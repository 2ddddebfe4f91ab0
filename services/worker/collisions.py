"""Error-id collisions: a derived 53-bit id that already belongs to another group.

An error's id is a hash of (project, environment, fingerprint) cut to 53 bits, so two groups can
share one (about 5e-5 odds at a million errors). The errors upsert then refuses to merge them, but
the notice would still carry the id and show up under the other group, maybe another project's. So
before a batch is written, the ids it uses are looked up once; a row whose group differs from the
stored one gets the next id of its own group (`ids.error_id` over the fingerprint with a suffix),
the same one every time, so the group's later notices land together.
"""

from __future__ import annotations

import logging
from typing import Any

from services.worker.pipeline import COLUMNS, Row
from shared import ids
from shared.db import Conn

logger = logging.getLogger(__name__)

_EID = COLUMNS.index("error_id")
_PID = COLUMNS.index("project_id")
_ENV = COLUMNS.index("environment")
_FP = COLUMNS.index("fingerprint")
MAX_TRIES = 8

LOOKUP = "SELECT id, project_id, environment, fingerprint FROM errors WHERE id = ANY($1::bigint[])"


def alternate(project_id: int, environment: str, fingerprint: str, attempt: int) -> int:
    """The group's id after `attempt` collisions (attempt 0: the plain derived id)."""
    return ids.error_id(project_id, environment, fingerprint if attempt == 0 else f"{fingerprint}#{attempt}")


async def resolve(conn: Conn, rows: list[Row]) -> list[Row]:
    """The rows with every colliding error id replaced by its group's own; rows unchanged otherwise."""
    if not rows:
        return rows
    owners: dict[int, tuple[Any, Any, Any]] = {}
    wanted = {row[_EID] for row in rows}
    for _ in range(MAX_TRIES):
        missing = [i for i in wanted if i not in owners]
        if missing:
            for r in await conn.fetch(LOOKUP, missing):
                owners[r["id"]] = (r["project_id"], r["environment"], r["fingerprint"])
        out: list[Row] = []
        wanted = set()
        changed = False
        for row in rows:
            group = (row[_PID], row[_ENV], row[_FP])
            eid = row[_EID]
            attempt = 0
            # Follow this group's chain of ids past every one owned by another group.
            while eid in owners and owners[eid] != group and attempt < MAX_TRIES:
                attempt += 1
                eid = alternate(*group, attempt)
            if eid != row[_EID]:
                changed = True
                logger.warning(
                    "error id collision project=%s fingerprint=%s id=%s -> %s",
                    row[_PID],
                    row[_FP],
                    row[_EID],
                    eid,
                )
                row = (*row[:_EID], eid, *row[_EID + 1 :])
            wanted.add(eid)
            out.append(row)
        if not changed or all(i in owners for i in wanted):
            return out
        rows = out  # the new ids may be taken too: look them up and go round again
    return rows
