"""Fixtures: real PostgreSQL and Redis (local servers when they answer, embedded ones otherwise),
a fresh database and fresh stream names per test session, and the services wired to them."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.app import create_app as create_gateway
from services.query.app import create_app as create_query
from services.worker import store
from services.worker.consumer import Consumer
from shared import db, keys
from shared.settings import Settings
from tests.streams import every_key

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Servers:
    admin_dsn: str  # a database to CREATE DATABASE from
    redis_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The local servers when they answer (CI and dev machines), else embedded ones."""
    started = []
    pg = os.environ.get("FAULTLINE_TEST_ADMIN_DSN") or (LOCAL_PG if _answers(5432) else None)
    rd = os.environ.get("FAULTLINE_TEST_REDIS_URL") or (LOCAL_REDIS if _answers(6379) else None)
    if os.environ.get("FAULTLINE_TEST_EMBEDDED") == "1":  # what a machine without servers gets
        pg = rd = None
    if pg is None or rd is None:
        from shared.embedded import start_postgres, start_redis

        data = tmp_path_factory.mktemp("embedded")
        if pg is None:
            started.append(start_postgres(data))
            pg = started[-1].url
        if rd is None:
            started.append(start_redis(data, appendonly=False))
            rd = started[-1].url
    yield Servers(pg, rd)
    for s in reversed(started):
        s.stop()


def _with_db(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
async def database_url(servers: Servers) -> AsyncIterator[str]:
    """A database of this test session's own, migrated; dropped afterwards."""
    name = f"faultline_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(servers.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(servers.admin_dsn, name)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    yield url
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
def settings(database_url: str, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=servers.redis_url,
        data_dir=Path(tmp_path_factory.mktemp("data")),
        stream_prefix=f"fltest-{uuid.uuid4().hex[:10]}",
        key_refresh=0.2,
        claim_idle_ms=500,
        block_ms=50,
    )


async def _init(conn: asyncpg.Connection) -> None:
    await db.init_connection(conn)
    await store.init_connection(conn)


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    p = await db.create_pool(settings.database_url, min_size=1, max_size=5, init=_init)
    yield p
    await asyncio.wait_for(p.close(), 5)


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url
    r = aioredis.Redis.from_url(settings.redis_url)
    yield r
    await r.delete(*every_key(settings))
    await r.aclose()


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    key: str


async def make_project(pool: asyncpg.Pool, name: str | None = None) -> ProjectInfo:
    async with pool.acquire() as conn:
        project, key = await keys.create_project(conn, name or f"p-{uuid.uuid4().hex[:6]}")
    return ProjectInfo(project.id, project.name, key)


@pytest.fixture
async def project(pool: asyncpg.Pool, gateway: TestClient, query: TestClient) -> ProjectInfo:
    """A fresh project with its client key (each test its own, so counts never mix)."""
    info = await make_project(pool)
    await reload_keys(gateway, query)
    return info


@pytest.fixture(scope="session")
async def user_token(pool: asyncpg.Pool, gateway: TestClient, query: TestClient) -> str:
    async with pool.acquire() as conn:
        token = await keys.create_user_token(conn, "tests")
    await reload_keys(gateway, query)
    return token


@pytest.fixture(scope="session")
async def gateway(settings: Settings) -> AsyncIterator[TestClient]:
    """The real gateway app on a real loopback socket."""
    client = TestClient(TestServer(create_gateway(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def query(settings: Settings) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_query(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def consumer(settings: Settings, redis: aioredis.Redis, pool: asyncpg.Pool) -> Consumer:
    c = Consumer(settings, redis, pool, name="test-consumer")
    await c.setup()
    return c


async def reload_keys(*clients: TestClient) -> None:
    """Make the services see keys created a moment ago (instead of waiting for the refresh)."""
    from services.gateway.state import KEYS as GATEWAY_KEYS
    from services.query.state import KEYS as QUERY_KEYS

    for client in clients:
        app = client.server.app
        assert app is not None
        for app_key in (GATEWAY_KEYS, QUERY_KEYS):
            if app_key in app:
                await app[app_key].reload()


async def drain(consumer: Consumer, rounds: int = 50) -> int:
    """Run the worker step until the stream has nothing new; returns entries processed."""
    total = 0
    for _ in range(rounds):
        n = await consumer.run_once(block_ms=None)
        total += n
        if n == 0:
            return total
    raise AssertionError("stream did not drain")
