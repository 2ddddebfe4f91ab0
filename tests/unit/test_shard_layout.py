"""The shard layout: keys of one shard share a hash slot, shards spread evenly over a cluster's masters,
entry ids carry their shard."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from shared.stream import SLOTS, Layout, once_key, rate_key


def slot(key: str) -> int:
    return key_slot(key.encode())


@pytest.mark.parametrize("count", [1, 4, 16, 64])
def test_every_key_a_script_touches_is_in_its_shards_slot(count: int) -> None:
    layout = Layout("faultline", count)
    for project_id in range(50):
        shard = layout.for_project(project_id)
        keys = [shard.dead, shard.place(rate_key("faultline", project_id, 123_456_789))]
        keys.append(shard.place(once_key("faultline", project_id, "abc{de}f")))  # braces cannot move it
        assert {slot(k) for k in keys} == {slot(shard.stream)}


@pytest.mark.parametrize(("count", "masters"), [(16, 3), (16, 4), (64, 3), (30, 5)])
def test_shards_spread_evenly_over_masters_with_equal_slot_ranges(count: int, masters: int) -> None:
    per_master = Counter(slot(s.stream) * masters // SLOTS for s in Layout("faultline", count).shards)
    assert len(per_master) == masters and max(per_master.values()) - min(per_master.values()) <= 1


def test_entry_ids_name_their_shard_and_legacy_ids_stay_as_they_were() -> None:
    layout = Layout("p", 16)
    shard = layout.shards[7]
    tagged = shard.entry_id(b"1700000000000-3")
    assert tagged != b"1700000000000-3" and layout.split(tagged) == (shard, b"1700000000000-3")
    assert layout.split(b"1700000000000-3") == (layout.legacy, b"1700000000000-3")
    assert layout.legacy.stream == "p:notices" and layout.legacy.dead == "p:dead"
    grouped = layout.by_shard([tagged, layout.shards[2].entry_id(b"1-1"), shard.entry_id(b"2-2")])
    assert grouped == {shard: [b"1700000000000-3", b"2-2"], layout.shards[2]: [b"1-1"]}
