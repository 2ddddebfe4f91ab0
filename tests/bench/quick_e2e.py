"""`python -m tests.bench.quick_e2e [SECONDS] [--batch]`: the end-to-end section alone, one run per
figure: gateway + 2 workers under saturating Exceptioner single notices (and, with `--batch`,
Exceptionless arrays of 50), with stored/s, the workers' mean batch (rows) and each process's CPU. For
iterating on the workers' batching; `make bench` is the measurement of record."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path

import aiohttp

from tests.bench import e2e, gateway, probe
from tests.bench.stack import stack

CONNECTIONS = 32


async def batches(url: str) -> tuple[float, float]:
    """Batches written and the entries in them, all workers, from the gateway's /metrics (workers
    report every few seconds, so a run's difference is near, not exact)."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    return total("faultline_worker_batches_total"), total("faultline_worker_batch_entries_total")


async def main(seconds: int, batch: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="faultline-qe-") as tmp:
        async with stack(Path(tmp)) as s:
            gw, port = s.gateway()
            url = f"http://127.0.0.1:{port}"
            found = await gateway.probe(s, url, Path(tmp), 200)
            by_name = {a.protocol.name: a for a in found.available}
            await s.reset_stream()
            ws = [s.worker(f"qe-worker-{i}") for i in range(2)]
            conn = await s.connect()
            try:
                pids = {"gateway": gw.pid, "worker#0": ws[0].pid, "worker#1": ws[1].pid}
                pids["redis"] = await probe.redis_pid(s.r) or 0
                for i, b in enumerate(await probe.backend_pids(conn, s.db_name)):
                    pids[f"postgres#{i}"] = b
                runs = [("single", "exceptioner", CONNECTIONS, 1)]
                if batch:
                    runs.append(("batch", "exceptionless-batch", CONNECTIONS // 2, 50))
                for name, proto, connections, per in runs:
                    before = await batches(url)
                    sat = await e2e.saturate(
                        s, conn, name, url, by_name[proto].requests_file, seconds, connections, per, pids, 120
                    )
                    await asyncio.sleep(16)  # workers report every claim_idle_ms / 2 (15 s by default)
                    after = await batches(url)
                    n, entries = after[0] - before[0], after[1] - before[1]
                    cpu = {k.split("#")[0]: 0.0 for k in sat.cpu}
                    for k, v in sat.cpu.items():
                        cpu[k.split("#")[0]] += v
                    print(
                        f"{name:6s} accepted {sat.accepted_per_s:8.0f}/s  stored {sat.stored_per_s:7.0f}/s"
                        f"  stored == accepted: {sat.stored_total == sat.accepted_total}"
                        f"  max backlog {sat.max_backlog}  mean batch {entries / max(n, 1):.0f}  cpu "
                        + "  ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items())),
                        flush=True,
                    )
            finally:
                await conn.close()
                s.stop(*ws)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 6, "--batch" in sys.argv))
