"""Stream entries and stored rows made without HTTP: the worker benchmark's backlog and the read side's
million notices.

The backlog is what a gateway queues (raw Exceptioner bodies), but without the fingerprint that
gateway adds for its 201: the workers decode *and* group every notice, the harder case, which is
what every other protocol costs them."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared import ids, stream
from shared.fingerprint import fingerprint
from shared.protocols.exceptioner import parse_notice
from shared.stream import Layout, Publisher, RawNotice
from tests.bench.payloads import exceptioner
from tests.bench.stack import Project


@dataclass(frozen=True)
class Template:
    """One distinct error: its canonical notice, fingerprint, error id and submitted body."""

    notice: dict[str, Any]
    fp: str
    eid: int
    raw: bytes


def templates(project: Project, errors: int, with_raw: bool = True) -> list[Template]:
    out = []
    for v in range(errors):
        body = exceptioner(project, v, 1).body
        notice = parse_notice(orjson.loads(body))
        # Distinct controllers per variant give distinct stacks, hence distinct errors.
        fp = fingerprint(notice)
        out.append(
            Template(
                dict(notice),
                fp,
                ids.error_id(project.id, notice["environment"], fp),
                body if with_raw else b"",
            )
        )
    return out


def raw_notice(project: Project, t: Template, ms: int) -> RawNotice:
    """The entry a gateway queues for the template's body, received at `ms`."""
    return RawNotice("exceptioner", str(ids.uuid7(ms)), str(uuid.uuid4()), project.id, t.raw)


def entries(
    project: Project, tpls: list[Template], count: int, seed: int = 1
) -> Iterator[dict[bytes, bytes]]:
    """Stream fields for `count` notices spread uniformly at random over the templates, received now.

    Uniform is the hard case for the worker: a batch touches as many distinct errors as it can.
    """
    rng = random.Random(seed)
    now = ids.uuid7_ms(ids.uuid7())
    for i in range(count):
        yield stream.encode(raw_notice(project, tpls[rng.randrange(len(tpls))], now + i // 1000))


async def fill_stream(
    redis: aioredis.Redis,
    layout: Layout,
    project: Project,
    tpls: list[Template],
    count: int,
    chunk: int = 1000,
) -> None:
    """Queue `count` notices with the gateway's own publisher (in the project's shard), `chunk` at a time."""
    publisher = Publisher(redis, layout, backlog_limit=1 << 40)
    task = asyncio.create_task(publisher.run())
    try:
        batch: list[dict[bytes, bytes]] = []
        for fields in entries(project, tpls, count):
            batch.append(fields)
            if len(batch) >= chunk:
                await publisher.publish(batch, project_id=project.id)
                batch = []
        if batch:
            await publisher.publish(batch, project_id=project.id)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await publisher.aclose()  # its own connection: not in the client's pool
