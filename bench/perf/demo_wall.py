"""Wall time of ``bench demo`` against its targets (issue 18: 10 min for ``demo``, 60 min for ``cpu``
on 2 CPU cores).

Each measurement is one ``python -m bench demo --json`` process in a fresh temporary folder: the
corpus is generated, every run trained, scored (and scored on the real-voice set when
``data/real-eval`` exists, as a user's demo would) and the report built, exactly what a first call
on a fresh checkout does after setup. ``demo_cpu`` takes about an hour, so it runs only when named
(``bench perf --only demo_cpu``); ``--quick`` shrinks either to one loss, one seed, one epoch (a
smoke run of the benchmark itself, not a figure to quote).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.perf.base import Context, benchmark, row

REAL = Path("data/real-eval")


def time_demo(preset: str, quick: bool = False) -> dict[str, Any]:
    """Run ``bench demo --preset <preset>`` from scratch in a temporary folder; its JSON summary plus
    ``wall_seconds`` (the whole process, interpreter start included)."""
    from bench.data.prepare import DEMO_PRESETS

    with tempfile.TemporaryDirectory(prefix="bench-perf-demo-") as tmp:
        args = [sys.executable, "-m", "bench", "demo", "--preset", preset, "--json",
                "--out", f"{tmp}/runs", "--report", f"{tmp}/report", "--data", f"{tmp}/corpus",
                "--real", str(REAL.resolve())]  # fmt: skip
        if quick:
            args += ["--losses", DEMO_PRESETS[preset].losses[0], "--seeds", "0", "--epochs", "1"]
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"bench demo --preset {preset} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        summary = json.loads(proc.stdout)
    summary["wall_seconds"] = wall
    return summary


def _section(preset: str, ctx: Context) -> dict[str, Any]:
    from bench.data.prepare import DEMO_PRESETS

    spec = DEMO_PRESETS[preset]
    res = time_demo(preset, ctx.quick)
    target = spec.minutes * 60.0
    runs = res["runs"]
    converged = sum(1 for r in runs if r.get("converged"))
    best = min((r for r in res["table"] if r["eer"]["mean"] is not None), key=lambda r: r["eer"]["mean"], default=None)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items() if k != "total")
    note = (f"{len(runs)} runs ({converged} converged); stages: {stages}"
            + (f"; best {best['system']} EER {best['eer']['mean']:.2f} %, minDCF(0.01) "
               f"{best.get('mindcf@0.01', {}).get('mean', float('nan')):.3f}" if best else "")
            + ("; real-voice set scored" if res.get("real", {}).get("scored") else "; no real-voice set")
            + ("; QUICK: 1 loss, 1 seed, 1 epoch" if ctx.quick else ""))  # fmt: skip
    return {
        "title": f"bench demo --preset {preset}: wall time against its target",
        "what": (
            f"One `bench demo --preset {preset} --json` process from scratch in a temporary folder "
            f"({spec.summary}; {', '.join(spec.losses)} x 3 seeds): corpus generation, training, "
            "scoring (and real voices when data/real-eval exists), report. One repeat: the run is "
            f"its own median. Target: {spec.minutes} min on 2 CPU cores; ratio = time / target "
            "(at most 1 meets it)."
        ),  # fmt: skip
        "rows": [
            row(
                f"bench demo --preset {preset}, whole command",
                res["wall_seconds"],
                "s",
                "target",
                target,
                res["wall_seconds"] / target,
                "of the target",
                note,
            ),  # fmt: skip
        ],
        "raw": {"summary": {k: res[k] for k in ("seconds", "runs", "table", "pairwise", "real") if k in res}},
    }


@benchmark("demo")
def bench_demo(ctx: Context) -> dict[str, Any]:
    return _section("demo", ctx)


@benchmark("demo_cpu", opt_in=True)
def bench_demo_cpu(ctx: Context) -> dict[str, Any]:
    return _section("cpu", ctx)
