"""FAULTLINE_QUERY_DATABASE_URL against a real streaming replica (issue 16, item 5).

The test makes a primary with the machine's PostgreSQL 15 `initdb` and a replica of it with
`pg_basebackup -R`, both on free loopback ports in a temporary directory owned by `postgres`, and
stops both at the end. With replay paused on the replica (`pg_wal_replay_pause()`), a row changed
on the primary behind the query service's back tells which server answered: the replica's stale
copy means the read went to the replica. Then: writes land on the primary; `/locate` right after
ingest, the page after a login and a read after a resolve see what was just written; reads return
to the replica once it has replayed; a replica that is gone sends reads to the primary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.app import create_app as create_gateway
from services.query.app import APPLICATION_NAME
from services.query.app import create_app as create_query
from services.worker import store
from services.worker.consumer import Consumer
from shared import db, keys
from shared.embedded import free_port
from shared.settings import Settings, SettingsError
from tests.conftest import drain, reload_keys

PG_BIN = Path(os.environ.get("FAULTLINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_TOOLS = ("initdb", "pg_ctl", "pg_basebackup")
DEADLINE = 20.0  # seconds any one wait may take on a loaded machine


@dataclass(frozen=True)
class Pair:
    primary_url: str
    replica_url: str
    replica_dir: Path
    pg: Callable[..., str]


def _pg_runner(root: Path) -> Callable[..., str]:
    """Run a PostgreSQL binary as the `postgres` OS user (initdb refuses root)."""
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def run(tool: str, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [*as_postgres, str(PG_BIN / tool), *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{tool} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout}"
            )
        return proc.stdout

    return run


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """A primary and its streaming replica on loopback, made, started and stopped here."""
    missing = [t for t in PG_TOOLS if not (PG_BIN / t).exists()]
    if missing:
        why = f"PostgreSQL binaries missing in {PG_BIN}: {', '.join(missing)}"
        if os.environ.get("CI") == "true":  # on CI the binaries are installed: a missing one is a failure
            pytest.fail(why)
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="faultline-replica-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    pg = _pg_runner(root)
    primary, replica = root / "primary", root / "replica"
    p_port, r_port = free_port(), free_port()
    started: list[Path] = []
    try:
        pg("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        _append(
            primary / "postgresql.conf",
            [
                "listen_addresses = '127.0.0.1'",
                f"port = {p_port}",
                f"unix_socket_directories = '{root}'",
                "fsync = off",
                "max_connections = 40",
                "shared_buffers = 16MB",
            ],
        )
        pg("pg_ctl", "-D", str(primary), "-l", str(root / "primary.log"), "-w", "-t", "60", "start")
        started.append(primary)
        pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres", "-D", str(replica), "-R")
        _append(replica / "postgresql.conf", [f"port = {r_port}"])
        pg("pg_ctl", "-D", str(replica), "-l", str(root / "replica.log"), "-w", "-t", "60", "start")
        started.append(replica)
        yield Pair(
            f"postgresql://postgres@127.0.0.1:{p_port}/postgres",
            f"postgresql://postgres@127.0.0.1:{r_port}/postgres",
            replica,
            pg,
        )
    finally:
        for data in reversed(started):
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


async def _lsn(conn: asyncpg.Connection, sql: str) -> int:
    return int(await conn.fetchval(f"SELECT ({sql} - '0/0'::pg_lsn)::bigint") or 0)


async def poll(what: str, check: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        if found := await check():
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def caught_up(primary: asyncpg.Connection, replica: asyncpg.Connection) -> None:
    """Until the replica has replayed everything the primary holds now."""
    target = await _lsn(primary, "pg_current_wal_insert_lsn()")

    async def replayed() -> bool:
        return await _lsn(replica, "pg_last_wal_replay_lsn()") >= target

    await poll("the replica to replay", replayed)


async def pause(replica: asyncpg.Connection) -> None:
    await replica.execute("SELECT pg_wal_replay_pause()")

    async def paused() -> bool:
        return await replica.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused"

    await poll("replay to pause", paused)


async def _init(conn: asyncpg.Connection) -> None:
    await db.init_connection(conn)
    await store.init_connection(conn)


@dataclass
class Stack:
    s: Settings
    primary: asyncpg.Connection  # direct connections, behind the query service's back
    replica: asyncpg.Connection
    gateway: TestClient
    query: TestClient
    consumer: Consumer
    project: tuple[int, str]
    auth: dict[str, str]


@pytest.fixture
async def stack(pair: Pair, settings: Settings) -> AsyncIterator[Stack]:
    conn = await asyncpg.connect(pair.primary_url)
    try:
        await db.migrate(conn)
        project, key = await keys.create_project(conn, "replicated")
        token = await keys.create_user_token(conn, "replica test")
    finally:
        await conn.close()
    s = dataclasses.replace(
        settings,
        database_url=pair.primary_url,
        query_database_url=pair.replica_url,
        stream_prefix=f"flreplica-{uuid.uuid4().hex[:10]}",
    )
    primary = await asyncpg.connect(pair.primary_url)
    replica = await asyncpg.connect(pair.replica_url)
    pool = await db.create_pool(pair.primary_url, min_size=1, max_size=3, init=_init)
    assert s.redis_url
    redis = aioredis.Redis.from_url(s.redis_url)
    gateway = TestClient(TestServer(create_gateway(s)))
    query = TestClient(TestServer(create_query(s)))
    try:
        await caught_up(primary, replica)  # the schema, the project and the token are on the replica
        await gateway.start_server()
        await query.start_server()
        consumer = Consumer(s, redis, pool, name="replica-test")
        await consumer.setup()
        yield Stack(s, primary, replica, gateway, query, consumer, (project.id, key), {"Api-Key": token})
    finally:
        await query.close()
        await gateway.close()
        async for name in redis.scan_iter(match=f"{s.stream_prefix}:*"):  # every stream key of this run
            await redis.delete(name)
        await redis.aclose()
        await asyncio.wait_for(pool.close(), 5)
        for c in (primary, replica):
            await c.close(timeout=5)


async def ingest(st: Stack, marker: str) -> tuple[str, int]:
    """A CrashLog notice through the gateway and a worker step onto the primary: (location id, error id)."""
    payload = {
        "notifier": {"name": "crashlog", "version": "1.0.0"},
        "event": {"class_name": f"Replica{marker}Error", "message": f"replicated {marker}"},
        "backtrace": [{"file": f"/srv/app/models/{marker}.rb", "number": 3, "method": "save"}],
        "environment": {"name": "production"},
    }
    resp = await st.gateway.post("/notify", params={"auth_token": st.project[1]}, data=orjson.dumps(payload))
    assert resp.status == 201, await resp.text()
    location_id = (await resp.json())["location_id"]
    await drain(st.consumer)
    error_id = await st.primary.fetchval(
        "SELECT error_id FROM notices WHERE location_id = $1", uuid.UUID(location_id)
    )
    assert error_id is not None
    return location_id, error_id


async def error_json(st: Stack, error_id: int) -> dict[str, Any]:
    resp = await st.query.get(f"/v1/errors/{error_id}", headers=st.auth)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_reads_go_to_the_replica_and_what_was_just_written_stays_visible(stack: Stack, pair: Pair):
    st = stack
    _, error_id = await ingest(st, "old")
    await caught_up(st.primary, st.replica)
    await pause(st.replica)
    try:
        # Changed on the primary behind the query service's back: the replica keeps the old message.
        await st.primary.execute(
            "UPDATE errors SET message = 'changed on the primary' WHERE id = $1", error_id
        )
        assert (await error_json(st, error_id))["message"] == "replicated old"
        names = await st.replica.fetch("SELECT DISTINCT application_name FROM pg_stat_activity")
        assert APPLICATION_NAME in {r["application_name"] for r in names}

        # Right after ingest: stored on the primary only, yet /locate and the JSON look-up find it.
        location_id, fresh_error = await ingest(st, "fresh")
        on_replica = "SELECT count(*) FROM notices WHERE location_id = $1"
        assert await st.replica.fetchval(on_replica, uuid.UUID(location_id)) == 0
        resp = await st.query.get(f"/locate/{location_id}", allow_redirects=False)
        assert resp.status == 301, await resp.text()
        assert resp.headers["Location"].endswith(f"/notices/{location_id}")
        resp = await st.query.get(f"/api/locate/{location_id}", headers=st.auth)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["error"]["id"] == fresh_error
        assert (await error_json(st, fresh_error))["message"] == "replicated fresh"
        # ... and a miss answered by the primary did not move the other reads off the replica.
        assert (await error_json(st, error_id))["message"] == "replicated old"

        # A token made a moment ago on the primary signs in, and the page after the login shows the notice.
        fresh_token = await keys.create_user_token(st.primary, "made while replay is paused")
        await reload_keys(st.query)
        here = f"/notices/{location_id}"
        resp = await st.query.post("/login", data={"token": fresh_token, "next": here}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == here, await resp.text()
        resp = await st.query.get(here, cookies={"faultline_token": fresh_token})
        assert resp.status == 200, await resp.text()
        assert "ReplicafreshError" in await resp.text()

        # A resolve is written to the primary (the replica, paused, has not got it) and read back at once.
        resp = await st.query.patch(f"/v1/errors/{error_id}", json={"resolved": True}, headers=st.auth)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["resolved"] is True
        resolved = "SELECT resolved FROM errors WHERE id = $1"
        assert await st.primary.fetchval(resolved, error_id) is True
        assert await st.replica.fetchval(resolved, error_id) is False
        after = await error_json(st, error_id)
        assert after["resolved"] is True and after["message"] == "changed on the primary"
    finally:
        await st.replica.execute("SELECT pg_wal_replay_resume()")

    # Once the replica has replayed past the write, reads are the replica's again.
    await caught_up(st.primary, st.replica)
    assert (await error_json(st, error_id))["resolved"] is True
    await pause(st.replica)
    try:
        await st.primary.execute("UPDATE errors SET message = 'changed again' WHERE id = $1", error_id)
        assert (await error_json(st, error_id))["message"] == "changed on the primary"
    finally:
        await st.replica.execute("SELECT pg_wal_replay_resume()")

    # The replica gone: reads are answered by the primary, and the query service stays ready.
    # Stopped while this loop is blocked: the pooled replica connection has the server's goodbye
    # unread (as in a busy service), the hardest case (asyncpg raises InternalClientError on it).
    pair.pg("pg_ctl", "-D", str(pair.replica_dir), "-m", "fast", "-w", "-t", "60", "stop")
    assert (await error_json(st, error_id))["message"] == "changed again"
    resp = await st.query.get("/readyz")
    body = await resp.json()
    assert resp.status == 200 and body["postgres"] == "ok", body
    assert body["postgres_replica"].startswith("down"), body


def test_the_setting_defaults_to_the_primary_and_a_bad_one_stops_start_up():
    primary = "postgresql://postgres@127.0.0.1:5432/faultline"
    assert Settings.from_env({"FAULTLINE_DATABASE_URL": primary}).query_database_url is None
    replica = "postgresql://postgres@10.0.0.2:5432/faultline"
    s = Settings.from_env({"FAULTLINE_DATABASE_URL": primary, "FAULTLINE_QUERY_DATABASE_URL": replica})
    assert s.query_database_url == replica
    assert Settings.from_env(s.to_env()) == s  # `faultline up` hands it to the query process
    with pytest.raises(SettingsError, match="^FAULTLINE_QUERY_DATABASE_URL="):
        Settings.from_env({"FAULTLINE_DATABASE_URL": primary, "FAULTLINE_QUERY_DATABASE_URL": "mysql://x/y"})
    with pytest.raises(SettingsError, match="^FAULTLINE_QUERY_DATABASE_URL is set"):
        Settings.from_env({"FAULTLINE_QUERY_DATABASE_URL": replica})  # a replica of the embedded server?
