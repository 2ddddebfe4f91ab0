"""Which error each row of a batch goes to: the groupings table first, then the derived id.

One statement per batch (never one per row) reads the groupings rows of every fingerprint the batch
holds (and of the previous-version fingerprints inside a transition window) together with the errors
rows its derived ids name. A row then goes, in this order, to:

1. the error its previous-version fingerprint maps to (transition window: nothing existing splits);
2. the error its fingerprint maps to (merged fingerprints land in the merge target);
3. its derived id (`ids.error_id`) -- unless that id belongs to another group: an error's id is a
   hash cut to 53 bits, so two groups can share one (about 5e-5 odds at a million errors); such a row
   gets the next id of its own group (the fingerprint with a suffix), the same one every time.

A fingerprint the table does not know yet gets its row (store.WRITE inserts them), and so does a
window's previous-version fingerprint: the gateway answers a notice inside a window with the previous
version's id (shared.fingerprint.answering_version), which must resolve to where it went.

Before the look-up a batch takes a shared advisory lock per project it holds (GROUPING_LOCK, one of
LOCK_SLOTS per project, in slot order), kept until it commits; a merge or split takes its project's lock exclusively. So a
batch either commits before a merge moves anything (and its notices move with the rest) or looks up
after the merge committed. Row locks would do the same but starve a merge under steady ingest (share
lockers keep joining while FOR UPDATE waits); PostgreSQL queues a waiting exclusive advisory lock
ahead of later shared requests, so a merge waits for the batches in flight only.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from services.worker.pipeline import COLUMNS, Row
from shared import ids
from shared.db import Conn
from shared.grouping import GROUPING_LOCK, MAX_TRIES, alternate, lock_slot

logger = logging.getLogger(__name__)

_EID = COLUMNS.index("error_id")
_PID = COLUMNS.index("project_id")
_ENV = COLUMNS.index("environment")
_FP = COLUMNS.index("fingerprint")
_GV = COLUMNS.index("grouping_version")
_PREV = COLUMNS.index("previous_fingerprint")
_PGV = COLUMNS.index("previous_version")
Group = tuple[int, str, str]  # project, environment, fingerprint
LOCK_PROJECTS = "SELECT pg_advisory_xact_lock_shared($1::int, s) FROM unnest($2::int[]) AS s ORDER BY s"


LOOKUP = """
WITH k AS (
    SELECT DISTINCT * FROM unnest($2::int[], $3::text[], $4::text[]) AS k(project_id, environment, fingerprint)
), g AS (
    SELECT g.project_id, g.environment, g.fingerprint, g.grouping_version, g.error_id
    FROM groupings g JOIN k USING (project_id, environment, fingerprint)
)
SELECT true AS mapped, project_id, environment, fingerprint, grouping_version, error_id AS id FROM g
UNION ALL
SELECT false, project_id, environment, fingerprint, grouping_version, id FROM errors WHERE id = ANY($1::bigint[])
"""
OWNERS = "SELECT id, project_id, environment, fingerprint FROM errors WHERE id = ANY($1::bigint[])"


class Mapping(NamedTuple):
    """A groupings row the batch adds (store.WRITE inserts it with the notices)."""

    project_id: int
    environment: str
    fingerprint: str
    grouping_version: int
    error_id: int
    derived_id: int


async def resolve(conn: Conn, rows: list[Row]) -> tuple[list[Row], list[Mapping]]:
    """The rows with their error ids decided, and the groupings rows to add for them."""
    if not rows:
        return rows, []
    groups: set[Group] = set()
    for row in rows:
        groups.add((row[_PID], row[_ENV], row[_FP]))
        if row[_PREV] is not None:
            groups.add((row[_PID], row[_ENV], row[_PREV]))
    keys = sorted(groups)
    await conn.execute(LOCK_PROJECTS, GROUPING_LOCK, sorted({lock_slot(k[0]) for k in keys}))
    found = await conn.fetch(
        LOOKUP,
        list({row[_EID] for row in rows}),
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    mapped: dict[Group, tuple[int, int]] = {}  # group -> (grouping version, error id), newest version
    owners: dict[int, Group] = {}
    for r in found:
        group = (r["project_id"], r["environment"], r["fingerprint"])
        if r["mapped"]:
            if group not in mapped or r["grouping_version"] > mapped[group][0]:
                mapped[group] = (r["grouping_version"], r["id"])
        else:
            owners[r["id"]] = group
    out: list[Row] = []
    added: dict[tuple[Group, int], Mapping] = {}

    def adopt(group: Group, version: int, eid: int) -> None:
        """Map a group the table does not know yet to `eid` (later rows of the batch follow it)."""
        if group not in mapped:
            mapped[group] = (version, eid)
            added[(group, version)] = Mapping(*group, version, eid, ids.error_id(*group))

    unmapped: list[int] = []  # indexes into out of rows that go to their derived id
    for row in rows:
        group = (row[_PID], row[_ENV], row[_FP])
        previous = (row[_PID], row[_ENV], row[_PREV]) if row[_PREV] is not None else None
        target = mapped.get(previous) if previous is not None else None
        if target is None:
            target = mapped.get(group)
        if target is None:
            unmapped.append(len(out))
            out.append(row)
            continue
        if target[1] != row[_EID]:
            row = (*row[:_EID], target[1], *row[_EID + 1 :])
        out.append(row)
        adopt(group, row[_GV], target[1])  # the new version's fingerprint joins the old one's error
        if previous is not None:
            adopt(previous, row[_PGV], target[1])
    if unmapped:
        await _avoid_collisions(conn, out, unmapped, owners)
        for i in unmapped:
            row = out[i]
            adopt((row[_PID], row[_ENV], row[_FP]), row[_GV], row[_EID])
            if row[_PREV] is not None:
                # the gateway answered a window's notice with the previous version's id: it must resolve
                adopt((row[_PID], row[_ENV], row[_PREV]), row[_PGV], row[_EID])
    return out, sorted(added.values())


async def _avoid_collisions(conn: Conn, rows: list[Row], which: list[int], owners: dict[int, Group]) -> None:
    """Give each row at `which` whose derived id another group owns its group's next free id."""
    for _ in range(MAX_TRIES):
        changed = False
        wanted: set[int] = set()
        for i in which:
            row = rows[i]
            group = (row[_PID], row[_ENV], row[_FP])
            eid, attempt = row[_EID], 0
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
                rows[i] = (*row[:_EID], eid, *row[_EID + 1 :])
            wanted.add(eid)
        missing = [e for e in wanted if e not in owners]
        if not changed or not missing:
            return
        for r in await conn.fetch(OWNERS, missing):  # the new ids may be taken too: look and go round
            owners[r["id"]] = (r["project_id"], r["environment"], r["fingerprint"])
