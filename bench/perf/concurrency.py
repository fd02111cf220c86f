"""Training throughput of two concurrent runs beside one run alone (issue 17's thread plan).

Each measurement is a separate process (``python -m bench.perf.concurrency --probe``) that trains the
demo preset's model with AAM on random 1 s crops for a fixed number of steps and prints its samples
per second; no loader, so only the training step's threads compete. Rows: one run alone with the
automatic thread plan; two runs started together with the automatic plan (each sees every CPU); two
runs started together with ``--threads`` set to half the CPUs each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.perf.base import Context, benchmark, row


def probe(steps: int, threads: int | None) -> dict[str, float]:
    """Train ``steps`` steps of the demo model + AAM on random crops; returns samples/s and threads."""
    import torch

    from bench.config import load_config
    from bench.runner.experiment import run_config
    from bench.threads import configure
    from losses import LOSSES
    from models import build_model

    n = configure(workers=0, threads=threads)
    cfg = run_config(load_config(preset="demo"), "aam", 0, ["aam"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    loss = LOSSES.build("aam", cfg.loss.params, model.embed_dim, 40)
    opt = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.01)
    batch, views = 32, 2
    wave = torch.randn(batch * views, 16000)
    labels = torch.arange(batch) % 40
    model.train()

    def step() -> None:
        emb = model(wave).view(batch, views, -1)
        out = loss(emb, labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"samples_per_s": steps * batch / (time.perf_counter() - t0), "threads": n}


def _spawn(steps: int, threads: int | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "bench.perf.concurrency", "--probe", str(steps)]
    if threads:
        args.append(str(threads))
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _collect(procs: list[subprocess.Popen]) -> list[dict[str, float]]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"throughput probe failed with exit code {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@benchmark("concurrency")
def bench_concurrency(ctx: Context) -> dict[str, Any]:
    from bench.threads import available_cpus

    steps = 3 if ctx.quick else 15
    cpus = available_cpus()
    alone = _collect([_spawn(steps, None)])[0]
    auto2 = _collect([_spawn(steps, None), _spawn(steps, None)])
    half = max(1, cpus // 2)
    split2 = _collect([_spawn(steps, half), _spawn(steps, half)])

    def pair(label: str, runs: list[dict[str, float]]) -> dict[str, Any]:
        total = sum(r["samples_per_s"] for r in runs)
        base = alone["samples_per_s"]
        return row(label, total, "samples/s", "one run alone", base, total / base, "of one run alone")

    rows = [
        row(f"one run alone ({alone['threads']} threads)", alone["samples_per_s"], "samples/s"),
        pair(f"two concurrent runs, automatic plan ({auto2[0]['threads']} threads each), total", auto2),
        pair(f"two concurrent runs, --threads {half} each, total", split2),
    ]
    return {
        "title": "Training throughput: two concurrent runs beside one alone",
        "what": f"Demo model (ECAPA C=64) + AAM, batch 32 x 2 views of 1 s, {steps} steps per process, {cpus} CPUs "
        "available. Each run is its own process; a ratio near 1 means two jobs share the CPUs without "
        "oversubscribing them. Two independent jobs each see every CPU (the automatic plan cannot know of the "
        "other), and torch's OpenMP threads spin while they wait, so together they run far slower than one "
        "alone; giving each job its own CPUs (--threads, or taskset, which the plan follows) avoids it.",
        "rows": rows,
        "raw": {"alone": alone, "auto": auto2, "split": split2, "cpus": cpus},
    }


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--probe":
        res = probe(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
        print(json.dumps(res))
