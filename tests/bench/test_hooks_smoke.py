"""`python -m tests.bench.hooks --smoke` as a test: both drains store everything they queued (the bench
raises when one stalls), the one with hooks records a delivery per new error and per spike, the one
without records none, and the report section has its two rows with figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.stack import ROOT

pytestmark = pytest.mark.e2e


def test_hooks_benchmark_completes(tmp_path: Path, servers) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nearlier text\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    env["FAULTLINE_BENCH_ADMIN_DSN"] = servers.admin_dsn
    env["FAULTLINE_BENCH_REDIS_URL"] = servers.redis_url
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.hooks", "--smoke", "--out", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"hooks bench smoke failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nearlier text\n")  # the rest of the report is kept
    section = text[text.index("<!-- hooks:start -->") : text.index("<!-- hooks:end -->")]
    rows = {
        line.split("|")[1].strip(): line
        for line in section.splitlines()
        if re.match(r"\| (none|every)", line)
    }
    assert set(rows) == {"none", "every event, every project (spike_threshold 1)"}, section
    for line in rows.values():
        figures = [float(c.replace(",", "")) for c in re.findall(r"\| ([\d,]+(?:\.\d+)?) ", line + " ")]
        assert figures and figures[0] > 0, line
    none = [c.strip() for c in rows["none"].split("|")[2:4]]
    hooks = [c.strip() for c in rows["every event, every project (spike_threshold 1)"].split("|")[2:4]]
    assert none[1] == "0" and int(hooks[1].replace(",", "")) >= 2 * 16 * 10  # new + spike per error
    assert re.search(r"With hooks: [\d.]+% of the rate without", section)
