import os
import time
import uuid

import pytest

from shared import ids
from shared.ids import error_id, uuid7, uuid7_ms


@pytest.fixture(autouse=True)
def restore_clock_state(monkeypatch):
    """These tests mint ids at made-up times; the process's real ids must not inherit them."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_seq", 0)


def test_uuid7_is_versioned_time_ordered_and_monotonic_within_a_millisecond():
    now = time.time_ns() // 1_000_000
    ids = [uuid7(now) for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert uuid7_ms(ids[0]) == now
    assert uuid7_ms(ids[-1]) - now <= 2  # counter overflow borrows a millisecond at most


def test_clock_stepping_back_still_sorts_after():
    now = time.time_ns() // 1_000_000
    a = uuid7(now)
    b = uuid7(now - 1000)
    assert b > a


def test_error_id_is_stable_positive_and_javascript_safe():
    a = error_id(1, "production", "f" * 40)
    assert a == error_id(1, "production", "f" * 40)
    assert 0 < a < 2**53
    assert a != error_id(1, "staging", "f" * 40) != error_id(2, "production", "f" * 40)


def test_an_explicit_distant_time_does_not_pin_later_ids():
    future = uuid7(1_900_000_000_000_0)
    past = uuid7(1_700_000_000_000)
    assert uuid7_ms(past) == 1_700_000_000_000 and uuid7_ms(future) == 1_900_000_000_000_0
    ids = [uuid7() for _ in range(100)]
    assert ids == sorted(ids) and abs(uuid7_ms(ids[0]) - time.time_ns() // 1_000_000) < 1000


def test_a_forked_child_does_not_mint_its_parents_ids():
    ids.location_id()  # the pool is filled before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, " ".join(ids.location_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split())
    os.close(read)
    assert len(child) == 3
    assert child.isdisjoint({ids.location_id() for _ in range(3)})
