"""The gateway around faults (issue 13, findings 5, 9, 10 gateway side).

- Started while PostgreSQL is down, a gateway logs that it waits for the keys, comes up once
  PostgreSQL returns, and exits non-zero when it never does (the supervisor restarts it); a server
  that accepts connections and never answers cannot hang it either.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from services.gateway import app as gateway_app
from shared import db, keys
from shared.embedded import free_port, start_postgres
from shared.settings import Settings
from tests.faults.procs import Service, service_env, wait_http

pytestmark = [pytest.mark.faults]


def _pg_dir() -> Path:
    """A data dir the server's own user can reach (pytest's tmp dirs are 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="fl-gw-pg-", dir="/tmp"))
    os.chmod(path, 0o777)
    return path / "pg"


async def test_first_keys_gives_up_on_a_server_that_never_answers_and_on_none():
    done = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # accepts and never answers; closed with the test (an unclosed
        await done.wait()  # writer warns later, in whichever test the garbage collector runs)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for dsn in (
            f"postgresql://postgres@127.0.0.1:{port}/x",
            f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        ):
            started = time.monotonic()
            with pytest.raises(SystemExit) as exit_info:
                await gateway_app._first_keys(dsn, 1.0, wait=1.0)
            assert exit_info.value.code == 3
            assert time.monotonic() - started < gateway_app.ATTEMPT_TIMEOUT + 4, dsn
    finally:
        done.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_gateway_started_while_postgres_is_down_waits_logs_and_comes_up(settings: Settings):
    assert settings.redis_url
    data_dir = _pg_dir()
    pg = start_postgres(data_dir)
    try:
        conn = await asyncpg.connect(pg.url)
        try:
            await db.migrate(conn)
            project, key = await keys.create_project(conn, f"gw-{uuid.uuid4().hex[:6]}")
        finally:
            await conn.close()
        pg.stop()
        env = service_env(pg.url, settings.redis_url)
        log = Path(tempfile.mkdtemp(prefix="fl-gw-log-")) / "gateway.log"
        gateway = Service("services.gateway", env, log).start()
        try:
            for _ in range(200):  # at most 20 s on a loaded machine
                if "keys not loaded" in gateway.text():
                    break
                await asyncio.sleep(0.1)
            assert "keys not loaded" in gateway.text(), gateway.text()
            assert gateway.proc is not None and gateway.proc.poll() is None  # waiting, not dead, not silent
            pg = start_postgres(data_dir, port=pg.port)
            port = int(env["FAULTLINE_GATEWAY_PORT"])
            await wait_http(f"http://127.0.0.1:{port}/healthz", timeout=40)
            async with aiohttp.ClientSession() as s:
                body = {"message": "E: up", "error": {"exception": "E", "backtrace": []}}
                async with s.post(
                    f"http://127.0.0.1:{port}/v1/notices", json=body, headers={"Api-Key": key}
                ) as r:
                    assert r.status == 201, await r.text()
        finally:
            gateway.stop()
    finally:
        pg.stop()
