"""Real start/stop/restart tests for the embedded PostgreSQL and Valkey servers."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import asyncpg
import psutil
import pytest
import redis

from shared.embedded import EmbeddedServer, free_port, start_postgres, start_redis


def _orphan(start: str, data_dir: pathlib.Path) -> str:
    """Start a server in a child process that exits without stopping it (a crashed run); return its url."""
    code = (
        "import os, pathlib, sys; from shared import embedded as e; "
        "print(getattr(e, sys.argv[1])(pathlib.Path(sys.argv[2])).url, flush=True); os._exit(0)"
    )
    cmd = [sys.executable, "-c", code, start, str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def _pg(url: str, *queries: str) -> list[object]:
    """Run queries in order on a fresh asyncpg connection; return the last fetchval result per query."""

    async def run() -> list[object]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [await conn.fetchval(q) for q in queries]
        finally:
            await conn.close()

    return asyncio.run(run())


def _timed(fn: Callable[..., EmbeddedServer], *args: object) -> tuple[EmbeddedServer, float]:
    t0 = time.monotonic()
    server = fn(*args)
    return server, time.monotonic() - t0


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.05)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_postgres_start_query_restart_keeps_data(tmp_path: pathlib.Path) -> None:
    port = free_port()
    pg, first = _timed(start_postgres, tmp_path, port)
    try:
        assert pg.url == f"postgresql://postgres@127.0.0.1:{port}/faultline"
        assert _pg(pg.url, "select 1", "select current_database()") == [1, "faultline"]
        _pg(pg.url, "create table kept (v int)", "insert into kept values (42)")
    finally:
        pg.stop()
    pg.stop()  # idempotent
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()

    pg, second = _timed(start_postgres, tmp_path)  # reuse data, new free port
    try:
        assert pg.port != 0 and _pg(pg.url, "select v from kept") == [42]
    finally:
        pg.stop()
    print(f"postgres start: first (initdb) {first:.2f}s, restart {second:.2f}s")
    assert second < 30


def test_postgres_recovers_from_killed_and_orphaned_servers(tmp_path: pathlib.Path) -> None:
    pg = start_postgres(tmp_path)
    _pg(pg.url, "create table t (v int)", "insert into t values (7)")
    pidfile = tmp_path / "postgres" / "postmaster.pid"
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # crash: postmaster.pid stays behind
    _wait_gone(pid)
    pg.stop()  # must not raise although the server is gone
    assert pidfile.exists()

    pg = start_postgres(tmp_path)
    try:
        assert _pg(pg.url, "select v from t") == [7]
    finally:
        pg.stop()

    # A server left running by a process that exited without stop() is stopped and replaced.
    url = _orphan("start_postgres", tmp_path)
    orphan_pid = int(pidfile.read_text().split()[0])
    assert _pg(url, "select v from t") == [7]
    pg = start_postgres(tmp_path)
    try:
        _wait_gone(orphan_pid)
        assert _pg(pg.url, "select v from t") == [7]
    finally:
        pg.stop()


def test_postgres_start_failure_raises_and_leaves_nothing_running(tmp_path: pathlib.Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="postgres did not start"):
            start_postgres(tmp_path, busy.getsockname()[1])
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()


def test_redis_start_ping_restart_keeps_data(tmp_path: pathlib.Path) -> None:
    port = free_port()
    rs, first = _timed(start_redis, tmp_path, port)
    try:
        assert rs.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(rs.url)
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("notice:1", b"payload")
        assert client.get("notice:1") == b"payload"
        client.close()
    finally:
        rs.stop()
    rs.stop()  # idempotent
    assert (tmp_path / "redis" / "appendonlydir").is_dir()

    rs, second = _timed(start_redis, tmp_path)
    try:
        client = redis.Redis.from_url(rs.url)
        assert client.get("notice:1") == b"payload"
        client.close()
    finally:
        rs.stop()
    print(f"valkey start: first {first:.2f}s, restart {second:.2f}s")
    assert second < 30


def test_redis_replaces_orphaned_server_and_keeps_data(tmp_path: pathlib.Path) -> None:
    client = redis.Redis.from_url(_orphan("start_redis", tmp_path))
    client.set("k", "v")
    client.close()
    orphan_pid = int((tmp_path / "redis" / "valkey.pid").read_text())
    rs = start_redis(tmp_path)
    try:
        _wait_gone(orphan_pid)
        client = redis.Redis.from_url(rs.url)
        assert client.get("k") == b"v"
        client.close()
    finally:
        rs.stop()
    assert not (tmp_path / "redis" / "valkey.pid").exists()
