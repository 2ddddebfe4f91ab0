"""The real stack for a benchmark run: a database of its own, unique stream names, service processes.

Everything runs on 127.0.0.1 against the local PostgreSQL and Redis (or the URLs in
FAULTLINE_BENCH_ADMIN_DSN / FAULTLINE_BENCH_REDIS_URL). The database is dropped and the streams are
deleted at the end; nothing shared is ever flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from shared import db, keys
from shared.settings import Settings
from shared.stream import Layout

ROOT = Path(__file__).resolve().parents[2]
ADMIN_DSN = os.environ.get("FAULTLINE_BENCH_ADMIN_DSN") or "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("FAULTLINE_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
GROUP = "workers"


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


# ---- per-process figures from /proc ---------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int, peak: bool = False) -> float:
    """Current (or peak: VmHWM) resident set size in MiB."""
    name = "VmHWM:" if peak else "VmRSS:"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def load_average() -> float:
    """One-minute load average: how busy the machine was apart from the benchmark."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


# ---- service processes ----------------------------------------------------------------------------


@dataclass
class Service:
    """One service process started with `python -m <module>` and FAULTLINE_* variables."""

    name: str
    module: str
    env: dict[str, str]
    log: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _log_from: int = 0  # where this start's output begins in the (shared, appended) log

    def start(self) -> Service:
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited; its log:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback only
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.tail()}")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            with self.log.open("rb") as f:
                f.seek(self._log_from)
                if text.encode() in f.read():
                    return
            time.sleep(0.05)
        raise BenchError(f"{self.name} never logged {text!r} within {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, wait, then SIGKILL: never leaves the process behind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# ---- the stack ------------------------------------------------------------------------------------


@dataclass
class Project:
    id: int
    key: str


@dataclass
class Stack:
    """A benchmark database, stream names and the services, torn down by `close()`."""

    workdir: Path
    admin_dsn: str = ADMIN_DSN
    redis_url: str = REDIS_URL
    db_name: str = field(default_factory=lambda: f"faultline_bench_{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=lambda: f"flbench-{uuid.uuid4().hex[:10]}")
    redis: aioredis.Redis | None = None
    services: list[Service] = field(default_factory=list)
    project: Project | None = None
    user_token: str = ""
    shards: int = Settings().stream_shards
    _db_created: bool = False

    @property
    def database_url(self) -> str:
        return with_db(self.admin_dsn, self.db_name)

    @property
    def layout(self) -> Layout:
        return Layout(self.prefix, self.shards)

    @property
    def stream(self) -> str:
        """The bench project's shard: every notice a benchmark queues is the bench project's."""
        assert self.project is not None
        return self.layout.for_project(self.project.id).stream

    @property
    def r(self) -> aioredis.Redis:
        assert self.redis is not None
        return self.redis

    async def open(self) -> None:
        try:
            admin = await asyncpg.connect(self.admin_dsn, timeout=5)
        except (OSError, asyncpg.PostgresError) as e:
            raise BenchError(f"PostgreSQL at {self.admin_dsn} does not answer: {e!r}") from e
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}"')
            self._db_created = True
        finally:
            await admin.close()
        conn = await self.connect()
        try:
            await db.migrate(conn)
            await db.ensure_partitions(conn, back=31, ahead=7)
            project, key = await keys.create_project(conn, "bench")
            self.project = Project(project.id, key)
            self.user_token = await keys.create_user_token(conn, "bench")
        finally:
            await conn.close()
        self.redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=30, socket_connect_timeout=5)
        try:
            await self.redis.ping()
        except Exception as e:
            raise BenchError(f"Redis at {self.redis_url} does not answer: {e!r}") from e
        await self.reset_stream()

    async def connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.database_url, timeout=5)
        await db.init_connection(conn)
        return conn

    async def reset_stream(self) -> None:
        """An empty stream with its consumer group, whatever was there before."""
        await self.r.delete(*[key for shard in self.layout.every for key in (shard.stream, shard.dead)])
        await self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)

    async def drop_keys(self, limit: int = 10_000_000) -> int:
        """Delete every key under this run's prefix (streams, Sentry de-duplication marks, rate-limit
        counters, worker stats): the prefix is unique to the run, so nothing else is touched."""
        dropped = 0
        batch: list[bytes] = []
        async for key in self.r.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += await self.r.unlink(*batch)
                batch = []
            if dropped >= limit:
                break
        if batch:
            dropped += await self.r.unlink(*batch)
        return dropped

    async def stream_counts(self) -> tuple[int, int]:
        """(entries ever added, entries acknowledged) of the notices stream."""
        info = await self.r.xinfo_stream(self.stream)
        added = int(info.get("entries-added") or 0)
        groups = await self.r.xinfo_groups(self.stream)
        group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
        if group is None:
            return added, 0
        lag = group.get("lag")
        if lag is None:  # Redis could not tell after a trim: count from the entries the group has read
            read = group.get("entries-read")
            lag = added - int(read) if read is not None else await self.r.xlen(self.stream)
        return added, added - int(lag) - int(group.get("pending") or 0)

    async def settled_added(self, quiet_s: float = 0.3, limit_s: float = 10) -> int:
        """Entries ever added, once no more arrive: the gateway finishes requests a client gave up on."""
        deadline = time.monotonic() + limit_s
        last = (await self.stream_counts())[0]
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet_s)
            now = (await self.stream_counts())[0]
            if now == last:
                break
            last = now
        return last

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
        env.update(
            {
                "FAULTLINE_DATABASE_URL": self.database_url,
                "FAULTLINE_REDIS_URL": self.redis_url,
                "FAULTLINE_DATA_DIR": str(self.workdir / "data"),
                "FAULTLINE_HOST": "127.0.0.1",
                "FAULTLINE_STREAM_PREFIX": self.prefix,
                "FAULTLINE_STREAM_SHARDS": str(self.shards),
                "FAULTLINE_KEY_REFRESH": "1",
            }
        )
        env.update(extra)
        return env

    def service(self, name: str, module: str, env: dict[str, str], args: list[str] | None = None) -> Service:
        svc = Service(name, module, env, self.workdir / f"{name}.log", args or [])
        self.services.append(svc)
        return svc.start()

    def gateway(
        self, name: str = "gateway", module: str = "services.gateway", **extra: str
    ) -> tuple[Service, int]:
        port = int(extra.pop("FAULTLINE_GATEWAY_PORT", 0)) or free_port()
        svc = self.service(name, module, self.env(FAULTLINE_GATEWAY_PORT=str(port), **extra))
        svc.wait_http(f"http://127.0.0.1:{port}/healthz")
        return svc, port

    def query(self, **extra: str) -> tuple[Service, int]:
        port = free_port()
        svc = self.service("query", "services.query", self.env(FAULTLINE_QUERY_PORT=str(port), **extra))
        svc.wait_http(f"http://127.0.0.1:{port}/healthz")
        return svc, port

    def worker(self, name: str, **extra: str) -> Service:
        svc = self.service(name, "services.worker", self.env(**extra))
        svc.wait_log("worker started")
        return svc

    def stop(self, *services: Service) -> None:
        for s in services:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in services:
            s.stop()

    async def close(self) -> None:
        self.stop(*self.services)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.drop_keys()
            await self.redis.aclose()
        if self._db_created:
            admin = await asyncpg.connect(self.admin_dsn, timeout=5)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            finally:
                await admin.close()


