"""Repeat-and-median timing and machine description shared by the CPU suite and the GPU script."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Packages whose versions change the numbers: ours, and the peers the suite compares against.
VERSION_PACKAGES = ["torch", "torchaudio", "numpy", "scipy", "soundfile", "scikit-learn", "speechbrain"]


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 0, sync: Callable[[], None] | None = None) -> dict:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    Returns ``median``, ``min``, ``times`` (every repeat) and ``value`` (the last call's result).
    The median, not the minimum, is the headline: on a shared machine it is the typical cost.
    """
    value = None
    for _ in range(warmup):
        value = fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        value = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "times": times, "value": value}


def median_of(rows: list[dict], key: str) -> float:
    """Median of ``row[key]`` over repeated result dicts (e.g. several loader runs)."""
    return statistics.median(float(r[key]) for r in rows)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    """Python and the versions of the packages that matter to the numbers ('not installed' if absent)."""
    from bench.io import versions as package_versions

    return package_versions(VERSION_PACKAGES, with_platform=False)


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, memory, load average, torch threads, GPUs, versions and git revision."""
    import torch

    from bench.io import git_revision

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": _mem_gib(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
        "python_executable": sys.executable,
        "versions": versions(),
        "git": git_revision(),
    }
    return info
