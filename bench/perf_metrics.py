"""Benchmark of the metrics on a CN-Celeb-sized trial list, beside scikit-learn and SpeechBrain.

Not a test: ``python -c "from bench.perf_metrics import time_metrics; print(time_metrics())"``.
Scores are synthetic (Gaussian, float32 like cosine scores, so ties occur) with the CN-Celeb1
eval class ratio (17,755 targets in 3,484,292 trials).  Times are the best of ``repeats`` runs;
peak memory is the tracemalloc peak of the call (numpy allocations; torch's are not seen).

:func:`report_statistics` and :func:`report_statistics_reference` time what ``bench report``
computes for 4 systems x 3 seeds on such a list (the ``report_stats`` row of ``bench perf``), now
and as the previous implementation did it.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

CNCELEB_TRIALS = 3_484_292
CNCELEB_TARGETS = 17_755
# SpeechBrain's EER/minDCF compare every score with every candidate threshold in one tensor,
# O(N^2) memory: cap its sample so the run survives (20k trials already means ~400 M entries).
SPEECHBRAIN_CAP = 20_000


def synthetic(n: int, n_target: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_target = n_target if n_target is not None else max(1, round(n * CNCELEB_TARGETS / CNCELEB_TRIALS))
    labels = np.zeros(n, dtype=bool)
    labels[rng.choice(n, n_target, replace=False)] = True
    scores = (0.1 * rng.standard_normal(n) + 0.3 * labels).astype(np.float32)
    return scores, labels


def _measure(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    best = float("inf")
    value = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": best, "peak_mib": peak / 2**20, "value": value}


def eer_and_min_dcf(scores, labels, p_target: float = 0.01) -> tuple[float, float]:
    """The EER + minDCF part of :func:`bench.metrics.compute_metrics`, from one set of counts."""
    from bench import metrics as m

    s, lab = m._as_arrays(scores, labels)
    n_tar, n_non = int(lab.sum()), int(lab.size - lab.sum())
    bins = m._bins(s, lab)
    fa, miss = m._corners(bins.tcount, bins.nbins)
    eer = 100.0 * float(m._rocch_crossing(fa[None], miss[None], n_non, n_tar)[0][0])
    return eer, float(m._min_dcf_counts(fa, miss, n_non, n_tar, p_target)[0])


def sklearn_eer(scores, labels) -> float:
    """The common recipe: roc_curve, then the linearly interpolated crossing."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr  # falls from 1 while fpr rises from 0
    j = int(np.flatnonzero(fnr <= fpr)[0])
    if j == 0 or fnr[j] == fpr[j]:
        return 100.0 * float(fpr[j])
    d0, d1 = fnr[j - 1] - fpr[j - 1], fnr[j] - fpr[j]
    a = -d0 / (d1 - d0)
    return 100.0 * float(fpr[j - 1] + a * (fpr[j] - fpr[j - 1]))


