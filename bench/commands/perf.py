"""`bench perf` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def perf() -> None:
    """Run the benchmark suite and write BENCHMARKS.md."""
    not_built("perf", 12)
