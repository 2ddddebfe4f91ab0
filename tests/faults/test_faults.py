"""Fault injection: whatever dies, every notice answered with 2xx is stored exactly once.

Each test prints the counts it checked (sent, acknowledged, stored). Tests that stop servers start
their own PostgreSQL / Redis on free ports; the shared ones are never stopped.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared import db, keys
from shared.embedded import EmbeddedServer, start_postgres, start_redis
from shared.settings import Settings
from tests.faults.procs import (
    ROOT,
    Service,
    counted,
    post_many,
    service_env,
    stored_ids,
    wait_http,
    wait_stored,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def new_project(database_url: str) -> tuple[int, str]:
    conn = await asyncpg.connect(database_url)
    try:
        await db.migrate(conn)
        project, key = await keys.create_project(conn, "faults")
        return project.id, key
    finally:
        await conn.close()


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\tZ (zombie)" not in status


def merged(*counts: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for c in counts:
        for status, n in c.items():
            out[status] = out.get(status, 0) + n
    return out


def report(name: str, sent: int, acked: int, stored: int, statuses: dict[int, int], failures: int) -> None:
    print(
        f"\n[{name}] sent={sent} acknowledged={acked} stored={stored} statuses={statuses} "
        f"connection_failures={failures}"
    )


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = start_postgres(tmp_path / "pg")
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = start_redis(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    """Gateway + one worker on the shared servers (which these tests never stop)."""
    assert settings.database_url and settings.redis_url
    env = service_env(settings.database_url, settings.redis_url)
    gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
    wk = Service("services.worker", env, tmp_path / "worker.log").start()
    pid, key = await new_project(settings.database_url)
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    await wait_http(f"{url}/healthz")
    yield {
        "env": env,
        "gateway": gw,
        "worker": wk,
        "url": url,
        "project": pid,
        "key": key,
        "db": settings.database_url,
    }
    gw.stop()
    wk.stop()


async def test_worker_sigkill_mid_batch(stack, tmp_path: Path):
    wk: Service = stack["worker"]  # type: ignore[assignment]
    posting = asyncio.create_task(post_many(stack["url"], stack["key"], 1500))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)  # fault injection point: the worker is mid-stream
    wk.kill(signal.SIGKILL)
    acked, statuses, failures = await posting
    replacement = Service("services.worker", stack["env"], tmp_path / "worker2.log").start()  # type: ignore[arg-type]
    try:
        ids = await wait_stored(stack["db"], stack["project"], set(acked), timeout=60)  # type: ignore[arg-type]
        n = await counted(stack["db"], stack["project"])  # type: ignore[arg-type]
    finally:
        replacement.stop()
    report("worker SIGKILL", 1500, len(acked), len(ids), statuses, failures)
    assert len(acked) == 1500 and len(ids) == len(set(ids)) == 1500 and n == 1500


async def test_gateway_sigkill_mid_request(stack, tmp_path: Path):
    gw: Service = stack["gateway"]  # type: ignore[assignment]
    posting = asyncio.create_task(
        post_many(
            stack["url"],
            stack["key"],
            3000,
            concurrency=16,  # type: ignore[arg-type]
            timeout=3,
        )
    )
    await asyncio.sleep(0.5)
    gw.kill(signal.SIGKILL)
    acked, statuses, failures = await posting
    await asyncio.sleep(0)
    ids = await wait_stored(stack["db"], stack["project"], set(acked), timeout=60)  # type: ignore[arg-type]
    report("gateway SIGKILL", 3000, len(acked), len(ids), statuses, failures)
    assert 0 < len(acked) < 3000 and failures > 0
    # Stored may exceed acknowledged (queued, then killed before answering); never the reverse.
    assert set(acked) <= set(ids) and len(ids) == len(set(ids))
    assert await counted(stack["db"], stack["project"]) == len(ids)  # type: ignore[arg-type]


async def test_postgres_unreachable_for_a_while(own_pg: EmbeddedServer, settings: Settings, tmp_path: Path):
    assert settings.redis_url
    pid, key = await new_project(own_pg.url)
    env = service_env(own_pg.url, settings.redis_url)
    gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
    wk = Service("services.worker", env, tmp_path / "worker.log").start()
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    try:
        await wait_http(f"{url}/healthz")
        acked, statuses, failures = await post_many(url, key, 200)
        await wait_stored(own_pg.url, pid, set(acked), timeout=30)
        own_pg.stop()  # PostgreSQL goes away; the gateway keeps accepting from its key cache
        more, st2, f2 = await post_many(url, key, 300)
        assert len(more) == 300, st2
        for _ in range(100):  # bounded wait for the worker to notice the outage
            if "outage" in wk.text():
                break
            await asyncio.sleep(0.1)
        assert "outage" in wk.text()
        restarted = start_postgres(tmp_path / "pg", port=own_pg.port)
        try:
            ids = await wait_stored(own_pg.url, pid, set(acked) | set(more), timeout=90)
            n = await counted(own_pg.url, pid)
        finally:
            restarted.stop()
        report("postgres outage", 500, len(acked) + len(more), len(ids), merged(statuses, st2), failures + f2)
        assert len(ids) == len(set(ids)) == 500 and n == 500
    finally:
        gw.stop()
        wk.stop()


async def test_redis_unreachable_then_restarted(
    own_redis: EmbeddedServer, settings: Settings, tmp_path: Path
):
    assert settings.database_url
    pid, key = await new_project(settings.database_url)
    env = service_env(settings.database_url, own_redis.url)
    gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
    wk = Service("services.worker", env, tmp_path / "worker.log").start()
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    port = own_redis.port
    try:
        await wait_http(f"{url}/healthz")
        before, s1, f1 = await post_many(url, key, 300)
        own_redis.stop()  # graceful: the AOF is flushed
        during, s2, f2 = await post_many(url, key, 100, timeout=10)
        assert during == [] and s2.get(503) == 100, s2  # never a 2xx for a notice it did not queue
        restarted = start_redis(tmp_path / "redis", port=port, appendonly=True)
        try:
            after: list[str] = []
            s3: dict[int, int] = {}
            for _ in range(100):  # bounded: the gateway reconnects on its own
                got, probe, _ = await post_many(url, key, 1)
                s3 = merged(s3, probe)
                after += got
                if got:
                    break
                await asyncio.sleep(0.1)
            more, s4, f4 = await post_many(url, key, 200)
            after += more
            expected = set(before) | set(after)
            ids = await wait_stored(settings.database_url, pid, expected, timeout=60)
        finally:
            restarted.stop()
        report("redis restart", 601, len(expected), len(ids), merged(s1, s2, s3, s4), f1 + f2 + f4)
        assert len(before) == 300 and len(after) == 201
        assert len(ids) == len(set(ids)) == len(expected) == 501
        assert await counted(settings.database_url, pid) == 501
    finally:
        gw.stop()
        wk.stop()


async def test_whole_faultline_up_sigkill(settings: Settings, tmp_path: Path):
    """SIGKILL of `faultline up` itself: its children go with it; a new `up` stores everything acknowledged."""
    assert settings.database_url and settings.redis_url
    env = service_env(
        settings.database_url,
        settings.redis_url,
        FAULTLINE_WORKERS="2",
        FAULTLINE_DATA_DIR=str(tmp_path / "data"),
    )
    pid, key = await new_project(settings.database_url)
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    log = (tmp_path / "up.log").open("ab")
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await wait_http(f"{url}/healthz")
        posting = asyncio.create_task(post_many(url, key, 3000, concurrency=16, timeout=3))
        await asyncio.sleep(0.5)
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(up.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(children) == 4  # gateway, 2 workers, query
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        acked, statuses, failures = await posting
        for _ in range(100):  # the children get SIGTERM from the kernel when their parent dies
            if not any(alive(c) for c in children):
                break
            await asyncio.sleep(0.1)
        assert not any(alive(c) for c in children), "orphaned children"
        up = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ids = await wait_stored(settings.database_url, pid, set(acked), timeout=90)
        report("faultline up SIGKILL", 3000, len(acked), len(ids), statuses, failures)
        assert len(acked) > 0 and set(acked) <= set(ids) and len(ids) == len(set(ids))
        assert await counted(settings.database_url, pid) == len(await stored_ids(settings.database_url, pid))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()


async def test_backlog_over_the_limit_answers_503_not_growth(settings: Settings, tmp_path: Path):
    """No worker running and a small backlog limit: the gateway sheds load instead of trimming or growing."""
    assert settings.database_url and settings.redis_url
    env = service_env(settings.database_url, settings.redis_url, FAULTLINE_BACKLOG_LIMIT="50")
    pid, key = await new_project(settings.database_url)
    gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    try:
        await wait_http(f"{url}/healthz")
        acked, statuses, _ = await post_many(url, key, 50, concurrency=1)
        for _ in range(50):  # the backlog watcher looks every 0.5 s
            _, st, _ = await post_many(url, key, 1)
            if st.get(503):
                break
            await asyncio.sleep(0.1)
        shed, st2, f2 = await post_many(url, key, 20)
        assert shed == [] and st2 == {503: 20}
        wk = Service("services.worker", env, tmp_path / "worker.log").start()
        try:
            ids = await wait_stored(settings.database_url, pid, set(acked), timeout=30)
        finally:
            wk.stop()
        report(
            "backpressure",
            sum(merged(statuses, st2).values()),
            len(acked),
            len(ids),
            merged(statuses, st2),
            f2,
        )
        assert set(acked) <= set(ids)
    finally:
        gw.stop()


async def test_a_full_redis_answers_503_and_loses_nothing(settings: Settings, tmp_path: Path):
    """Redis at its `maxmemory` (noeviction, what deploy/ sets): the queueing script is refused
    whole, the gateway answers 503 with Retry-After, and every notice it answered 2xx is stored."""
    import redis.asyncio as aioredis

    assert settings.database_url
    server = start_redis(tmp_path / "redis", appendonly=False)
    client = aioredis.from_url(server.url)
    pid, key = await new_project(settings.database_url)
    env = service_env(settings.database_url, server.url)
    gw = Service("services.gateway", env, tmp_path / "gateway.log").start()
    url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
    try:
        await wait_http(f"{url}/healthz")
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", str(used + 400_000))  # room for a few hundred notices
        acked: list[str] = []
        statuses: dict[int, int] = {}
        for _ in range(40):  # bounded: 40 rounds of 100 notices fill 400 kB many times over
            got, st, _ = await post_many(url, key, 100)
            acked += got
            statuses = merged(statuses, st)
            if st.get(503):
                break
        assert statuses.get(503), f"Redis never filled up: {statuses}"
        assert set(statuses) <= {201, 503}, statuses  # never a 500, never a 2xx it could not queue
        assert acked, "nothing was accepted before Redis filled up"
        await client.config_set("maxmemory", "0")  # room again: a worker drains what was accepted
        wk = Service("services.worker", env, tmp_path / "worker.log").start()
        try:
            ids = await wait_stored(settings.database_url, pid, set(acked), timeout=60)
        finally:
            wk.stop()
        report("full redis", sum(statuses.values()), len(acked), len(ids), statuses, 0)
        assert set(acked) <= set(ids) and len(ids) == len(set(ids))
    finally:
        gw.stop()
        await client.aclose()
        server.stop()
