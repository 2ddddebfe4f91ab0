"""Readiness a balancer can use: each service's /readyz (and the worker's heartbeat) while a server it
depends on is really unreachable. A loopback TCP forwarder stands between the service and PostgreSQL or
Redis; cutting it closes every connection and refuses new ones, as a server that went away would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.app import create_app as create_gateway
from services.query.app import create_app as create_query
from shared.settings import Settings
from tests.conftest import make_project
from tests.faults.procs import ROOT, Service, service_env
from tests.integration.test_exceptioner import notice
from tests.streams import every_key, queued


class Cuttable:
    """A TCP forwarder on 127.0.0.1 to one server; `cut()` makes the server unreachable, `restore()` back."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        self._parts = parts
        self._target = (parts.hostname, parts.port)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The server's URL with this forwarder in its place."""
        auth = self._parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._transports):
            t.abort()
        self._transports.clear()
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_writer.transport}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass  # the other side went away (or was cut)
        finally:
            self._transports.discard(writer.transport)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def cuttable(url: str) -> AsyncIterator[Cuttable]:
    proxy = Cuttable(url)
    await proxy.restore()
    try:
        yield proxy
    finally:
        if proxy._server is not None:
            await proxy.cut()


@contextlib.asynccontextmanager
async def serving(app_factory: Callable[[Settings], object], settings: Settings) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(app_factory(settings)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__} did not hold within {timeout}s")
        await asyncio.sleep(0.1)


def own_streams(settings: Settings, **changes: str) -> Settings:
    return dataclasses.replace(settings, stream_prefix=f"flready-{uuid.uuid4().hex[:8]}", **changes)


async def test_gateway_stays_ready_and_ingests_while_postgres_is_down(settings, pool, redis):
    project = await make_project(pool)  # before start-up: the gateway's first key load has it
    async with cuttable(settings.database_url) as pg:
        s = own_streams(settings, database_url=pg.url)
        try:
            async with serving(create_gateway, s) as gateway:
                resp = await gateway.get("/readyz")
                assert resp.status == 200 and (await resp.json())["postgres"] == "ok"

                await pg.cut()
                resp = await gateway.get("/readyz")
                body = await resp.json()
                assert resp.status == 200, body
                assert body["status"] == "ready" and body["redis"] == "ok" and body["keys"] == "ok"
                assert body["postgres"].startswith("down")
                resp = await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})
                assert resp.status == 201, await resp.text()
                assert await queued(redis, s) == 1
                await pg.restore()  # a clean shutdown closes its pool
        finally:
            await redis.delete(*every_key(s))


async def test_gateway_is_unready_while_redis_is_down(settings, redis):
    async with cuttable(settings.redis_url) as rd:
        s = own_streams(settings, redis_url=rd.url)
        try:
            async with serving(create_gateway, s) as gateway:
                assert (await gateway.get("/readyz")).status == 200
                await rd.cut()
                resp = await gateway.get("/readyz")
                body = await resp.json()
                assert resp.status == 503, body
                assert body["status"] == "unavailable" and body["redis"].startswith("down")
                await rd.restore()

                async def ready_again() -> bool:
                    return (await gateway.get("/readyz")).status == 200

                await until(ready_again)
        finally:
            await redis.delete(*every_key(s))


async def test_query_is_unready_while_postgres_is_down_and_ready_after(settings):
    async with cuttable(settings.database_url) as pg:
        async with serving(create_query, dataclasses.replace(settings, database_url=pg.url)) as query:
            assert (await query.get("/readyz")).status == 200
            await pg.cut()
            resp = await query.get("/readyz")
            body = await resp.json()
            assert resp.status == 503, body
            assert body["status"] == "unavailable" and body["postgres"].startswith("down")
            assert body["redis"] == "ok"
            await pg.restore()

            async def ready_again() -> bool:
                return (await query.get("/readyz")).status == 200

            await until(ready_again)


async def probe(path: Path, *args: str) -> int:
    """What a container probe runs, as it runs it: a fresh process reading the heartbeat file."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.worker.health",
        "--file",
        str(path),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


@pytest.mark.e2e
async def test_worker_heartbeat_follows_the_consumer(settings, tmp_path):
    health = tmp_path / "worker-health.json"
    async with cuttable(settings.database_url) as pg:
        env = service_env(pg.url, settings.redis_url, FAULTLINE_HEALTH_FILE=str(health))
        worker = Service("services.worker", env, tmp_path / "worker.log").start()
        assert worker.proc is not None
        try:

            async def ready() -> bool:
                return await probe(health, "--ready") == 0

            async def unready_but_live() -> bool:
                return await probe(health, "--ready") == 1 and await probe(health) == 0

            await until(ready, 30)
            await pg.cut()  # PostgreSQL gone: not ready, but live (a restart would not bring it back)
            await until(unready_but_live)
            await pg.restore()
            await until(ready)

            worker.proc.send_signal(signal.SIGSTOP)  # a stuck process: its heartbeat goes stale

            async def stale() -> bool:
                return await probe(health, "--max-age", "3") == 1

            try:
                await until(stale)
            finally:
                worker.proc.send_signal(signal.SIGCONT)
            await until(ready)

            worker.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.proc.wait, 30) == 0
            assert not health.exists()  # a worker that stopped leaves no heartbeat to be mistaken
            assert await probe(health) == 1
        finally:
            worker.stop()
            await env_cleanup(env, settings)


async def env_cleanup(env: dict[str, str], settings: Settings) -> None:
    import redis.asyncio as aioredis

    prefix = env["FAULTLINE_STREAM_PREFIX"]
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
