"""`python -m tests.bench.quick_workers [NOTICES] [--two] [--profile]`: the worker section alone, one
run per figure: the `write_batch` ceiling over one connection, then one worker draining the same
kind of backlog (40,000 raw Exceptioner notices over 1,000 errors by default), with the ratio and each
process's CPU. `--two` adds the two-connection ceiling and a two-worker drain; `--profile` samples
the (first) worker with py-spy into profiles/worker-drain.*. For iterating on the worker;
`make bench` is the measurement of record."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.bench import fill, workers
from tests.bench.config import Config
from tests.bench.stack import stack


async def main(count: int, two: bool, profiled: bool) -> None:
    cfg = Config.full()
    with tempfile.TemporaryDirectory(prefix="faultline-qw-") as tmp:
        async with stack(Path(tmp)) as s:
            assert s.project is not None
            tpls = fill.templates(s.project, cfg.drain_errors)
            for n in (1, 2) if two else (1,):
                ceiling = await workers.write_ceiling(
                    s, tpls, min(count, cfg.ceiling_notices), cfg.batch_size, n
                )
                await workers.truncate(s)
                d = await workers.drain(
                    s,
                    tpls,
                    n,
                    count,
                    cfg.batch_size,
                    cfg.timeout,
                    profile_as="worker-drain" if profiled else "",
                )
                cpu = "  ".join(f"{k} {v:.2f}" for k, v in sorted(d.cpu.items()))
                print(
                    f"{n} worker(s): {d.per_worker:7.0f}/s per process   ceiling {ceiling.rate / n:7.0f}/s per"
                    f" connection   ratio {d.per_worker * n / ceiling.rate:.2f}   cpu {cpu}"
                )
                await workers.truncate(s)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 40_000, "--two" in sys.argv, "--profile" in sys.argv))
