"""The benchmark suite behind ``bench perf`` (CPU, beside its peers) and ``bench perf --gpu``.

    >>> from bench.perf import run_suite, write
    >>> write(run_suite(["metrics"], quick=True), "/tmp/BENCHMARKS.md")  # doctest: +SKIP

(not run as a doctest: it times benchmarks and writes files)

``suite`` holds the CPU benchmarks (each a section of rows comparing ours with a peer), ``gpu`` the
GPU script, ``markdown`` the writer of BENCHMARKS.md / BENCHMARKS.json, ``timing`` the repeat-and-median
helper and the machine description.
"""

from bench.perf.markdown import render, write
from bench.perf.suite import BENCHMARKS, PEER_MISSING, run_suite

__all__ = ["BENCHMARKS", "PEER_MISSING", "render", "run_suite", "write"]
