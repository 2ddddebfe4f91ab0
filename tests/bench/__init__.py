"""The benchmark suite: `make bench` (full, writes BENCHMARKS.md) and `make bench-smoke` (CI)."""
