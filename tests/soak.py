"""`make soak`: a bounded run of mixed valid and hostile traffic while workers are killed.

Starts a gateway and two workers (real processes) on a database of its own, sends traffic for
`--seconds` (default 60) from a bounded number of concurrent clients, SIGKILLs a worker every few
seconds and starts a replacement, then waits for the backlog to drain and checks:
acknowledged == stored (exactly once each) and no 5xx other than the intended 503s.
The figures are printed and written into BENCHMARKS.md between the soak markers.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from shared import db, keys
from tests.faults.procs import ROOT, Service, service_env, stored_ids, wait_http

ADMIN_DSN = os.environ.get("FAULTLINE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FAULTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
_BOMB = gzip.compress(b"\0" * (64 << 20), 9)
_HUGE = b'{"message": "' + b"x" * (2 << 20) + b'"}'


def valid(i: int) -> bytes:
    exc = f"SoakError{i % 20}"
    return (
        b'{"message": "%s: soak %d", "error": {"exception": "%s", "mode": "production", '
        b'"backtrace": ["[PROJECT_ROOT]/app/soak.rb:%d:in `run%d\'"]}}'
        % (exc.encode(), i, exc.encode(), i % 50, i % 20)
    )


def hostile(rng: random.Random, key: str) -> tuple[bytes, dict[str, str], str]:
    """A request the gateway must refuse with a 4xx (body, headers, what it is)."""
    kind = rng.choice(
        [
            "bad_json",
            "not_hash",
            "missing",
            "bad_key",
            "no_key",
            "bomb",
            "bad_gzip",
            "encoding",
            "deep",
            "huge",
        ]
    )
    h = {"Api-Key": key, "Content-Type": "application/json"}
    if kind == "bad_json":
        return b'{"message": ', h, kind
    if kind == "not_hash":
        return b"[1,2,3]", h, kind
    if kind == "missing":
        return b'{"message": "x"}', h, kind
    if kind == "bad_key":
        return valid(0), {**h, "Api-Key": uuid.uuid4().hex}, kind
    if kind == "no_key":
        return valid(0), {"Content-Type": "application/json"}, kind
    if kind == "bomb":  # 64 MiB of zeros in ~64 KiB: must cost the gateway almost nothing
        return _BOMB, {**h, "Content-Encoding": "gzip"}, kind
    if kind == "bad_gzip":
        return b"\x1f\x8b\x08\x00garbage", {**h, "Content-Encoding": "gzip"}, kind
    if kind == "encoding":
        return valid(0), {**h, "Content-Encoding": "compress"}, kind
    if kind == "deep":
        return b"[" * 5000 + b"]" * 5000, h, kind
    return _HUGE, h, kind


def _deep(levels: int) -> bytes:
    return b'{"k":' * levels + b"1" + b"}" * levels


def stored_hostile(rng: random.Random, pid: int, key: str, i: int) -> tuple[str, bytes, dict[str, str], str]:
    """A hostile request a protocol acknowledges (so its notice must be stored): (path, body, headers, kind)."""
    kind = rng.choice(["deep_events", "nan_time", "far_future", "huge_ints", "long_lists", "secrets"])
    if kind == "deep_events":  # Exceptionless answers 202 before parsing: nesting past orjson's 1024
        body = b'{"type": "error", "message": "deep %d", "data": {"x": ' % i + _deep(1100) + b"}}"
        return (
            "/api/v2/events",
            body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            kind,
        )
    if kind == "nan_time":
        event = b'{"timestamp": "nan", "message": "nan %d", "extra": {"n": [NaN, 1e400]}}' % i
        envelope = b'{"event_id": "%s"}\n{"type": "event"}\n' % uuid.uuid4().hex.encode() + event + b"\n"
        headers = {
            "X-Sentry-Auth": f"Sentry sentry_key={key}",
            "Content-Type": "application/x-sentry-envelope",
        }
        return f"/api/{pid}/envelope/", envelope, headers, kind
    if kind == "far_future":
        body = (
            b'{"notifier": {}, "event": {"class_name": "E", "message": "m%d", "timestamp": 300000000000}}' % i
        )
        return f"/notify?auth_token={key}", body, {"Content-Type": "application/json"}, kind
    if kind == "huge_ints":
        body = (
            b'{"errors": [{"type": "E", "message": "m%d", "backtrace": [{"line": "99999999999999999999"}]}], '
            % i
        )
        body += b'"params": {"n": 18446744073709551616, "d": ' + _deep(100) + b"}}"
        return f"/api/v3/projects/{pid}/notices?key={key}", body, {"Content-Type": "application/json"}, kind
    if kind == "long_lists":
        trace = b",".join(b'"app/x.rb:%d:in `f\'"' % n for n in range(3000))
        body = b'{"message": "E: lists %d", "error": {"exception": "E", "backtrace": [' % i + trace + b"]}}"
        return "/v1/notices", body, {"Api-Key": key, "Content-Type": "application/json"}, kind
    body = (
        b'{"message": "E: card 4111 1111 1111 1111 %d", "error": {"exception": "E", "parameters": '
        b'{"pass\\u0077ord": "hunter2", "url": "https://x/?api_key=hunter2"}}}' % i
    )
    return "/v1/notices", body, {"Api-Key": key, "Content-Type": "application/json"}, kind


def peak_rss_mib(pid: int | None) -> float:
    """The process's peak resident set (VmHWM), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


