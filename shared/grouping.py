"""Error ids and locks of grouping that the worker (which groups each batch) and the query service
(which merges and splits) must agree on."""

from __future__ import annotations

from shared import ids

MAX_TRIES = 8  # ids a group may try before its collisions are given up on

GROUPING_LOCK = 0x67726F75  # advisory lock space (key 1) of projects' grouping; key 2: lock_slot()
# Slots, not project ids: a batch holds at most this many locks whatever number of projects it holds
# (PostgreSQL's lock table has max_locks_per_transaction x max_connections entries, 6,400 by default).
LOCK_SLOTS = 256


def lock_slot(project_id: int) -> int:
    """The advisory lock a project's batches share and its merges and splits take alone."""
    return project_id % LOCK_SLOTS


def alternate(project_id: int, environment: str, fingerprint: str, attempt: int) -> int:
    """The group's id after `attempt` collisions (attempt 0: the plain derived id)."""
    return ids.error_id(project_id, environment, fingerprint if attempt == 0 else f"{fingerprint}#{attempt}")
