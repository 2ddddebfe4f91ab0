"""`make bench-smoke` as a test: every benchmark still runs to the end, and stored == accepted.

The figures of a smoke run mean nothing (a second of load, tiny counts); only completion is checked.
The benchmark itself raises on any accepted notice that is not stored, or any stage that stalls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.stack import ROOT

pytestmark = pytest.mark.e2e


def test_every_benchmark_completes_and_stores_what_it_accepted(tmp_path: Path, servers) -> None:
    raw = tmp_path / "figures.json"
    report = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    # The suite's servers: the local ones, or the embedded ones when none answer.
    env["FAULTLINE_BENCH_ADMIN_DSN"] = servers.admin_dsn
    env["FAULTLINE_BENCH_REDIS_URL"] = servers.redis_url
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--smoke", "--out", str(report), "--json", str(raw)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"bench smoke failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    figures = json.loads(raw.read_text())
    assert figures["gateway"]["exceptioner"][0]["notices_per_s"] > 0
    assert figures["ceiling"]["single"][0]["requests_per_s"] > 0
    for workers in (1, 2):
        assert figures["workers"][f"drain{workers}"][0]["notices_per_s"] > 0
    single = figures["e2e"]["single"][0]
    assert single["stored"] == single["accepted"] > 0
    for batch in figures["e2e"].get("batch", []):
        assert batch["stored"] == batch["accepted"] > 0
    assert figures["e2e"]["lag_half"][0]["probes"] > 0
    assert figures["read"]["list"][0]["requests_per_s"] > 0
    assert "## Goals" in report.read_text()
