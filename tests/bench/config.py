"""How long and how big each benchmark is: the full suite (`make bench`) and the smoke run (CI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    smoke: bool
    runs: int  # every figure is the median of this many runs
    load_seconds: int  # one saturating wrk run against the gateway or the ceiling
    connections: int  # wrk connections against one gateway process
    variants: int  # distinct request bodies (hence errors) per protocol
    drain_notices: int  # backlog each worker-drain run starts with
    drain_errors: int
    batch_size: int  # FAULTLINE_BATCH_SIZE of the workers in the drain runs (the default elsewhere)
    ceiling_notices: int  # rows for the store.write_batch ceiling
    e2e_seconds: int
    lag_seconds: int
    probe_interval: float  # seconds between lag probes
    read_errors: int
    read_notices: int
    read_seconds: int
    read_connections: int
    timeout: float  # longest wait for any drain

    @classmethod
    def full(cls) -> Config:
        return cls(
            smoke=False,
            runs=3,
            load_seconds=4,
            connections=16,
            variants=200,
            drain_notices=40_000,
            drain_errors=1_000,
            batch_size=1000,
            ceiling_notices=20_000,
            e2e_seconds=6,
            lag_seconds=5,
            probe_interval=0.02,
            read_errors=10_000,
            read_notices=1_000_000,
            read_seconds=4,
            read_connections=4,
            timeout=180,
        )

    @classmethod
    def quick(cls) -> Config:
        """Smoke: every benchmark once, tiny counts; checks completion and stored == accepted only."""
        return cls(
            smoke=True,
            runs=1,
            load_seconds=1,
            connections=8,
            variants=20,
            drain_notices=2_000,
            drain_errors=100,
            batch_size=1000,
            ceiling_notices=2_000,
            e2e_seconds=2,
            lag_seconds=2,
            probe_interval=0.05,
            read_errors=200,
            read_notices=20_000,
            read_seconds=1,
            read_connections=2,
            timeout=90,
        )
