"""Past one machine (issue 14): drain rate by shards and workers, on one Redis and on a loopback
cluster, and the gateway's accepted rate in each FAULTLINE_ACK mode.

`python -m tests.bench.shards [--smoke]` (run by `make bench` after the main suite) writes its section
of BENCHMARKS.md between markers. Small and bounded: a few thousand notices per drain, a few seconds
of wrk per ack mode. Drain: worker processes are started on empty streams and frozen (SIGSTOP), the
backlog is queued over 16 projects (so over up to 16 shards) through the gateway's own publisher,
then the workers are resumed; the clock runs from the resume to the last notice stored.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared import db, ids, keys, stream
from shared.stream import Layout, Publisher
from tests.bench import payloads, wrk
from tests.bench.fill import raw_notice, templates
from tests.bench.stack import ADMIN_DSN, REDIS_URL, ROOT, Project, with_db
from tests.faults.procs import Service, service_env, wait_http
from tests.faults.servers import Node, start_cluster

START, END = "<!-- shards:start -->", "<!-- shards:end -->"
PROJECTS = 16


@dataclass(frozen=True)
class Config:
    notices: int = 12_000
    shards: tuple[int, ...] = (1, 4, 16)
    workers: tuple[int, ...] = (1, 2, 4)
    cluster: bool = True
    wrk_seconds: int = 5
    runs: int = 1

    @classmethod
    def smoke(cls) -> Config:
        return cls(notices=600, shards=(16,), workers=(1, 2), cluster=False, wrk_seconds=1)


def log(msg: str) -> None:
    print(f"[shards] {msg}", file=sys.stderr, flush=True)


async def database(name: str) -> tuple[str, list[Project]]:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_db(ADMIN_DSN, name)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await db.init_connection(conn)
        await db.migrate(conn)
        await db.ensure_partitions(conn, back=3, ahead=7)
        owned = []
        for i in range(PROJECTS):
            project, key = await keys.create_project(conn, f"bench-{i}")
            owned.append(Project(project.id, key))
        return dsn, owned
    finally:
        await conn.close()


async def drop(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fill(
    redis_url: str, layout: Layout, owned: list[Project], count: int, spread: bool = False
) -> None:
    """`count` raw Exceptioner notices over the projects (50 errors each), queued as a gateway would:
    each project's in its shard, or (`spread`) each 500-notice chunk in the next shard round-robin."""
    r = stream.connect(redis_url)
    publisher = Publisher(r, layout, 1 << 40)
    runner = asyncio.create_task(publisher.run())
    try:
        now = ids.uuid7_ms(ids.uuid7())
        per = count // len(owned)
        jobs = []
        for project in owned:
            tpls = templates(project, 50)
            notices = [stream.encode(raw_notice(project, tpls[i % 50], now + i)) for i in range(per)]
            for k in range(0, per, 500):
                shard_of = len(jobs) if spread else project.id  # the publisher shards by this number
                jobs.append(publisher.publish(notices[k : k + 500], project_id=shard_of))
        await asyncio.gather(*jobs)
    finally:
        runner.cancel()
        await publisher.aclose()
        await r.aclose()


