"""`faultline up`: embedded servers if needed, migrations, then supervised service processes."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import asyncpg

from shared import db
from shared.runtime import SERVERS_FILE
from shared.settings import Settings

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Children get SIGTERM if `up` itself is killed, so nothing is left orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    module: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        # Own process group: Ctrl-C reaches only `up`, which then stops children in order.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()
        logger.info("started child=%s pid=%d", self.name, self.proc.pid)


async def _migrate(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await db.migrate(conn)
    finally:
        await conn.close()


def _wait_healthy(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback health check
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _stop(children: list[Child], grace: float) -> None:
    for c in children:
        if c.proc and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 2
    for c in children:
        if c.proc is None:
            continue
        try:
            c.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("child did not stop in time; killing child=%s", c.name)
            c.proc.kill()
            c.proc.wait()


def up(settings: Settings) -> int:
    """Run everything in the foreground until SIGINT/SIGTERM; returns the exit code."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    servers = []
    servers_file = settings.data_dir / SERVERS_FILE
    try:
        if not settings.database_url or not settings.redis_url:
            from shared.embedded import start_postgres, start_redis

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            pg_url, redis_url = settings.database_url, settings.redis_url
            if not pg_url:
                servers.append(start_postgres(settings.data_dir))
                pg_url = servers[-1].url
                print(f"faultline: embedded PostgreSQL at {pg_url}", flush=True)
            if not redis_url:
                # FAULTLINE_ACK=fsync (the embedded default) waits for each flush's fsync: with `always`
                # that is the next event-loop turn, with everysec the next ~100 ms tick.
                fsync = "everysec" if settings.ack == "memory" else "always"
                servers.append(start_redis(settings.data_dir, appendfsync=fsync))
                redis_url = servers[-1].url
                print(f"faultline: embedded Redis-compatible server at {redis_url}", flush=True)
            settings = settings.with_urls(pg_url, redis_url)
            servers_file.write_text(json.dumps({"database_url": pg_url, "redis_url": redis_url}))
        assert settings.database_url
        applied = asyncio.run(_migrate(settings.database_url))
        print(f"faultline: migrations applied: {', '.join(applied) or 'none pending'}", flush=True)
        env = {**os.environ, **settings.to_env()}
        gateways = [Child(f"gateway-{i + 1}", "services.gateway") for i in range(settings.gateway_processes)]
        query = Child("query", "services.query")
        workers = [Child(f"worker-{i + 1}", "services.worker") for i in range(settings.workers)]
        children = [*gateways, *workers, query]
        for c in children:
            c.start(env)
        deadline = time.monotonic() + 30
        base = f"http://{settings.host}"
        ok = _wait_healthy(f"{base}:{settings.gateway_port}/healthz", deadline) and _wait_healthy(
            f"{base}:{settings.query_port}/healthz", deadline
        )
        if ok:
            print(f"faultline: gateway  {base}:{settings.gateway_port}", flush=True)
            print(
                f"faultline: query    {base}:{settings.query_port}  (public URL {settings.public_url})",
                flush=True,
            )
            print(
                f"faultline: workers  {settings.workers}, gateway processes {settings.gateway_processes};"
                " Ctrl-C stops everything",
                flush=True,
            )
        else:
            print("faultline: services did not become healthy within 30 s; see the log above", flush=True)
        while not stopping:
            now = time.monotonic()
            for c in children:
                assert c.proc is not None
                code = c.proc.poll()
                if code is None or stopping:
                    continue
                if c.next_start == 0.0:
                    # Back off 1, 2, 4 ... 30 s; a child that ran a minute starts over at 1 s.
                    c.restarts = 0 if now - c.started_at > 60 else c.restarts + 1
                    c.next_start = now + min(30.0, 2.0**c.restarts)
                    logger.warning(
                        "child exited child=%s code=%s restart_in=%.0fs", c.name, code, c.next_start - now
                    )
                elif now >= c.next_start:
                    c.next_start = 0.0
                    c.start(env)
            time.sleep(0.2)
        print(
            "faultline: stopping: gateway first, then workers (finishing their batch), then query", flush=True
        )
        _stop(gateways, settings.shutdown_grace)
        _stop(workers, settings.shutdown_grace)
        _stop([query], settings.shutdown_grace)
        return 0
    finally:
        for server in reversed(servers):
            server.stop()
        if servers:
            servers_file.unlink(missing_ok=True)
