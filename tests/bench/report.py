"""BENCHMARKS.md from the raw figures: medians over the runs, each next to its ceiling, goals checked."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from tests.bench.config import Config

FINDINGS = Path(__file__).with_name("findings.md")
# Goals of the thin-gateway issue: ratios to ceilings measured in the same run (machines here differ
# by 1.7x from day to day), plus one absolute figure for batched ingest.
GOAL_GATEWAY_RATIO = 0.7
GOAL_GATEWAY_RATIO_EXCEPTIONER = 0.5
GOAL_WORKER_RATIO = 0.8
GOAL_E2E_SINGLE_RATIO = 0.5
GOAL_E2E_BATCH = 20_000
GOAL_LAG_P99_MS = 1_000
GOAL_GATEWAY_RSS = 100
GOAL_READ_P99_MS = 20
GROWTH_MIB = 64  # a worker's peak over its idle RSS, draining the whole backlog, stays under this
SPECIAL = ("exceptioner x2", "exceptionless-batch")

Runs = list[dict[str, float]] | None


def med(runs: Runs, key: str) -> float:
    vals = [r[key] for r in runs or [] if r.get(key) is not None and not math.isnan(r[key])]
    return statistics.median(vals) if vals else math.nan


def n(x: float, digits: int = 0) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def f(runs: Runs, key: str, digits: int = 0) -> str:
    """The median of one figure over the runs, formatted."""
    return n(med(runs, key), digits)


def ratio(a: float, b: float) -> str:
    return "—" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def yes(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*cells: str) -> str:
    return row(*cells) + "\n" + row(*["---"] * len(cells))


def sections(R: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return tuple(R.get(k, {}) for k in ("gateway", "ceiling", "workers", "e2e", "read"))


def own_ceiling(c: dict[str, Any], name: str) -> float:
    """The ceiling on a protocol's own bodies (Exceptioner's: the run's `single`; older runs: that)."""
    return med(c.get("same_bodies", {}).get(name) or c.get("single"), "requests_per_s")