class Tally:
    def __init__(self) -> None:
        self.acked: list[str] = []
        self.statuses: dict[int, int] = {}
        self.by_kind: dict[str, int] = {}
        self.unexpected: list[str] = []
        self.failures = 0
        self.hostile_acked = 0  # hostile requests a protocol acknowledged: each one's notice must be stored

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def client(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    deadline: float,
    tally: Tally,
    seed: int,
    max_requests: int,
    other: tuple[int, str] | None = None,
) -> None:
    rng = random.Random(seed)
    for i in range(max_requests):
        if time.monotonic() >= deadline:
            return
        if other is not None and rng.random() < 0.1:  # hostile but acknowledged, on every protocol
            path, body, headers, kind = stored_hostile(rng, other[0], other[1], i)
            tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
            try:
                async with session.post(f"{url}{path}", data=body, headers=headers) as r:
                    tally.count(r.status)
                    if r.status < 300:
                        tally.hostile_acked += 1
                    elif r.status >= 500 and r.status != 503:
                        tally.unexpected.append(f"{kind} -> {r.status}")
                    elif r.status != 503:
                        tally.unexpected.append(f"{kind} refused with {r.status}")
            except (TimeoutError, aiohttp.ClientError):
                tally.failures += 1
            continue
        hostile_turn = rng.random() < 0.3
        if hostile_turn:
            body, headers, kind = hostile(rng, key)
        else:
            body, headers, kind = valid(i), {"Api-Key": key, "Content-Type": "application/json"}, "valid"
        tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
        try:
            async with session.post(f"{url}/v1/notices", data=body, headers=headers) as r:
                tally.count(r.status)
                if kind == "valid" and r.status == 201:
                    tally.acked.append((await r.json())["id"])
                elif r.status >= 500 and r.status != 503:
                    tally.unexpected.append(f"{kind} -> {r.status}")
                elif kind != "valid" and r.status < 400:
                    tally.unexpected.append(f"{kind} accepted with {r.status}")
        except (TimeoutError, aiohttp.ClientError):
            tally.failures += 1


