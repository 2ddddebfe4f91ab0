"""`python -m tests.bench [--smoke]`: the benchmark suite against the real stack on the local servers.

Full: every figure from --runs runs (median), written to BENCHMARKS.md. Smoke: every benchmark
once with tiny counts, checking only that each completes and that stored == accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench import e2e, fill, gateway, probe, profile, read, report, workers, wrk
from tests.bench.config import Config
from tests.bench.stack import ROOT, BenchError, Census, Service, Stack, load_average, machine, rss_mib, stack

Results = dict[str, Any]


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _run_figures(r: gateway.LoadRun) -> dict[str, float]:
    w = r.result
    return {
        "requests_per_s": w.rate,
        "notices_per_s": r.notices_per_s,
        "p50_ms": w.p50_ms,
        "p99_ms": w.p99_ms,
        "non_2xx": w.non_2xx,
        "errors": w.errors,
        "wrk_cores": w.cores,
        **{f"cpu_{k}": v for k, v in probe.summarise(r.cpu).items()},
    }


async def gateway_phase(s: Stack, cfg: Config, R: Results, workdir: Path) -> tuple[Service, int]:
    gw, port = s.gateway(FAULTLINE_BACKLOG_LIMIT=str(1 << 30))
    url = f"http://127.0.0.1:{port}"
    cport, cpid = await gateway.start_ceiling(s)
    curl = f"http://127.0.0.1:{cport}"
    fport, fpid = await gateway.start_floor(s)
    furl = f"http://127.0.0.1:{fport}"
    rpid = await probe.redis_pid(s.r) or 0
    found = await gateway.probe(s, url, workdir, cfg.variants)
    R["protocols"] = {
        a.protocol.name: {"route": a.protocol.route, "shape": a.shape_name} for a in found.available
    }
    R["missing"] = found.missing
    log(f"protocols measured: {', '.join(R['protocols']) or 'none'}; missing: {found.missing or 'none'}")
    single = [a for a in found.available if not a.protocol.batch]
    batched = [a for a in found.available if a.protocol.batch]
    exc = next((a for a in single if a.protocol.name == "exceptioner"), None)
    if exc is None:
        raise BenchError(
            "the gateway does not accept Exceptioner notices; nothing to compare with the ceiling"
        )
    g = R.setdefault("gateway", {})
    c = R.setdefault("ceiling", {})
    await s.reset_stream()
    for run in range(cfg.runs):
        log(f"gateway run {run + 1}/{cfg.runs}")
        r = await gateway.load(
            s,
            "ceiling",
            curl,
            exc.requests_file,
            cfg.load_seconds,
            cfg.connections,
            {"ceiling": cpid},
            check_stream=False,
        )
        c.setdefault("single", []).append(_run_figures(r))
        r = await gateway.load(
            s,
            "queueing floor",
            furl,
            exc.requests_file,
            cfg.load_seconds,
            cfg.connections,
            {"floor": fpid, "redis": rpid},
            check_stream=False,
        )
        c.setdefault("floor", []).append(_run_figures(r))
        await s.reset_stream()
        for a in single:
            if a is not exc:  # each protocol's ratio is to the ceiling on its own bodies, measured beside it
                r = await gateway.load(
                    s,
                    "ceiling",
                    curl,
                    a.requests_file,
                    cfg.load_seconds,
                    cfg.connections,
                    {"ceiling": cpid},
                    check_stream=False,
                )
                c.setdefault("same_bodies", {}).setdefault(a.protocol.name, []).append(_run_figures(r))
            r = await gateway.load(
                s,
                a.protocol.name,
                url,
                a.requests_file,
                cfg.load_seconds,
                cfg.connections,
                {"gateway": gw.pid, "redis": rpid},
            )
            g.setdefault(a.protocol.name, []).append(_run_figures(r))
            await s.reset_stream()
        for a in batched:
            r = await gateway.load(
                s,
                "ceiling-batch",
                curl,
                a.requests_file,
                cfg.load_seconds,
                cfg.connections,
                {"ceiling": cpid},
                per_request=a.protocol.per_request,
                check_stream=False,
            )
            c.setdefault("batch", []).append(_run_figures(r))
            r = await gateway.load(
                s,
                a.protocol.name,
                url,
                a.requests_file,
                cfg.load_seconds,
                cfg.connections,
                {"gateway": gw.pid, "redis": rpid},
                per_request=a.protocol.per_request,
            )
            g.setdefault(a.protocol.name, []).append(_run_figures(r))
            await s.reset_stream()
    if R["profile"]:
        with profile.record(True, gw.pid, "gateway-exceptioner", cfg.load_seconds + 5):
            await gateway.load(s, "profiled", url, exc.requests_file, cfg.load_seconds, cfg.connections, {})
        await s.reset_stream()
    # Two processes sharing each port (SO_REUSEPORT), as FAULTLINE_GATEWAY_PROCESSES=2 would run them.
    gw2, _ = s.gateway("gateway-2", FAULTLINE_GATEWAY_PORT=str(port), FAULTLINE_BACKLOG_LIMIT=str(1 << 30))
    c2 = s.service("ceiling-2", "tests.bench.ceiling", s.env(), [str(cport)])
    c2.wait_http(f"{curl}/healthz")
    for run in range(cfg.runs):
        log(f"two-process run {run + 1}/{cfg.runs}")
        r = await gateway.load(
            s,
            "ceiling x2",
            curl,
            exc.requests_file,
            cfg.load_seconds,
            2 * cfg.connections,
            {"ceiling": cpid, "ceiling#2": c2.pid},
            check_stream=False,
        )
        c.setdefault("x2", []).append(_run_figures(r))
        r = await gateway.load(
            s,
            "gateway x2",
            url,
            exc.requests_file,
            cfg.load_seconds,
            2 * cfg.connections,
            {"gateway": gw.pid, "gateway#2": gw2.pid, "redis": rpid},
        )
        g.setdefault("exceptioner x2", []).append(_run_figures(r))
        await s.reset_stream()
    R["rss"]["ceiling (bare aiohttp)"] = rss_mib(cpid, peak=True)
    R["rss"]["gateway, second process"] = rss_mib(gw2.pid, peak=True)
    s.stop(gw2, c2, *[x for x in s.services if x.name in ("ceiling", "floor")])
    R["rss_gateway_after_load"] = rss_mib(gw.pid, peak=True)
    return gw, port


async def worker_phase(s: Stack, cfg: Config, R: Results) -> None:
    assert s.project is not None
    tpls = fill.templates(s.project, cfg.drain_errors)
    W = R.setdefault("workers", {})
    for run in range(cfg.runs):
        log(f"worker run {run + 1}/{cfg.runs}")
        for n in (1, 2):
            ceiling = await workers.write_ceiling(s, tpls, cfg.ceiling_notices, cfg.batch_size, connections=n)
            W.setdefault(f"ceiling{n}", []).append({"notices_per_s": ceiling.rate})
        for n in (1, 2):
            d = await workers.drain(s, tpls, n, cfg.drain_notices, cfg.batch_size, cfg.timeout)
            W.setdefault(f"drain{n}", []).append(
                {
                    "notices_per_s": d.rate,
                    "per_worker": d.per_worker,
                    "seconds": d.seconds,
                    "rss_peak_mib": d.rss_peak_mib,
                    "rss_idle_mib": d.rss_idle_mib,
                    "pg_commits_per_1000": d.pg_commits_per_1000,
                    "redis_calls_per_1000": d.redis_calls_per_1000,
                    **{f"cpu_{k}": v for k, v in d.cpu.items()},
                }
            )
    if R["profile"]:
        await workers.drain(
            s, tpls, 1, cfg.drain_notices, cfg.batch_size, cfg.timeout, profile_as="worker-drain"
        )
    await workers.truncate(s)


async def e2e_phase(s: Stack, cfg: Config, R: Results, gw: Service, port: int, workdir: Path) -> None:
    assert s.project is not None
    url = f"http://127.0.0.1:{port}"
    await s.reset_stream()
    ws = [s.worker(f"e2e-worker-{i}") for i in range(2)]
    rpid = await probe.redis_pid(s.r) or 0
    conn = await s.connect()
    E = R.setdefault("e2e", {})
    files = {name: workdir / f"{name}.lua" for name in R["protocols"]}
    try:
        pids = {"gateway": gw.pid, "worker#0": ws[0].pid, "worker#1": ws[1].pid, "redis": rpid}
        for i, b in enumerate(await probe.backend_pids(conn, s.db_name)):
            pids[f"postgres#{i}"] = b
        for run in range(cfg.runs):
            log(f"end-to-end run {run + 1}/{cfg.runs}")
            # The gateway's accepted rate with both workers frozen (SIGSTOP: they take no CPU and
            # store nothing): compared with the gateway phase (no workers at all), it shows that what
            # the gateway accepts does not wait on the workers, only on the cores they share.
            for w in ws:
                os.kill(w.pid, signal.SIGSTOP)
            try:
                r = await gateway.load(
                    s,
                    "workers frozen",
                    url,
                    files["exceptioner"],
                    cfg.load_seconds,
                    cfg.connections,
                    {"gateway": gw.pid, "redis": rpid},
                    check_stream=False,
                )
            finally:
                for w in ws:
                    os.kill(w.pid, signal.SIGCONT)
            E.setdefault("frozen", []).append(_run_figures(r))
            await e2e.drain(s, cfg.timeout)
            sat = await e2e.saturate(
                s,
                conn,
                "single",
                url,
                files["exceptioner"],
                cfg.e2e_seconds,
                2 * cfg.connections,  # more in flight: with 2 cores shared 5 ways, waits are long
                1,
                pids,
                cfg.timeout,
            )
            E.setdefault("single", []).append(_sat_figures(sat))
            half = min(sat.stored_per_s, sat.accepted_per_s) / 2
            lag = await e2e.lag(
                s,
                conn,
                url,
                files["exceptioner"],
                half,
                cfg.lag_seconds,
                4 * cfg.connections,  # many slow connections pace more evenly than a few fast ones
                cfg.probe_interval,
                cfg.timeout,
            )
            E.setdefault("lag_half", []).append(_lag_figures(lag, half))
            idle = await e2e.lag(
                s,
                conn,
                url,
                files["exceptioner"],
                0,
                max(1, cfg.lag_seconds // 3),
                cfg.connections,
                cfg.probe_interval,
                cfg.timeout,
            )
            E.setdefault("lag_idle", []).append(_lag_figures(idle, 0))
            if "exceptionless-batch" in files:
                sat = await e2e.saturate(
                    s,
                    conn,
                    "batch",
                    url,
                    files["exceptionless-batch"],
                    cfg.e2e_seconds,
                    cfg.connections,
                    50,
                    pids,
                    cfg.timeout,
                )
                E.setdefault("batch", []).append(_sat_figures(sat))
        for w in ws:
            R["rss"][f"worker ({w.name})"] = rss_mib(w.pid, peak=True)
    finally:
        await conn.close()
        s.stop(*ws)


def _sat_figures(sat: e2e.Saturated) -> dict[str, float]:
    return {
        "accepted_per_s": sat.accepted_per_s,
        "stored_per_s": sat.stored_per_s,
        "p50_ms": sat.result.p50_ms,
        "p99_ms": sat.result.p99_ms,
        "accepted": sat.accepted_total,
        "stored": sat.stored_total,
        "max_backlog": sat.max_backlog,
        "drain_s": sat.drain_seconds,
        "wrk_cores": sat.result.cores,
        **{f"cpu_{k}": v for k, v in probe.summarise(sat.cpu).items()},
        **{f"rss_{k}": v for k, v in probe.summarise(sat.rss_mib).items() if not k.startswith("postgres")},
    }


def _lag_figures(lag: e2e.Lag, target: float) -> dict[str, float]:
    return {
        "target_per_s": target,
        "background_per_s": lag.background_per_s,
        "probes": len(lag.lags_ms),
        "p50_ms": lag.percentile(50),
        "p99_ms": lag.percentile(99),
        "max_ms": max(lag.lags_ms),
    }


async def read_phase(s: Stack, cfg: Config, R: Results, workdir: Path) -> None:
    await workers.truncate(s)
    log(f"seeding {cfg.read_notices:,} notices in {cfg.read_errors:,} errors")
    R["read_seed_seconds"] = await read.seed(s, cfg.read_errors, cfg.read_notices)
    q, qport = s.query()
    base = f"http://127.0.0.1:{qport}"
    eps = await read.endpoints(s, base, workdir, cfg.variants)
    R["read_missing"] = {e.name: e.note for e in eps if e.requests_file is None}
    Q = R.setdefault("read", {})
    for run in range(cfg.runs):
        log(f"read run {run + 1}/{cfg.runs}")
        for e in eps:
            if e.requests_file is None:
                continue
            res = await wrk.run(base, e.requests_file, cfg.read_seconds, connections=cfg.read_connections)
            if res.ok == 0 or res.non_2xx:
                raise BenchError(f"read {e.name}: {res.non_2xx} non-2xx of {res.requests}")
            Q.setdefault(e.name, []).append(
                {"requests_per_s": res.rate, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms, "max_ms": res.max_ms}
            )
    R["read_routes"] = {e.name: e.route for e in eps}
    R["rss"]["query"] = rss_mib(q.pid, peak=True)
    s.stop(q)


async def suite(cfg: Config, workdir: Path, with_profiles: bool = False) -> Results:
    wrk.ensure_wrk()
    R: Results = {
        "profile": with_profiles,
        "machine": machine(),
        "config": cfg.__dict__,
        "rss": {},
        "load_before": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    t0 = time.monotonic()
    async with stack(workdir) as s:
        census = Census(s.db_name).start()
        try:
            gw, port = await gateway_phase(s, cfg, R, workdir)
            census.mark("gateway")
            await worker_phase(s, cfg, R)
            census.mark("workers")
            await e2e_phase(s, cfg, R, gw, port, workdir)
            census.mark("end to end")
            R["rss"]["gateway"] = rss_mib(gw.pid, peak=True)
            s.stop(gw)
            await read_phase(s, cfg, R, workdir)
            census.mark("read side")
        finally:
            R["census"] = census.stop()
    R["seconds"] = time.monotonic() - t0
    R["load_after"] = load_average()
    return R


def keep_soak(text: str, out: Path) -> str:
    """Carry over the sections other runs write between markers from the old file: `make soak`'s
    (tests/soak.py), the shards benchmark's (tests/bench/shards.py) and the webhooks one's
    (tests/bench/hooks.py)."""
    old = out.read_text() if out.exists() else ""
    for name in ("shards", "hooks", "soak"):
        start, end = old.find(f"<!-- {name}:start -->"), old.find(f"<!-- {name}:end -->")
        if start >= 0 and end >= 0:
            text = text.rstrip("\n") + "\n\n" + old[start : end + len(f"<!-- {name}:end -->")] + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="every benchmark once, tiny counts (CI)")
    p.add_argument("--runs", type=int, help="runs per figure (median); default 3, smoke 1")
    p.add_argument("--out", type=Path, help="where to write the report (default BENCHMARKS.md; smoke: none)")
    p.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    p.add_argument(
        "--profile",
        action="store_true",
        help="one extra gateway run and worker drain under py-spy, into profiles/",
    )
    p.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the report from saved figures")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        out = args.out or ROOT / "BENCHMARKS.md"
        out.write_text(keep_soak(report.render(saved, Config(**saved["config"])), out))
        log(f"wrote {out}")
        return 0
    cfg = Config.quick() if args.smoke else Config.full()
    if args.runs:
        cfg = Config(**{**cfg.__dict__, "runs": max(1, args.runs)})
    with tempfile.TemporaryDirectory(prefix="faultline-bench-") as tmp:
        try:
            R = asyncio.run(suite(cfg, Path(tmp), args.profile))
        except BenchError as e:
            log(f"FAILED: {e}")
            return 1
    out = args.out or (None if cfg.smoke else ROOT / "BENCHMARKS.md")
    text = report.render(R, cfg)
    if out is not None:
        out.write_text(keep_soak(text, out))
        log(f"wrote {out}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(R, indent=1, default=str))
    print(report.summary(R, cfg))
    log(f"done in {R['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    os._exit(130)