def goals(R: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, figure, reference, met) rows."""
    g, c, W, E, Q = sections(R)
    rss = R.get("rss", {})
    ceiling = med(c.get("single"), "requests_per_s")
    floor = med(c.get("floor"), "requests_per_s")  # tests/bench/floor.py: absent from older runs
    out: list[tuple[str, str, str, bool | None]] = []

    def add(goal: str, fig: str, ref: str, value: float, ok: bool) -> None:
        out.append((goal, fig, ref, None if math.isnan(value) else ok))

    for name, runs in g.items():
        if name not in SPECIAL:
            rate = med(runs, "notices_per_s")
            own = own_ceiling(c, name)
            # Exceptioner answers with the error id, so its gateway still parses and fingerprints.
            want = GOAL_GATEWAY_RATIO_EXCEPTIONER if name == "exceptioner" else GOAL_GATEWAY_RATIO
            add(
                f"Gateway {name} ≥ {want} × ceiling",
                f"{n(rate)}/s",
                f"ceiling on the same bodies {n(own)}/s, ratio {ratio(rate, own)}"
                + (f"; queueing floor {ratio(floor, ceiling)}" if not math.isnan(floor) else ""),
                rate,
                rate >= want * own,
            )
    for k in (1, 2):
        per = med(W.get(f"drain{k}"), "per_worker")
        write = med(W.get(f"ceiling{k}"), "notices_per_s") / k
        add(
            f"Workers ≥ {GOAL_WORKER_RATIO} × write_batch ceiling per process ({k} running)",
            f"{n(per)}/s per process",
            f"write_batch ceiling {n(write)}/s per connection, ratio {ratio(per, write)}",
            per,
            per >= GOAL_WORKER_RATIO * write,
        )
    one, two = med(W.get("drain1"), "per_worker"), 2 * med(W.get("drain2"), "per_worker")
    add(
        "Two workers drain faster than one",
        f"{n(two)}/s with 2",
        f"{n(one)}/s with 1",
        two,
        two > one,
    )
    frozen, alone = med(E.get("frozen"), "requests_per_s"), med(g.get("exceptioner"), "requests_per_s")
    add(
        "Gateway accepts without waiting on workers (2 frozen vs none, ≥ 0.9 ×)",
        f"{n(frozen)}/s with 2 workers frozen",
        f"{n(alone)}/s with no worker, ratio {ratio(frozen, alone)}",
        frozen,
        frozen >= 0.9 * alone,
    )
    commits = med(W.get("drain1"), "pg_commits_per_1000")
    calls = med(W.get("drain1"), "redis_calls_per_1000")
    add(
        "Workers: no per-notice round trip",
        f"{n(commits, 1)} PostgreSQL commits, {n(calls, 1)} Redis calls",
        "per 1,000 notices (1,000 = one per notice)",
        commits,
        commits < 50 and calls < 50,
    )
    stored = med(E.get("single"), "stored_per_s")
    add(
        f"End to end, single notices: ≥ {GOAL_E2E_SINGLE_RATIO} × bare-aiohttp ceiling",
        f"{n(stored)}/s",
        f"ceiling {n(ceiling)}/s, ratio {ratio(stored, ceiling)}",
        stored,
        stored >= GOAL_E2E_SINGLE_RATIO * ceiling,
    )
    stored = med(E.get("batch"), "stored_per_s")
    write2 = med(W.get("ceiling2"), "notices_per_s")
    add(
        f"End to end, arrays of 50: ≥ {GOAL_E2E_BATCH:,} stored/s and ≥ {GOAL_WORKER_RATIO} × write_batch ceiling",
        f"{n(stored)}/s",
        f"write_batch ceiling (2 connections) {n(write2)}/s, ratio {ratio(stored, write2)}",
        stored,
        stored >= GOAL_E2E_BATCH and stored >= GOAL_WORKER_RATIO * write2,
    )
    p99 = med(E.get("lag_half"), "p99_ms")
    add(
        f"Lag p99 < {GOAL_LAG_P99_MS:,} ms at half the max load",
        f"{n(p99)} ms",
        f"no-load floor {f(E.get('lag_idle'), 'p99_ms')} ms",
        p99,
        p99 < GOAL_LAG_P99_MS,
    )
    gw = rss.get("gateway", math.nan)
    add(
        f"Gateway peak RSS < {GOAL_GATEWAY_RSS} MiB under load",
        f"{n(gw, 1)} MiB",
        f"bare aiohttp {n(rss.get('ceiling (bare aiohttp)', math.nan), 1)} MiB",
        gw,
        gw < GOAL_GATEWAY_RSS,
    )
    grow = med(W.get("drain1"), "rss_peak_mib") - med(W.get("drain1"), "rss_idle_mib")
    gw_sat = med(E.get("single"), "rss_gateway")
    add(
        "Memory does not grow with the backlog",
        f"worker +{n(grow, 1)} MiB draining {n(R['config']['drain_notices'])}; gateway {n(gw_sat, 1)} MiB "
        f"with {f(E.get('single'), 'max_backlog')} queued",
        f"worker growth < {GROWTH_MIB} MiB, gateway < {GOAL_GATEWAY_RSS} MiB",
        grow,
        grow < GROWTH_MIB and not gw_sat >= GOAL_GATEWAY_RSS,
    )
    wrk_cores = med(g.get("exceptioner"), "wrk_cores")
    cores = int(R["machine"].get("cores") or 1)
    add(
        "Load generator is not the bottleneck (< 25% of the machine)",
        f"wrk {n(100 * wrk_cores / cores, 1)}%",
        f"gateway {f(g.get('exceptioner'), 'cpu_gateway', 2)} cores busy",
        wrk_cores,
        wrk_cores / cores < 0.25,
    )
    for name in ("list", "stats"):
        p = med(Q.get(name), "p99_ms")
        missing = R.get("read_missing", {}).get(name)
        add(
            f"Read {name} p99 < {GOAL_READ_P99_MS} ms (10⁶ notices)",
            missing or f"{n(p, 1)} ms",
            f"healthz p99 {f(Q.get('healthz'), 'p99_ms', 1)} ms",
            math.nan if missing else p,
            p < GOAL_READ_P99_MS,
        )
    return out


def render(R: dict[str, Any], cfg: Config) -> str:
    m = R["machine"]
    g, c, W, E, Q = sections(R)
    out: list[str] = []
    w = out.append
    runs_word = f"{cfg.runs} run{'s' if cfg.runs > 1 else ''}"
    w("# Benchmarks\n")
    w(
        f"Written by `make bench` ({'smoke run' if cfg.smoke else 'full run'}) on {R['started']}. Every "
        "figure is "
        f"the median of {runs_word}; each machine-dependent figure stands next to a ceiling measured in "
        "the same "
        "run on the same machine.\n"
    )
    w("## Machine\n")
    w(header("", ""))
    w(row("CPU", f"{m['cpu']}, {m['cores']} cores"))
    w(row("memory", m["memory"]))
    w(row("kernel", m["kernel"]))
    w(row("Python", f"{m['python']}, uvloop"))
    w(row("servers", "the local PostgreSQL and Redis, on 127.0.0.1"))
    w(
        row(
            "load average before / after",
            f"{R['load_before']:.2f} / {R.get('load_after', math.nan):.2f} "
            "(well above 0 means other work shared the cores)",
        )
    )
    w(row("duration", f"{R.get('seconds', 0):.0f} s") + "\n")
    census = R.get("census") or {}
    if census:
        w(
            "CPU used during each phase, in cores (of the machine's "
            f"{m['cores']}): by the benchmark (its services, wrk, PostgreSQL and Redis) and by everything "
            "else. "
            "Other work on the same cores lowers every figure below it, ceilings included.\n"
        )
        w(header("phase", "benchmark", "other processes"))
        for phase, use in census.items():
            w(row(phase, n(use["ours"], 2), n(use["others"], 2)))
        w("")

    w("## Goals\n")
    w(header("goal", "figure", "reference measured in the same run", ""))
    for goal, fig, ref, ok in goals(R):
        w(row(goal, fig, ref, yes(ok)))
    w("")

    single = c.get("single")
    ceiling = med(single, "requests_per_s")
    w("## Gateway: single-notice POSTs\n")
    w(
        f"wrk, {cfg.connections} connections, {cfg.load_seconds} s per run, {cfg.variants} distinct bodies "
        "per "
        "protocol (hence as many errors). No workers run, so only the gateway is measured; the stream is "
        "emptied "
        "between runs, and every run checks that each accepted notice reached it. Ceiling: a bare aiohttp "
        "process on uvloop that reads the body and answers a fixed 201 (`tests/bench/ceiling.py`), run on "
        "each protocol's own bodies right before that protocol (the first row: on Exceptioner's), same "
        "wrk settings. Queueing floor: the same process checking the key from memory and queueing "
        "the body through the gateway's own `Publisher` before it answers (`tests/bench/floor.py`), "
        "Exceptioner bodies: the least any gateway of this design does per request. "
        "CPU in cores (1.0 = one core busy all the run).\n"
    )
    w(
        header(
            "protocol",
            "route",
            "accepted/s",
            "p50 ms",
            "p99 ms",
            "ceiling/s",
            "ratio",
            "gateway CPU",
            "Redis CPU",
            "wrk CPU",
        )
    )
    w(
        row(
            "ceiling",
            "bare aiohttp",
            n(ceiling),
            f(single, "p50_ms", 2),
            f(single, "p99_ms", 2),
            "",
            "1.00",
            f(single, "cpu_ceiling", 2),
            "",
            f(single, "wrk_cores", 2),
        )
    )
    floor = c.get("floor")
    if floor:
        w(
            row(
                "queueing floor",
                "key, body, msgpack, Publisher",
                f(floor, "requests_per_s"),
                f(floor, "p50_ms", 2),
                f(floor, "p99_ms", 2),
                n(ceiling),
                ratio(med(floor, "requests_per_s"), ceiling),
                f(floor, "cpu_floor", 2),
                f(floor, "cpu_redis", 2),
                f(floor, "wrk_cores", 2),
            )
        )
    for name, runs in g.items():
        if name in SPECIAL:
            continue
        rate = med(runs, "notices_per_s")
        own = own_ceiling(c, name)
        w(
            row(
                name,
                R["protocols"].get(name, {}).get("route", ""),
                n(rate),
                f(runs, "p50_ms", 2),
                f(runs, "p99_ms", 2),
                n(own),
                ratio(rate, own),
                f(runs, "cpu_gateway", 2),
                f(runs, "cpu_redis", 2),
                f(runs, "wrk_cores", 2),
            )
        )
    for name, why in R.get("missing", {}).items():
        if name != "exceptionless-batch":
            w(row(name, "", why, "", "", "", "", "", "", ""))
    x2, cx2 = g.get("exceptioner x2"), c.get("x2")
    if x2:
        one = med(g.get("exceptioner"), "notices_per_s")
        w(
            "\nTwo processes sharing the port (SO_REUSEPORT: `web.run_app` already passes "
            "`reuse_port=True`), "
            f"Exceptioner, {2 * cfg.connections} connections:\n"
        )
        w(header("", "accepted/s", "p50 ms", "p99 ms", "vs one process", "CPU (cores)", "wrk CPU"))
        w(
            row(
                "ceiling × 2",
                f(cx2, "requests_per_s"),
                f(cx2, "p50_ms", 2),
                f(cx2, "p99_ms", 2),
                ratio(med(cx2, "requests_per_s"), ceiling),
                f(cx2, "cpu_ceiling", 2),
                f(cx2, "wrk_cores", 2),
            )
        )
        w(
            row(
                "gateway × 2",
                f(x2, "notices_per_s"),
                f(x2, "p50_ms", 2),
                f(x2, "p99_ms", 2),
                ratio(med(x2, "notices_per_s"), one),
                f"{f(x2, 'cpu_gateway', 2)} + Redis {f(x2, 'cpu_redis', 2)}",
                f(x2, "wrk_cores", 2),
            )
        )

    w("\n## Batched submissions\n")
    b = g.get("exceptionless-batch")
    if b:
        cb = med(c.get("batch"), "notices_per_s")
        rate = med(b, "notices_per_s")
        w("Exceptionless arrays of 50 events per POST, as above; the ceiling reads the same bodies.\n")
        w(
            header(
                "", "notices/s", "requests/s", "p50 ms", "p99 ms", "ceiling notices/s", "ratio", "gateway CPU"
            )
        )
        w(
            row(
                "Exceptionless × 50",
                n(rate),
                f(b, "requests_per_s"),
                f(b, "p50_ms", 2),
                f(b, "p99_ms", 2),
                n(cb),
                ratio(rate, cb),
                f(b, "cpu_gateway", 2),
            )
        )
    else:
        w(f"Not measured: {R.get('missing', {}).get('exceptionless-batch', 'the route is not available')}.")

    w("\n## Workers: draining a pre-filled stream\n")
    w(
        f"{cfg.drain_notices:,} notices over {cfg.drain_errors:,} errors, spread uniformly at random (the "
        "hard case: "
        "each batch touches as many errors as it can), queued by the gateway's own publisher while the "
        "workers "
        "are paused (SIGSTOP), timed from their resumption to the last acknowledgement. "
        f"FAULTLINE_BATCH_SIZE={cfg.batch_size}. Ceiling: `store.write_batch` fed pre-built rows from the "
        "benchmark process over as many connections, i.e. PostgreSQL's side of the same write with reading, "
        "decoding and scrubbing free.\n"
    )
    w(
        header(
            "workers",
            "stored/s",
            "per process",
            "write_batch ceiling/s",
            "ratio",
            "CPU workers / PostgreSQL / Redis",
            "PG commits per 1,000",
            "Redis calls per 1,000",
            "worker RSS idle → peak MiB",
        )
    )
    for k in (1, 2):
        d, cl = W.get(f"drain{k}"), med(W.get(f"ceiling{k}"), "notices_per_s")
        rate = med(d, "notices_per_s")
        w(
            row(
                k,
                n(rate),
                f(d, "per_worker"),
                n(cl),
                ratio(rate, cl),
                f"{f(d, 'cpu_worker', 2)} / {f(d, 'cpu_postgres', 2)} / {f(d, 'cpu_redis', 2)}",
                f(d, "pg_commits_per_1000", 1),
                f(d, "redis_calls_per_1000", 1),
                f"{f(d, 'rss_idle_mib', 1)} → {f(d, 'rss_peak_mib', 1)}",
            )
        )
    w(
        "\nRedis calls: the server's own counters of XREADGROUP, XACK, XADD and XCLAIM (another client of "
        "the same "
        "server would add to them). PostgreSQL commits: the benchmark database's `xact_commit`.\n"
    )

    w("## End to end\n")
    w(
        "Gateway + 2 workers (default settings) + query service, all on this machine with wrk "
        f"({2 * cfg.connections} connections for single notices, {cfg.connections} for batches): "
        f"{cfg.e2e_seconds} s "
        "of saturating load per run. Stored/s counts acknowledged entries (a worker acknowledges only "
        "after its "
        "transaction committed) over the loaded window; then the workers drain, and every notice the stream "
        "received must be in PostgreSQL (checked: stored == accepted). Ceiling: the slower of the two stages "
        "measured alone above (gateway accepted/s, 2-worker drain); the drain spreads its notices over "
        "1,000 errors and these bodies over 200, so a ratio a little above 1 is possible.\n"
    )
    w(
        header(
            "load",
            "accepted/s",
            "stored/s",
            "ceiling/s",
            "ratio",
            "max backlog",
            "drain after",
            "CPU gateway / workers / PostgreSQL / Redis / wrk",
        )
    )
    drain2 = med(W.get("drain2"), "notices_per_s")
    for key, label, alone in (
        ("single", "Exceptioner, single notices", med(g.get("exceptioner"), "notices_per_s")),
        ("batch", "Exceptionless, arrays of 50", med(b, "notices_per_s")),
    ):
        runs = E.get(key)
        if not runs:
            w(row(label, "not measured: route not available", "", "", "", "", "", ""))
            continue
        cl = drain2 if math.isnan(alone) else min(alone, drain2)
        stored = med(runs, "stored_per_s")
        cpu = (
            " / ".join(f(runs, f"cpu_{k}", 2) for k in ("gateway", "worker", "postgres", "redis"))
            + " / "
            + f(runs, "wrk_cores", 2)
        )
        w(
            row(
                label,
                f(runs, "accepted_per_s"),
                n(stored),
                n(cl),
                ratio(stored, cl),
                f(runs, "max_backlog"),
                f"{f(runs, 'drain_s', 1)} s",
                cpu,
            )
        )
    w(
        "\nLag from acceptance (the 201 reaching the client) to queryable (the row visible in PostgreSQL, "
        "which "
        f"the query service reads with no cache in between), from probe notices sent every "
        f"{cfg.probe_interval * 1000:.0f} ms on top of a paced background load:\n"
    )
    w(header("background load", "achieved/s", "probes", "p50 ms", "p99 ms", "max ms"))
    for key, label in (("lag_half", "half the max stored rate"), ("lag_idle", "none (the floor)")):
        runs = E.get(key)
        w(
            row(
                f"{label}: {f(runs, 'target_per_s')}/s asked",
                f(runs, "background_per_s"),
                f(runs, "probes"),
                f(runs, "p50_ms", 1),
                f(runs, "p99_ms", 1),
                f(runs, "max_ms", 1),
            )
        )

    w("\n## Memory\n")
    w("Peak RSS (VmHWM) of each process over everything it did in this run.\n")
    w(header("process", "peak RSS MiB"))
    for proc, mib in R.get("rss", {}).items():
        w(row(proc, n(mib, 1)))
    sat = E.get("single")
    w(
        f"\nDuring the saturated end-to-end runs the gateway's RSS stayed at {f(sat, 'rss_gateway', 1)} "
        "MiB and the "
        f"two workers' at {f(sat, 'rss_worker', 1)} MiB together, with up to {f(sat, 'max_backlog')} notices "
        "queued: a worker holds one batch, the gateway only the requests in flight.\n"
    )

    w("## Read side\n")
    w(
        f"{cfg.read_notices:,} notices in {cfg.read_errors:,} errors over 14 days, seeded without HTTP "
        "through the worker's own write statement (`store.write_batch` for one notice per error, then "
        "the rest staged by PostgreSQL and written by the same `store.WRITE`) in "
        f"{R.get('read_seed_seconds', math.nan):.0f} s, then VACUUM ANALYZE (what autovacuum would have "
        "done); wrk, "
        f"{cfg.read_connections} connections, {cfg.read_seconds} s per run, a user token.\n"
    )
    w(header("endpoint", "requests/s", "p50 ms", "p99 ms", "max ms", "p99 vs healthz"))
    hz = med(Q.get("healthz"), "p99_ms")
    for name, route in R.get("read_routes", {}).items():
        if name in R.get("read_missing", {}):
            w(row(route, R["read_missing"][name], "", "", "", ""))
            continue
        runs = Q.get(name)
        w(
            row(
                route,
                f(runs, "requests_per_s"),
                f(runs, "p50_ms", 2),
                f(runs, "p99_ms", 2),
                f(runs, "max_ms", 2),
                ratio(med(runs, "p99_ms"), hz),
            )
        )
    w("")
    if FINDINGS.exists():
        w(FINDINGS.read_text().rstrip() + "\n")
    w("## How to rerun\n")
    w(
        "```\nmake bench         # the full suite, about 10 minutes; rewrites BENCHMARKS.md\n"
        "make bench-smoke   # every benchmark once with tiny counts (make test runs it too)\n"
        ".venv/bin/python -m tests.bench --runs 5 --json profiles/bench.json   # more runs, raw figures\n"
        ".venv/bin/python -m tests.bench --profile   # adds py-spy profiles of the gateway and a "
        "worker\n```\n"
    )
    w(
        "It needs the local PostgreSQL and Redis on 127.0.0.1 (or FAULTLINE_BENCH_ADMIN_DSN and "
        "FAULTLINE_BENCH_REDIS_URL) and `wrk`, which it installs with apt-get when missing and running as "
        "root. "
        "Each run creates its own database `faultline_bench_<random>` and stream prefix and drops both at "
        "the "
        "end; nothing shared is flushed. Run it on an otherwise idle machine: other work on the same cores "
        "lowers every figure (see the load average above)."
    )
    return "\n".join(out) + "\n"


def summary(R: dict[str, Any], cfg: Config) -> str:
    lines = [f"{'SMOKE' if cfg.smoke else 'FULL'} benchmark, median of {cfg.runs} run(s):"]
    for goal, fig, ref, ok in goals(R):
        mark = "-- " if ok is None else ("ok " if ok else "NO ")
        lines.append(f"  {mark} {goal}: {fig} ({ref})")
    return "\n".join(lines)