def time_metrics(n: int = CNCELEB_TRIALS, repeats: int = 3, bootstrap_n: int = 50_000) -> dict[str, Any]:
    """Time (best of ``repeats``) and peak memory of ours vs peers on ``n`` synthetic trials."""
    from bench import bootstrap
    from bench import metrics as m

    scores, labels = synthetic(n)
    out: dict[str, Any] = {"n_trials": n, "n_target": int(labels.sum()), "repeats": repeats}
    out["ours_eer_mindcf"] = _measure(lambda: eer_and_min_dcf(scores, labels), repeats)
    out["ours_compute_metrics"] = _measure(lambda: m.compute_metrics(scores, labels), repeats)
    out["ours_eer_interp"] = _measure(lambda: m.eer(scores, labels, method="interp"), repeats)
    try:
        out["sklearn_roc_curve_eer"] = _measure(lambda: sklearn_eer(scores, labels), repeats)
    except ImportError:
        out["sklearn_roc_curve_eer"] = "not installed"
    try:
        import torch
        from speechbrain.utils.metric_stats import EER, minDCF

        k = min(n, SPEECHBRAIN_CAP)
        s_cap, l_cap = synthetic(k, max(1, round(k * CNCELEB_TARGETS / CNCELEB_TRIALS)), seed=1)
        pos, neg = torch.from_numpy(s_cap[l_cap]), torch.from_numpy(s_cap[~l_cap])

        def sb():
            return 100.0 * float(EER(pos, neg)[0]), float(minDCF(pos, neg, p_target=0.01)[0])

        res = _measure(sb, repeats)
        res["n_trials_cap"] = k
        res["ours_same_sample"] = eer_and_min_dcf(s_cap, l_cap)
        res["ours_same_sample_seconds"] = _measure(lambda: eer_and_min_dcf(s_cap, l_cap), repeats)["seconds"]
        out["speechbrain_eer_mindcf"] = res
    except ImportError:
        out["speechbrain_eer_mindcf"] = "not installed"
    bs, bl = synthetic(bootstrap_n, bootstrap_n // 2, seed=2)
    boot = _measure(lambda: bootstrap.bootstrap_ci(bs, bl, n_boot=1000), 1)
    out["bootstrap_eer_1000x"] = {**boot, "n_trials": bootstrap_n, "target_fraction": 0.5}
    return out


# --------------------------------------------------------------------------------------------
# Report statistics: 4 systems x 3 seeds on a CN-Celeb1-sized trial list (issue 23)
# --------------------------------------------------------------------------------------------

CNCELEB_SPEAKERS = 196
REPORT_METRICS = ["eer", "mindcf@0.01", "mindcf@0.05"]


def synthetic_report(
    n_systems: int = 4, n_seeds: int = 3, n: int = CNCELEB_TRIALS, n_speakers: int = CNCELEB_SPEAKERS, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Scores ``[n_seeds, n]`` per system (float32 values, so ties occur), labels and speaker ids.

    Trials are split evenly over ``n_speakers`` enrolment speakers with the CN-Celeb1 target ratio;
    each speaker shifts all its scores (trials of a speaker are correlated), and each seed of each
    system has its own target separation (about 0.3, i.e. an EER near 7 %), so seeds disagree.
    """
    rng = np.random.default_rng(seed)
    n_target = max(1, round(n * CNCELEB_TARGETS / CNCELEB_TRIALS))
    labels = np.zeros(n, dtype=bool)
    labels[rng.choice(n, n_target, replace=False)] = True
    groups = np.repeat(np.arange(n_speakers), -(-n // n_speakers))[:n]
    offset = 0.03 * rng.standard_normal(n_speakers)[groups]
    mats = []
    for i in range(n_systems):
        seps = 0.3 + 0.01 * i + 0.01 * rng.standard_normal(n_seeds)
        mats.append(np.stack([(0.1 * rng.standard_normal(n) + sep * labels + offset).astype(np.float32).astype(np.float64)
                              for sep in seps]))  # fmt: skip
    return mats, labels, groups


def report_statistics(mats, labels, groups, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """What ``bench report`` computes for one corpus, through ``reports.stats`` on in-memory scores:
    per-seed metrics, two-stage (seeds x speakers) intervals of EER and both minDCFs, paired EER
    tests of every pair.  Returns the table and the pairwise frame."""
    import pandas as pd

    from reports.collect import System
    from reports.stats import Aligned, pairwise, system_table

    systems = [System(key=(f"loss{i}", "ecapa", "synthetic", "synthetic"), runs=[], label=f"loss{i}")
               for i in range(len(mats))]  # fmt: skip
    al = Aligned(systems=systems, trials=pd.DataFrame({"label": labels}), scores=list(mats), groups=groups)
    table = system_table(al, REPORT_METRICS, n_boot=n_boot, seed=seed)
    return {"table": table, "pairwise": pairwise(al, "eer", n_boot=n_boot, seed=seed)}


def report_statistics_reference(mats, labels, groups, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The same work as the previous implementation did it: per-seed metrics, then intervals and
    paired tests resampling speakers only with the seeds pooled
    (:func:`bench.bootstrap_reference.report_statistics_v1`)."""
    from bench.bootstrap_reference import report_statistics_v1
    from bench.metrics import compute_metrics

    per_seed = [[compute_metrics(row, labels) for row in mat] for mat in mats]
    stats = report_statistics_v1(list(mats), labels, groups, REPORT_METRICS, "eer", n_boot=n_boot, seed=seed)
    return {"per_seed": per_seed, **stats}


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak traced memory (MiB) of one call: numpy's allocations, beyond what existed before it."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


if __name__ == "__main__":
    from bench.io import to_json

    print(to_json(time_metrics(), sort_keys=False, default=float))
