"""The service as real processes for end-to-end tests: gateway, workers and query on free ports.

`running_stack(settings)` starts `python -m services.gateway`, `services.worker` (N times) and
`services.query`, configured only through FAULTLINE_* variables, waits for every HTTP service's
/healthz, yields their URLs, then SIGTERMs everything and waits for it (SIGKILL after a deadline).
The stack gets stream names of its own, so the in-process fixtures' consumer never competes with
its workers; the database is the one given in `settings`.

    async with running_stack(settings) as stack:
        ... stack.gateway_url, stack.query_url ...

or, in a test module, the `stack` fixture below (import it: `from tests.stack import stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


class StackError(RuntimeError):
    """A service did not start or stop as it should; the message carries its log."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """One service process, its output in a log file."""

    name: str
    module: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, within: float) -> int | None:
        """Wait for the exit (SIGKILL after `within` seconds); returns the exit code."""
        if self.proc is None:
            return None
        try:
            return await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait, 5)


@dataclass
class Stack:
    """A running stack: where to reach it, its settings and its processes."""

    settings: Settings
    gateway_url: str
    query_url: str
    processes: list[Process] = field(default_factory=list)

    def logs(self) -> str:
        """Every process's last lines, for assertion messages."""
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    def check(self) -> None:
        """Fail loudly when a process has died."""
        for p in self.processes:
            if not p.running:
                raise StackError(f"{p.name} exited with {p.proc and p.proc.returncode}:\n{p.tail()}")


async def _wait_healthy(session: aiohttp.ClientSession, stack: Stack, urls: list[str], within: float) -> None:
    """Poll each URL until it answers 200; fail when a process dies or the deadline passes."""
    deadline = time.monotonic() + within
    pending = list(urls)
    while pending:
        stack.check()
        if time.monotonic() > deadline:
            raise StackError(f"no answer from {pending} within {within:.0f}s:\n{stack.logs()}")
        url = pending[0]
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                if resp.status == 200:
                    pending.pop(0)
                    continue
        await asyncio.sleep(0.05)


async def _delete_keys(redis_url: str | None, prefix: str) -> None:
    """Remove the stack's own streams and counters (never anything else)."""
    assert redis_url
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    log_dir: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    stream_prefix: str | None = None,
    ready_timeout: float = 30.0,
    stop_timeout: float = 20.0,
) -> AsyncIterator[Stack]:
    """Start the services against `settings`' database and Redis; stop them all on exit.

    `env` adds or overrides FAULTLINE_* (or any) variables; `stream_prefix` defaults to a fresh one.
    """
    assert settings.database_url and settings.redis_url, "running_stack needs concrete server URLs"
    settings = dataclasses.replace(
        settings,
        gateway_port=free_port(),
        query_port=free_port(),
        stream_prefix=stream_prefix or f"{settings.stream_prefix}-e2e-{uuid.uuid4().hex[:6]}",
        workers=workers,
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    child_env.update(settings.to_env())
    child_env.update(env or {})
    base = f"http://{settings.host}"
    stack = Stack(settings, f"{base}:{settings.gateway_port}", f"{base}:{settings.query_port}")
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    stack.processes = [
        Process("gateway", "services.gateway", log_dir / "gateway.log"),
        *(Process(f"worker-{i}", "services.worker", log_dir / f"worker-{i}.log") for i in range(workers)),
        Process("query", "services.query", log_dir / "query.log"),
    ]
    try:
        for p in stack.processes:
            p.start(child_env)
        health = [f"{stack.gateway_url}/healthz", f"{stack.query_url}/healthz"]
        async with aiohttp.ClientSession() as session:
            await _wait_healthy(session, stack, health, ready_timeout)
        yield stack
    finally:
        for p in stack.processes:
            p.terminate()
        codes = [await p.wait(stop_timeout) for p in stack.processes]
        await _delete_keys(settings.redis_url, f"{settings.stream_prefix}:")
        bad = [(p.name, c) for p, c in zip(stack.processes, codes, strict=True) if c not in (0, None)]
        if bad and sys.exc_info()[0] is None:
            raise StackError(f"services did not stop cleanly {bad}:\n{stack.logs()}")


@pytest.fixture(scope="module")
async def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The real services for one test module, on the session's database and Redis."""
    async with running_stack(settings, tmp_path_factory.mktemp("stack")) as s:
        yield s
