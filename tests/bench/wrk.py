"""Driving `wrk`: installing it when missing, writing its request file, running it, reading its figures."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.payloads import Request
from tests.bench.stack import BenchError, cpu_seconds

SCRIPT = Path(__file__).with_name("post.lua")


def ensure_wrk() -> str:
    """The path of `wrk`, installed from Debian's packages when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed; run `sudo apt-get install -y wrk` (Debian/Ubuntu) and retry")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-qq", "wrk"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "wrk"],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        if cmd[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("wrk")
    if not found:
        raise BenchError(
            "could not install wrk with apt-get; install it (`apt-get install -y wrk`) and retry"
        )
    return found


def _lua_string(data: bytes) -> str:
    """A Lua string literal holding exactly these bytes."""
    out = ['"']
    for c in data:
        if 32 <= c < 127 and c not in (34, 92):
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    out.append('"')
    return "".join(out)


def write_requests(path: Path, requests: Sequence[Request]) -> Path:
    lines = ["return {"]
    for r in requests:
        headers = ", ".join(
            f"[{_lua_string(k.encode())}] = {_lua_string(v.encode())}" for k, v in r.headers.items()
        )
        lines.append(
            f"  {{method = {_lua_string(r.method.encode())}, path = {_lua_string(r.path.encode())},"
            f" headers = {{{headers}}}, body = {_lua_string(r.body)}}},"
        )
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int  # completed responses
    non_2xx: int
    errors: int  # connect/read/write/timeout errors
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_seconds: float  # wrk's own user + system time

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def rate(self) -> float:
        """Successful responses per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cores(self) -> float:
        """wrk's CPU time in cores (1.0 = one core busy all the run)."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """wrk's CPU time as a share of the whole machine over the run."""
        return self.cpu_seconds / (self.seconds * (os.cpu_count() or 1)) if self.seconds else 0.0


def _run_blocking(
    wrk: str, url: str, requests_file: Path, seconds: int, connections: int, threads: int, pause_ms: int
) -> tuple[str, str, float]:
    env = {**os.environ, "WRK_REQUESTS": str(requests_file), "WRK_PAUSE_MS": str(pause_ms)}
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + seconds + 30
    # wait4 gives exactly this child's CPU time; poll so a hung wrk cannot hang the benchmark.
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read().decode(errors="replace"), proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    return out, err, usage.ru_utime + usage.ru_stime


async def run(
    url: str, requests_file: Path, seconds: int, connections: int = 16, threads: int = 1, pause_ms: int = 0
) -> WrkResult:
    """One wrk run; raises BenchError when it produced no figures."""
    wrk = ensure_wrk()
    out, err, cpu = await asyncio.to_thread(
        _run_blocking, wrk, url, requests_file, seconds, connections, threads, pause_ms
    )
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no figures for {url}:\n{out}\n{err}")
    d = json.loads(line[len("WRKJSON ") :])
    return WrkResult(
        requests=d["requests"],
        non_2xx=d["status"],
        errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
        seconds=d["duration_us"] / 1e6,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        cpu_seconds=cpu,
    )


class CpuMeter:
    """CPU share of some processes between `start()` and `stop()` (1.0 = one core fully busy)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._c0: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        return {k: (cpu_seconds(p) - self._c0[k]) / wall if wall else 0.0 for k, p in self.pids.items()}
