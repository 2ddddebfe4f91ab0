"""Real service processes for fault tests: start, kill, restart, and count what got stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from shared.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    env.update(
        {
            "FAULTLINE_DATABASE_URL": database_url,
            "FAULTLINE_REDIS_URL": redis_url,
            "FAULTLINE_GATEWAY_PORT": str(free_port()),
            "FAULTLINE_QUERY_PORT": str(free_port()),
            "FAULTLINE_STREAM_PREFIX": f"flfault-{uuid.uuid4().hex[:8]}",
            "FAULTLINE_KEY_REFRESH": "0.3",
            "FAULTLINE_CLAIM_IDLE_MS": "1000",
            "FAULTLINE_BLOCK_MS": "100",
            "FAULTLINE_SHUTDOWN_GRACE": "5",
        }
    )
    env.update(extra)
    return env


@dataclass
class Service:
    """One `python -m services.X` process with its log file."""

    module: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _fh: object = field(default=None, repr=False)

    def start(self) -> Service:
        fh = self.log.open("ab")
        self._fh = fh
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        try:
            self.kill(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
        if self._fh is not None:
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def stored_ids(database_url: str, project_id: int) -> list[str]:
    """Every stored notice id of a project (duplicates would show twice; the PK forbids them)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id FROM notices WHERE project_id = $1", project_id)
        return [str(r["id"]) for r in rows]
    finally:
        await conn.close()


async def counted(database_url: str, project_id: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(notices_count), 0) FROM errors WHERE project_id = $1", project_id
            )
        )
    finally:
        await conn.close()


async def wait_stored(database_url: str, project_id: int, expected: set[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = await stored_ids(database_url, project_id)
        if expected <= set(ids):
            return ids
        await asyncio.sleep(0.1)
    missing = expected - set(ids)
    raise AssertionError(f"{len(missing)} acknowledged notices never stored (of {len(expected)})")


def notice(i: int) -> dict[str, object]:
    return {
        "message": f"FaultError: {i}",
        "error": {
            "exception": "FaultError",
            "mode": "production",
            "backtrace": ["[PROJECT_ROOT]/app/jobs/fault_job.rb:12:in `perform'"],
        },
    }


async def post_many(
    gateway: str, key: str, n: int, concurrency: int = 8, timeout: float = 5
) -> tuple[list[str], dict[int, int], int]:
    """POST n notices; returns (ids acknowledged with 2xx, status counts, connection failures)."""
    acked: list[str] = []
    statuses: dict[int, int] = {}
    failures = 0
    counter = iter(range(n))

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for i in counter:
            try:
                async with session.post(
                    f"{gateway}/v1/notices", json=notice(i), headers={"Api-Key": key}
                ) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if 200 <= r.status < 300:
                        acked.append((await r.json())["id"])
                    elif r.status == 503:
                        assert r.headers.get("Retry-After"), "503 without Retry-After"
            except (TimeoutError, aiohttp.ClientError):
                failures += 1

    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
    return acked, statuses, failures