@contextlib.asynccontextmanager
async def stack(workdir: Path) -> AsyncIterator[Stack]:
    s = Stack(workdir)
    try:
        await s.open()
        yield s
    finally:
        await s.close()


class Census:
    """CPU used on the machine during the benchmark, split into the benchmark's own processes (this
    process and its descendants, PostgreSQL backends of the benchmark database, the Redis server) and
    everything else: other work on the same cores lowers every figure, so the report shows it."""

    def __init__(self, db_name: str, interval: float = 1.0) -> None:
        self.db_name = db_name
        self.interval = interval
        self.me = os.getpid()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._ours: dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-census", daemon=True)
        self._t0 = 0.0
        self._marks: list[tuple[str, float, float, float]] = []  # (phase, wall, ours, others)

    def _owned(self, pid: int) -> bool:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if self.db_name.encode() in cmd or b"redis-server" in cmd:
            return True
        if cmd.startswith(b"postgres: ") and b"(" not in cmd and b"[local]" not in cmd:
            return True  # the server's own writer, checkpointer, autovacuum: mostly our writes
        if cmd.startswith(b"/usr/lib/postgresql/"):
            return True  # the postmaster
        seen = 0
        while pid > 1 and seen < 64:  # walk up the parents
            if pid == self.me:
                return True
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return False
            seen += 1
        return False

    def _sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            cpu = cpu_seconds(pid)
            if pid not in self._first:
                self._first[pid] = 0.0 if self._t0 else cpu  # born during the run: all of it counts
                self._ours[pid] = self._owned(pid)
            self._last[pid] = cpu

    def _totals(self) -> tuple[float, float]:
        ours = others = 0.0
        for pid, last in self._last.items():
            used = max(0.0, last - self._first[pid])
            if self._ours[pid]:
                ours += used
            else:
                others += used
        return ours, others

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> Census:
        self._sample()  # processes already running count from now on
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def mark(self, phase: str) -> None:
        """Close a phase: its CPU use is what accumulated since the previous mark."""
        self._sample()
        ours, others = self._totals()
        self._marks.append((phase, time.monotonic(), ours, others))

    def stop(self) -> dict[str, dict[str, float]]:
        """Per phase: cores used on average by the benchmark and by everything else."""
        self._stop.set()
        self._thread.join(5)
        out = {}
        prev = (self._t0, 0.0, 0.0)
        for phase, wall, ours, others in self._marks:
            span = max(1e-9, wall - prev[0])
            out[phase] = {"ours": (ours - prev[1]) / span, "others": (others - prev[2]) / span}
            prev = (wall, ours, others)
        return out
