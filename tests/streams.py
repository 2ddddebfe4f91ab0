"""The stream keys of a test's settings: every shard's stream and dead-letter stream, and the legacy key."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings
from shared.stream import Layout, Shard


def layout(settings: Settings) -> Layout:
    return Layout(settings.stream_prefix, settings.stream_shards)


def shard_of(settings: Settings, project_id: int) -> Shard:
    """The shard the gateway queues a project's notices in."""
    return layout(settings).for_project(project_id)


def every_key(settings: Settings) -> list[str]:
    """What a test deletes when it is done: each shard's stream and dead letters, legacy ones too."""
    return [key for shard in layout(settings).every for key in (shard.stream, shard.dead)]


async def dead_letters(redis: Any, settings: Settings) -> int:
    """Letters over every shard's dead-letter stream."""
    return sum([await redis.xlen(shard.dead) for shard in layout(settings).every])


async def queued(redis: Any, settings: Settings) -> int:
    """Entries over every shard's stream."""
    return sum([await redis.xlen(shard.stream) for shard in layout(settings).every])
