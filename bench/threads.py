"""CPU threads per process: the CPUs this process may run on, split between it and its loader workers.

torch starts one intra-op thread per *machine* core by default, and every loader worker would add
its own; two jobs on a 2-core machine then run 4+ busy threads on 2 cores and each slows down
several-fold (OpenMP threads spin while they wait). Here the budget is what the process may really
use: its CPU affinity (``taskset``, Slurm's binding) capped by a cgroup CPU quota (containers,
Kubernetes limits), divided among the ranks that torchrun started on this node. Loader workers get
one thread each and the main process the rest (at least one).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: affinity, capped by the cgroup quota (rounded up), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def plan(workers: int, threads: int | None = None, cpus: int | None = None, local_ranks: int = 1) -> int:
    """Intra-op threads for the main process.

    ``threads`` (``--threads N``) wins. Otherwise the CPUs (``cpus`` or :func:`available_cpus`) are
    shared by ``local_ranks`` processes on this node, each with ``workers`` single-threaded loader
    workers, and the main process gets what is left (at least 1).

    Example:
        >>> plan(workers=1, cpus=2), plan(workers=0, cpus=16, local_ranks=4), plan(workers=4, threads=3)
        (1, 4, 3)
    """
    if threads is not None:
        return max(1, threads)
    per_rank = max(1, (cpus or available_cpus()) // max(1, local_ranks))
    return max(1, per_rank - max(0, workers))


def configure(workers: int, threads: int | None = None) -> int:
    """Apply :func:`plan` to torch in this process; returns the thread count set.

    An ``OMP_NUM_THREADS`` the user exported is an explicit choice like ``--threads`` and is kept
    (outside torchrun, which exports ``OMP_NUM_THREADS=1`` itself when it is unset).
    """
    import torch

    if threads is None and "LOCAL_WORLD_SIZE" not in os.environ:
        try:
            threads = int(os.environ["OMP_NUM_THREADS"])
        except (KeyError, ValueError):
            pass
    n = plan(workers, threads, local_ranks=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(n)
    return n


def worker_init(_worker_id: int = 0) -> None:
    """Loader worker start-up: one thread for torch and for the BLAS / OpenMP pools numpy uses."""
    import torch

    torch.set_num_threads(1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
