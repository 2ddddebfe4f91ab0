"""`faultline up` as a user runs it: real processes, real sockets, notices in, notices out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from shared.embedded import free_port
from shared.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAULTLINE = [sys.executable, "-m", "shared.cli"]


def cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [*FAULTLINE, *args], env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class Up:
    """A `faultline up` process and what it needs to be talked to."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.gateway = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
        self.query = f"http://127.0.0.1:{env['FAULTLINE_QUERY_PORT']}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [*FAULTLINE, "up"], env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "faultline: workers" in self.log.read_text(errors="replace"):
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"faultline up never got ready:\n{self.log.read_text()}")

    def children(self, module: str) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid), "-f", module], capture_output=True, text=True
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    env.update(
        {
            "FAULTLINE_DATA_DIR": str(tmp / "data"),
            "FAULTLINE_GATEWAY_PORT": str(free_port()),
            "FAULTLINE_QUERY_PORT": str(free_port()),
            "FAULTLINE_STREAM_PREFIX": f"fle2e-{uuid.uuid4().hex[:8]}",
            "FAULTLINE_KEY_REFRESH": "0.5",
            "FAULTLINE_CLAIM_IDLE_MS": "1000",
            "FAULTLINE_WORKERS": "2",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def up(settings: Settings, tmp_path: Path) -> Iterator[Up]:
    assert settings.database_url and settings.redis_url
    env = base_env(
        tmp_path, FAULTLINE_DATABASE_URL=settings.database_url, FAULTLINE_REDIS_URL=settings.redis_url
    )
    proc = Up(env, tmp_path / "up.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


NOTICE = {
    "message": "RuntimeError: e2e",
    "error": {
        "exception": "RuntimeError",
        "mode": "production",
        "backtrace": ["[PROJECT_ROOT]/app/models/user.rb:42:in `save'"],
    },
}


async def send(session: aiohttp.ClientSession, up: Up, key: str, n: int, exception: str) -> list[dict]:
    answers = []
    for i in range(n):
        body = {
            **NOTICE,
            "error": {**NOTICE["error"], "exception": exception},
            "message": f"{exception}: {i}",
        }
        async with session.post(f"{up.gateway}/v1/notices", json=body, headers={"Api-Key": key}) as resp:
            assert resp.status == 201, await resp.text()
            answers.append(await resp.json())
    return answers


async def wait_count(
    session: aiohttp.ClientSession, up: Up, token: str, error_id: int, n: int, timeout: float
) -> float:
    """Seconds until the error shows n notices through the query API."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        async with session.get(f"{up.query}/v1/errors/{error_id}", headers={"Api-Key": token}) as resp:
            if resp.status == 200 and (await resp.json())["notices_count"] >= n:
                return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"error {error_id} did not reach {n} notices in {timeout}s")


async def test_notices_posted_are_readable(up: Up):
    project = cli(up.env, "project", "create", "e2e")
    token = cli(up.env, "token", "create")["token"]
    assert isinstance(project["client_key"], str) and len(project["client_key"]) >= 32
    await asyncio.sleep(1.2)  # the services' key caches reload every 0.5 s in this test
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{up.gateway}/") as resp:
            assert await resp.json() == {}
        [first] = await send(session, up, str(project["client_key"]), 1, "E2EError")
        # Readable once the worker got to it; how fast is `make bench`'s business (lag p99), not a
        # timed assertion that a loaded CI machine can fail.
        await wait_count(session, up, str(token), first["error_id"], 1, timeout=10)
        async with session.get(
            f"{up.query}/v1/errors/{first['error_id']}/notices/{first['id']}", headers={"Api-Key": str(token)}
        ) as resp:
            assert resp.status == 200 and (await resp.json())["message"] == "E2EError: 0"


async def test_worker_sigkill_loses_nothing_and_is_restarted(up: Up):
    project = cli(up.env, "project", "create", "e2e-kill")
    token = str(cli(up.env, "token", "create")["token"])
    key = str(project["client_key"])
    await asyncio.sleep(1.2)
    async with aiohttp.ClientSession() as session:
        acked = await send(session, up, key, 100, "KillError")
        workers = up.children("services.worker")
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        acked += await send(session, up, key, 100, "KillError")
        error_ids = {a["error_id"] for a in acked}
        assert len(error_ids) == 1
        await wait_count(session, up, token, acked[0]["error_id"], len(acked), timeout=30)
        async with session.get(
            f"{up.query}/v1/errors/{acked[0]['error_id']}", headers={"Api-Key": token}
        ) as r:
            assert (await r.json())["notices_count"] == 200  # exactly once each: sent 200, acknowledged 200
    deadline = time.monotonic() + 10
    while len(up.children("services.worker")) < 2:
        assert time.monotonic() < deadline, "supervisor did not restart the killed worker"
        time.sleep(0.1)
    assert workers[0] not in up.children("services.worker")


def test_sigterm_stops_everything_gracefully(up: Up):
    children = up.children("services.")
    assert len(children) == 4  # gateway, 2 workers, query
    assert up.stop() == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    log = up.log.read_text()
    assert "stopping" in log and "worker stopped" in log


async def test_embedded_servers_when_nothing_is_configured(tmp_path: Path):
    """A fresh machine: no URLs set, `faultline up` brings its own PostgreSQL and Redis."""
    env = base_env(tmp_path)
    proc = Up(env, tmp_path / "up.log")
    try:
        proc.wait_ready(timeout=90)
        log = proc.log.read_text()
        assert "embedded PostgreSQL" in log and "embedded Redis" in log
        project = cli(env, "project", "create", "embedded")  # finds the running servers
        token = str(cli(env, "token", "create")["token"])
        await asyncio.sleep(1.2)
        async with aiohttp.ClientSession() as session:
            [first] = await send(session, proc, str(project["client_key"]), 1, "EmbeddedError")
            await wait_count(session, proc, token, first["error_id"], 1, timeout=10)
    finally:
        assert proc.stop() == 0
    assert not (tmp_path / "data" / "servers.json").exists()


async def test_several_gateway_processes_share_the_port(settings: Settings, tmp_path: Path):
    assert settings.database_url and settings.redis_url
    env = base_env(
        tmp_path,
        FAULTLINE_DATABASE_URL=settings.database_url,
        FAULTLINE_REDIS_URL=settings.redis_url,
        FAULTLINE_GATEWAY_PROCESSES="2",
        FAULTLINE_WORKERS="1",
    )
    proc = Up(env, tmp_path / "up.log")
    try:
        proc.wait_ready()
        assert len(proc.children("services.gateway")) == 2
        project = cli(env, "project", "create", "two-gateways")
        token = str(cli(env, "token", "create")["token"])
        await asyncio.sleep(1.2)
        async with aiohttp.ClientSession() as session:
            answers = await send(session, proc, str(project["client_key"]), 40, "TwoGatewaysError")
            await wait_count(session, proc, token, answers[0]["error_id"], 40, timeout=10)
    finally:
        assert proc.stop() == 0
