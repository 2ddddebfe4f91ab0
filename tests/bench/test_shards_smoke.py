"""`python -m tests.bench.shards --smoke` as a test: the drains store everything they queued (the bench
raises when one stalls) and the gateway answers in every FAULTLINE_ACK mode without a start-up warning
that it cannot keep the promise (the bench raises on that too)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.stack import ROOT

pytestmark = pytest.mark.e2e


def test_shards_benchmark_completes(tmp_path: Path, servers) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nearlier text\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    env["FAULTLINE_BENCH_ADMIN_DSN"] = servers.admin_dsn
    env["FAULTLINE_BENCH_REDIS_URL"] = servers.redis_url
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.shards", "--smoke", "--out", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"shards bench smoke failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nearlier text\n")  # the rest of the report is kept
    section = text[text.index("<!-- shards:start -->") : text.index("<!-- shards:end -->")]
    rows = [
        line for line in section.splitlines() if re.match(r"\| (one Redis|`\w+`|project-affine|spread)", line)
    ]
    assert len(rows) == 1 + 4 + 2, section  # one drain row, four ack rows, two placements
    for line in rows:
        figures = [float(c.replace(",", "")) for c in re.findall(r"\| ([\d,]+(?:\.\d+)?) ", line + " ")]
        assert figures and all(f > 0 for f in figures), line