async def soak(seconds: float, clients: int, kill_every: float, log_dir: Path) -> dict[str, object]:
    name = f"faultline_soak_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    services: list[Service] = []
    try:
        conn = await asyncpg.connect(dsn)
        await db.migrate(conn)
        project, key = await keys.create_project(conn, "soak")
        other_project, other_key = await keys.create_project(conn, "soak-hostile")
        await conn.close()
        env = service_env(dsn, REDIS_URL, FAULTLINE_BACKLOG_LIMIT="200000")
        url = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
        gateway = Service("services.gateway", env, log_dir / "gateway.log").start()
        workers = [Service("services.worker", env, log_dir / f"worker-{i}.log").start() for i in range(2)]
        services += [gateway, *workers]
        await wait_http(f"{url}/healthz")
        tally = Tally()
        deadline = time.monotonic() + seconds
        kills = 0
        worker_peak = 0.0
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            traffic = [
                asyncio.create_task(
                    client(session, url, key, deadline, tally, seed, 1_000_000, (other_project.id, other_key))
                )
                for seed in range(clients)
            ]
            next_kill = time.monotonic() + kill_every
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                if time.monotonic() >= next_kill:
                    victim = workers.pop(0)
                    worker_peak = max(worker_peak, peak_rss_mib(victim.proc.pid if victim.proc else None))
                    victim.kill(signal.SIGKILL)
                    kills += 1
                    fresh = Service("services.worker", env, log_dir / f"worker-r{kills}.log").start()
                    workers.append(fresh)
                    services.append(fresh)
                    next_kill += kill_every
                    print(
                        f"soak: {int(deadline - time.monotonic())}s left, acknowledged={len(tally.acked)} "
                        f"workers killed={kills}",
                        flush=True,
                    )
            await asyncio.gather(*traffic)
        drain_start = time.monotonic()
        ids: list[str] = []
        expected = set(tally.acked)
        while time.monotonic() - drain_start < 120:
            ids = await stored_ids(dsn, project.id)
            if expected <= set(ids):
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - drain_start
        hostile_stored = 0
        for _ in range(120):  # the hostile-but-acknowledged notices: every one stored, none dead-lettered
            hostile_stored = len(await stored_ids(dsn, other_project.id))
            if hostile_stored >= tally.hostile_acked:
                break
            await asyncio.sleep(0.5)
        gateway_peak = peak_rss_mib(gateway.proc.pid if gateway.proc else None)
        for w in workers:
            worker_peak = max(worker_peak, peak_rss_mib(w.proc.pid if w.proc else None))
        return {
            "hostile_acknowledged": tally.hostile_acked,
            "hostile_stored": hostile_stored,
            "gateway_peak_rss_mib": round(gateway_peak, 1),
            "worker_peak_rss_mib": round(worker_peak, 1),
            "seconds": seconds,
            "clients": clients,
            "workers_killed": kills,
            "requests": sum(tally.statuses.values()),
            "acknowledged": len(tally.acked),
            "stored": len(ids),
            "stored_unique": len(set(ids)),
            "missing": len(expected - set(ids)),
            "statuses": dict(sorted(tally.statuses.items())),
            "kinds": dict(sorted(tally.by_kind.items())),
            "unexpected": tally.unexpected[:20],
            "connection_failures": tally.failures,
            "drain_seconds": round(drained, 1),
        }
    finally:
        for s in services:
            s.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def write_report(result: dict[str, object], path: Path) -> None:
    ok = (
        result["missing"] == 0
        and result["stored"] == result["stored_unique"] == result["acknowledged"]
        and result.get("hostile_stored") == result.get("hostile_acknowledged")
        and not result["unexpected"]
    )
    block = "\n".join(
        [
            START,
            "## Soak (`make soak`)",
            "",
            f"{result['seconds']:.0f} s of mixed traffic from {result['clients']} clients (30% hostile: bad JSON, "
            "non-objects, missing fields, bad/no keys, gzip bombs, corrupt gzip, unknown encodings, deep nesting, "
            f"2 MiB bodies) while a worker was SIGKILLed and replaced every few seconds ({result['workers_killed']} kills); "
            "10% hostile requests a protocol acknowledges (Exceptionless nested past 1024 levels, Sentry NaN times "
            "and NaN/1e400 literals, CrashLog year 11476, Airbrake integers past 64 bits, 3000-line backtraces, "
            "secrets in escaped names and URLs), each of which must be stored.",
            "",
            "| figure | value |",
            "| --- | --- |",
            f"| requests | {result['requests']} |",
            f"| acknowledged (201) | {result['acknowledged']} |",
            f"| stored | {result['stored']} (unique {result['stored_unique']}, missing {result['missing']}) |",
            f"| statuses | {result['statuses']} |",
            f"| request kinds | {result['kinds']} |",
            f"| unexpected answers | {result['unexpected'] or 'none'} |",
            f"| drain after traffic stopped | {result['drain_seconds']} s |",
            f"| hostile acknowledged / stored | {result.get('hostile_acknowledged')} / {result.get('hostile_stored')} |",
            f"| peak RSS (VmHWM) | gateway {result.get('gateway_peak_rss_mib')} MiB, "
            f"workers {result.get('worker_peak_rss_mib')} MiB (largest) |",
            f"| verdict | {'acknowledged == stored, no unexpected 5xx' if ok else 'FAILED'} |",
            END,
        ]
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--kill-every", type=float, default=5)
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = p.parse_args()
    if not 1 <= args.seconds <= 600 or not 1 <= args.clients <= 64:
        sys.exit("soak: --seconds must be 1..600 and --clients 1..64")
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(soak(args.seconds, args.clients, args.kill_every, Path(tmp)))
    for k, v in result.items():
        print(f"soak: {k} = {v}")
    if not args.no_write:
        write_report(result, ROOT / "BENCHMARKS.md")
    ok = result["missing"] == 0 and result["stored"] == result["stored_unique"] == result["acknowledged"]
    ok = ok and result["hostile_stored"] == result["hostile_acknowledged"]
    if not ok or result["unexpected"]:
        sys.exit("soak: FAILED")
    print("soak: passed — acknowledged == stored, no unexpected 5xx")


if __name__ == "__main__":
    main()
