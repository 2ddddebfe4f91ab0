"""Optional py-spy profiles of the services under benchmark load (`--profile`), kept in profiles/.

Each profile is py-spy's collapsed-stack text (`<name>.folded`, the input of any flame-graph tool such as
flamegraph.pl or inferno) and a summary of the functions with the most samples (`<name>.top.txt`).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.bench.stack import ROOT

OUT = ROOT / "profiles"  # ignored by git


def _py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def record(enabled: bool, pid: int, name: str, seconds: int) -> Iterator[None]:
    """Sample `pid` for at most `seconds` while the block runs."""
    spy = _py_spy() if enabled else None
    if spy is None:
        yield
        return
    OUT.mkdir(exist_ok=True)
    folded = OUT / f"{name}.folded"
    cmd = [
        spy,
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "100",
        "--nonblocking",
        "-f",
        "raw",
        "-o",
        str(folded),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if folded.exists():
            (OUT / f"{name}.top.txt").write_text(top(folded.read_text()))


def top(folded: str, count: int = 40) -> str:
    """Inclusive and self sample shares per function of a collapsed-stack profile."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = [
            f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")") for f in stack.split(";")
        ]
        for f in set(frames):
            inclusive[f] += samples
        own[frames[-1]] += samples
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(count)]
    lines += ["", "self:"]
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(count)]
    return "\n".join(lines) + "\n"