async def stored(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notices"))
    finally:
        await conn.close()


async def drain(
    redis_url: str,
    dsn: str,
    owned: list[Project],
    shards: int,
    workers: int,
    n: int,
    tmp: Path,
    spread: bool = False,
) -> float:
    """Notices stored per second by `workers` worker processes over `shards` shards."""
    conn = await asyncpg.connect(dsn, timeout=5)
    await conn.execute("TRUNCATE notices, errors, error_hourly CASCADE")
    await conn.close()
    prefix = f"flshard-{uuid.uuid4().hex[:8]}"
    env = service_env(
        dsn,
        redis_url,
        FAULTLINE_STREAM_PREFIX=prefix,
        FAULTLINE_STREAM_SHARDS=str(shards),
        FAULTLINE_BLOCK_MS="100",
    )
    procs = [Service("services.worker", env, tmp / f"{prefix}-w{i}.log").start() for i in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while not all("worker started" in p.text() for p in procs):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # set-up done: groups made, the first blocking read sent
        for p in procs:
            assert p.proc is not None
            p.proc.send_signal(signal.SIGSTOP)
        total = n // len(owned) * len(owned)
        await fill(redis_url, Layout(prefix, shards), owned, total, spread)
        t0 = time.monotonic()
        for p in procs:
            assert p.proc is not None
            p.proc.send_signal(signal.SIGCONT)
        while (done := await stored(dsn)) < total:
            if time.monotonic() - t0 > 120:
                raise RuntimeError(f"drain stalled at {done} of {total}")
            await asyncio.sleep(0.02)
        return total / (time.monotonic() - t0)
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGCONT)
            p.stop()


ACKS = (("memory", "everysec"), ("fsync", "everysec"), ("fsync", "always"), ("replica", "always"))


async def accepted(
    mode: str, appendfsync: str, owned: list[Project], dsn: str, tmp: Path, seconds: int
) -> tuple[float, float]:
    """(2xx/s, p50 ms) of one gateway under wrk with FAULTLINE_ACK=mode on a valkey with an AOF (and a
    replica for `replica`)."""
    master = Node(tmp / f"ack-{mode}-{appendfsync}", appendfsync=appendfsync).start()
    replica = None
    try:
        if mode == stream.REPLICA:
            replica = Node(tmp / f"ack-{mode}-{appendfsync}-replica").start()
            replica.client().replicaof("127.0.0.1", master.port)
            deadline = time.monotonic() + 30
            while replica.client().info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("replica never synced")
                await asyncio.sleep(0.1)
        env = service_env(dsn, master.url, FAULTLINE_ACK=mode)
        gw = Service("services.gateway", env, tmp / f"gateway-{mode}-{appendfsync}.log").start()
        try:
            base = f"http://127.0.0.1:{env['FAULTLINE_GATEWAY_PORT']}"
            await wait_http(f"{base}/healthz")
            reqs = payloads.requests(payloads.exceptioner, owned[0], 50, 1)
            path = wrk.write_requests(tmp / f"ack-{mode}-{appendfsync}.lua", reqs)
            result = await wrk.run(base + "/", path, seconds, connections=32)
            if "WAITAOF refused" in gw.text() or "no connected replica" in gw.text():
                raise RuntimeError(f"the gateway warned it cannot promise {mode}: {gw.text()[-500:]}")
            return result.rate, result.p50_ms
        finally:
            gw.stop()
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


async def suite(cfg: Config, tmp: Path) -> dict[str, object]:
    name = f"faultline_shards_{uuid.uuid4().hex[:8]}"
    dsn, owned = await database(name)
    out: dict[str, object] = {"drain": {}, "ack": {}, "hot": {}}
    cluster = None
    try:
        servers = [("one Redis", REDIS_URL)]
        if cfg.cluster:
            cluster = start_cluster(tmp / "cluster", masters=3, replicas=False)
            servers.append(("3-master cluster", cluster.url))
        for label, url in servers:
            for shards in cfg.shards:
                for workers in cfg.workers:
                    rates = [
                        await drain(url, dsn, owned, shards, workers, cfg.notices, tmp)
                        for _ in range(cfg.runs)
                    ]
                    rate = statistics.median(rates)
                    out["drain"][f"{label}|{shards}|{workers}"] = rate  # type: ignore[index]
                    log(f"drain {label} shards={shards} workers={workers}: {rate:.0f} notices/s")
        # The shard choice: one hot project's backlog in its own shard (project-affine, as the gateway
        # does) or spread over all 16, drained by 2 workers that read every shard either way.
        for placement in ("affine", "spread"):
            rates = [
                await drain(REDIS_URL, dsn, owned[:1], 16, 2, cfg.notices, tmp, placement == "spread")
                for _ in range(cfg.runs)
            ]
            out["hot"][placement] = statistics.median(rates)  # type: ignore[index]
            log(f"hot project {placement}: {out['hot'][placement]:.0f} notices/s")  # type: ignore[index]
        for mode, appendfsync in ACKS:
            rate, p50 = await accepted(mode, appendfsync, owned, dsn, tmp, cfg.wrk_seconds)
            out["ack"][f"{mode}|{appendfsync}"] = (rate, p50)  # type: ignore[index]
            log(f"gateway ack={mode} appendfsync={appendfsync}: {rate:.0f}/s p50 {p50:.1f} ms")
    finally:
        if cluster is not None:
            cluster.stop()
        await drop(name)
    return out


def render(R: dict[str, object], cfg: Config) -> str:
    drains: dict[str, float] = R["drain"]  # type: ignore[assignment]
    acks: dict[str, tuple[float, float]] = R["ack"]  # type: ignore[assignment]
    lines = [START, "## Past one machine: shards, workers, acknowledgement modes", ""]
    lines.append(
        f"`python -m tests.bench.shards` ({'smoke, ' if not cfg.cluster else ''}{cfg.notices} notices per "
        f"drain over {PROJECTS} projects, 50 errors each; worker processes frozen while the backlog is "
        "queued, timed from their resume to the last notice stored; one run per figure, on a 2-core "
        "machine shared with other work, so read differences under ~15% as noise)."
    )
    lines += ["", "Drain rate (notices/s):", ""]
    labels = sorted({k.split("|")[0] for k in drains}, key=lambda s: s != "one Redis")
    lines.append(
        "| server | shards | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in cfg.workers) + " |"
    )
    lines.append("| --- | --- | " + " | ".join("---" for _ in cfg.workers) + " |")
    for label in labels:
        for shards in cfg.shards:
            cells = [f"{drains.get(f'{label}|{shards}|{w}', 0):,.0f}" for w in cfg.workers]
            lines.append(f"| {label} | {shards} | " + " | ".join(cells) + " |")
    hot: dict[str, float] = R.get("hot", {})  # type: ignore[assignment]
    if hot:
        lines += ["", "One hot project (all notices one project's, 50 errors), 16 shards, 2 workers:", ""]
        lines += ["| placement | notices/s |", "| --- | --- |"]
        lines.append(
            f"| project-affine: its one shard (what the gateway does) | {hot.get('affine', 0):,.0f} |"
        )
        lines.append(f"| spread over all 16 shards | {hot.get('spread', 0):,.0f} |")
    lines += [
        "",
        f"Gateway, single Exceptioner POSTs, wrk 32 connections for {cfg.wrk_seconds} s, one process:",
        "",
    ]
    lines += [
        "| FAULTLINE_ACK | server's appendfsync | accepted/s | p50 ms | a 2xx waits for |",
        "| --- | --- | --- | --- | --- |",
    ]
    waits = {
        "memory": "the entry in the server's memory",
        "fsync": "WAITAOF 1 0: the entry fsynced to the AOF",
        "replica": "WAITAOF 1 0 and WAIT 1: on disk and on one replica",
    }
    for mode, appendfsync in ACKS:
        rate, p50 = acks.get(f"{mode}|{appendfsync}", (0.0, 0.0))
        lines.append(f"| `{mode}` | `{appendfsync}` | {rate:,.0f} | {p50:.1f} | {waits[mode]} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write(section: str, out: Path) -> None:
    """Replace this section of `out` (or append it), leaving the rest of the report alone."""
    old = out.read_text() if out.exists() else ""
    start, end = old.find(START), old.find(END)
    if start >= 0 and end > start:
        text = old[:start] + section.rstrip("\n") + old[end + len(END) :]
    else:
        text = old.rstrip("\n") + "\n\n" + section
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.shards", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny counts, one Redis only (CI)")
    p.add_argument("--out", type=Path, help="report to update (default BENCHMARKS.md; smoke: none)")
    args = p.parse_args(argv)
    cfg = Config.smoke() if args.smoke else Config()
    with tempfile.TemporaryDirectory(prefix="faultline-shards-") as tmp:
        R = asyncio.run(suite(cfg, Path(tmp)))
    section = render(R, cfg)
    print(section)
    out = args.out or (None if args.smoke else ROOT / "BENCHMARKS.md")
    if out is not None:
        write(section, out)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
