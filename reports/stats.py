"""Uncertainty for the comparison: seed statistics, bootstrap intervals and paired tests.

Every number here comes from :mod:`bench.metrics`; this module only aligns score files, resamples
and aggregates.

Conventions (documented in the report itself):

* **mean ± std** over the seeds of a system, each seed's metric from ``compute_metrics`` on its
  own ``scores.txt`` (sample std, ``ddof=1``; blank for a single seed).
* **95 % interval**: bootstrap over *enrolment speakers* (all trials of a resampled speaker move
  together, because trials sharing a speaker are correlated) of the system's metric with its seeds
  pooled, i.e. the trials of all seeds concatenated and a speaker's trials taken from every seed.
* **Paired test**: the same speaker-level bootstrap applied to the difference A − B on trials
  matched by their (enroll, test) key, seed *i* of A paired with seed *i* of B. The p-value is
  two-sided; the verdict is "no significant difference" whenever the interval contains 0.
* **Holm-adjusted p** (``p_holm``): the pairwise p-values corrected for testing every pair of the
  table (Holm's step-down method, family = all pairs of one corpus and metric), for readers who
  want a family-wise error rate instead of the per-comparison interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from reports.collect import System, read_scores

METRICS = ["eer", "mindcf@0.01", "mindcf@0.05", "min_cllr", "cal_actdcf@0.01", "cal_cllr"]
METRIC_NAMES = {
    "eer": "EER (%)",
    "mindcf@0.01": "minDCF@0.01",
    "mindcf@0.05": "minDCF@0.05",
    "cllr": "Cllr (raw scores)",
    "min_cllr": "minCllr",
    "cal_actdcf@0.01": "actDCF@0.01 (cal.)",
    "cal_actdcf@0.05": "actDCF@0.05 (cal.)",
    "cal_cllr": "Cllr (cal.)",
}
#: metrics of the calibrated scores, read from each run's metrics.json "calibration" block
#: (``cal_<key>`` = ``calibration.overall[<key>]``); NaN for a run without calibration
CALIBRATED_PREFIX = "cal_"


def calibrated_metrics(run: Any) -> dict[str, float]:
    """``{"cal_<key>": value}`` of a run's calibrated scores (``bench.runner.calibrate``), {} without."""
    overall = (getattr(run, "calibration", None) or {}).get("overall") or {}
    return {f"{CALIBRATED_PREFIX}{k}": float(v) for k, v in overall.items() if isinstance(v, (int, float))}


def speaker_of(enroll_id: str) -> str:
    """The enrolment speaker of a trial's enrol id, the bootstrap's resampling unit.

    CN-Celeb enrols one model per speaker (``id00800-enroll``); VoxCeleb enrols utterances
    (``id10270/x6uYqmx31kE/00001``), whose speaker is the first path component.
    """
    head = enroll_id.split("/", 1)[0]
    return head[: -len("-enroll")] if head.endswith("-enroll") else head


@dataclass
class Aligned:
    """Scores of every seed of every system of one evaluation corpus, on one common trial order."""

    systems: list[System]
    trials: pd.DataFrame  # enroll, test, label
    scores: list[np.ndarray]  # per system: [n_seeds, n_trials]
    groups: np.ndarray  # int code of the enrolment speaker of each trial

    @property
    def labels(self) -> np.ndarray:
        return self.trials["label"].to_numpy(bool)


def align(systems: list[System], group_by: str = "speaker") -> Aligned:
    """Read all score files and put them on the trial order of the first one.

    Trials are matched by their (enroll, test) key; a run whose trials or labels differ from the
    others stops the report, naming its score file.
    """
    ref: pd.DataFrame | None = None
    ref_path = None
    mats = []
    for s in systems:
        rows = []
        for r in s.runs:
            df = read_scores(r.scores_path)
            if ref is None:
                ref, ref_path = df[["enroll", "test", "label"]].reset_index(drop=True), r.scores_path
                cats = (ref["enroll"].cat.categories, ref["test"].cat.categories)
                ref_key = _trial_keys(ref, cats)
                rows.append(df["score"].to_numpy(np.float64))
                continue
            pos = _match(df, ref, cats, ref_key)
            if pos is None:
                raise BenchError(
                    f"score file has {len(df)} trials that do not match the {len(ref)} trials of {ref_path}; "
                    "systems can only be compared on the same trials",
                    path=r.scores_path,
                )
            labels = df["label"].to_numpy(bool)
            scores = df["score"].to_numpy(np.float64)
            if pos is not _SAME_ORDER:
                labels, scores = labels[pos], scores[pos]
            if not np.array_equal(labels, ref["label"].to_numpy(bool)):
                raise BenchError(f"trial labels differ from those in {ref_path}", path=r.scores_path)
            rows.append(scores)
        mats.append(np.vstack(rows))
    assert ref is not None
    if group_by == "speaker":
        enroll = ref["enroll"].array
        spk = pd.factorize(np.array([speaker_of(str(c)) for c in enroll.categories], dtype=object))[0]
        # numbered in order of first appearance, as factorizing the per-trial speaker strings would
        groups = pd.factorize(spk[enroll.codes])[0].astype(np.int64)
    elif group_by == "trial":
        groups = np.arange(len(ref), dtype=np.int64)
    else:
        raise BenchError(f"unknown bootstrap unit '{group_by}'; use speaker or trial")
    return Aligned(systems=systems, trials=ref, scores=mats, groups=groups)


_SAME_ORDER = np.empty(0, dtype=np.int64)


def _trial_keys(df: pd.DataFrame, cats: tuple[pd.Index, pd.Index]) -> np.ndarray:
    """One int64 per trial from its (enroll, test) ids coded against ``cats``; -1 = an id not in them."""
    codes = []
    for col, c in zip(("enroll", "test"), cats):
        cat = df[col].array
        codes.append(cat.codes if cat.categories.equals(c) else cat.set_categories(c).codes)
    e, t = (x.astype(np.int64) for x in codes)
    return np.where((e < 0) | (t < 0), -1, e * max(len(cats[1]), 1) + t)


def _match(df: pd.DataFrame, ref: pd.DataFrame, cats, ref_key: np.ndarray) -> np.ndarray | None:
    """Positions in ``df`` of the reference trials (``_SAME_ORDER`` when already aligned), or None
    when the trial sets differ.  Keys are unique within each file (``read_scores`` checks)."""
    if len(df) != len(ref):
        return None
    key = _trial_keys(df, cats)
    if np.array_equal(key, ref_key):
        return _SAME_ORDER
    if (key < 0).any():
        return None
    pos = pd.Index(key).get_indexer(ref_key)
    return None if (pos < 0).any() else pos


def _metrics(scores: np.ndarray, labels: np.ndarray, p_targets: tuple[float, ...]) -> dict[str, Any]:
    from bench.metrics import compute_metrics

    return compute_metrics(scores, labels, p_targets=p_targets)


def _pooled(mat: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate seeds; a speaker keeps one group id across seeds so resampling takes all of them."""
    k = mat.shape[0]
    return mat.reshape(-1), np.tile(labels, k), np.tile(groups, k)


def p_targets_of(metrics: list[str]) -> tuple[float, ...]:
    return tuple(sorted({float(m.split("@", 1)[1]) for m in metrics if m.startswith("mindcf@")})) or (0.01,)


def system_table(
    al: Aligned,
    metrics: list[str] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: Any = None,
) -> pd.DataFrame:
    """One row per system: per metric mean, std over seeds, bootstrap interval and best flag."""
    from bench.metrics import bootstrap_cis

    labels = al.labels
    pts = p_targets_of(metrics)
    rows = []
    for s, mat in zip(al.systems, al.scores):
        per_seed = [{**_metrics(row, labels, pts), **calibrated_metrics(r)} for r, row in zip(s.runs, mat)]
        row: dict[str, Any] = {
            "system": s.label,
            "loss": s.loss,
            "backbone": s.backbone,
            "train_corpus": s.train_corpus,
            "eval_corpus": s.eval_corpus,
            "n_seeds": len(per_seed),
            "seeds": ",".join(str(x) for x in s.seeds),
            "n_trials": int(labels.size),
            "n_target": int(labels.sum()),
        }
        sc, lab, grp = _pooled(mat, labels, al.groups)
        # one set of resamples serves every metric: the same intervals as one bootstrap_ci per metric
        boot = [m for m in metrics if bootstrappable(m)] if n_boot > 0 else []
        cis = bootstrap_cis(sc, lab, boot, n_boot=n_boot, groups=grp, seed=seed, alpha=alpha) if boot else {}
        for m in metrics:
            vals = np.array([float(d.get(m, np.nan)) for d in per_seed])
            row[f"{m}_mean"] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
            row[f"{m}_seeds"] = vals.tolist()
            lo, hi = cis.get(m, (float("nan"), float("nan")))
            row[f"{m}_low"], row[f"{m}_high"] = lo, hi
            if progress is not None:
                progress()
        rows.append(row)
    df = pd.DataFrame(rows)
    for m in metrics:
        # Every reported metric is a cost (lower is better); ties are all marked.
        best = df[f"{m}_mean"].min()  # NaN (uncalibrated) cells are never best
        df[f"{m}_best"] = np.isclose(df[f"{m}_mean"], best, rtol=0, atol=1e-12)
    return df


def bootstrappable(metric: str) -> bool:
    """Metrics ``bench.metrics`` can bootstrap (EER and minDCF); Cllr is reported without an interval."""
    return metric == "eer" or metric.startswith("mindcf")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: sorted p_(k) times (m - k), made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(scaled, 1.0)
    return out


def pairwise(
    al: Aligned, metric: str = "eer", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, progress: Any = None
) -> pd.DataFrame:
    """Paired bootstrap of ``metric`` for every pair of systems (difference = A − B).

    ``metric`` is ``eer`` or ``mindcf@<p>``; the test and its p-value are ``bench.metrics.paired_bootstrap``.

    Seeds are paired by rank (first with first); with unequal seed counts the extra seeds of the
    larger system are left out of the test and the row says how many pairs were used.
    """
    from bench.metrics import paired_bootstrap

    if not bootstrappable(metric):
        raise BenchError(f"paired tests support 'eer' or 'mindcf@<p>', not '{metric}'")
    labels = al.labels
    rows = []
    # Without resamples there is no test to report (n_boot = 0 asks for point estimates only).
    n = len(al.systems) if n_boot > 0 else 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = al.scores[i], al.scores[j]
            k = min(a.shape[0], b.shape[0])
            sa, lab, grp = _pooled(a[:k], labels, al.groups)
            sb, _, _ = _pooled(b[:k], labels, al.groups)
            res = paired_bootstrap(sa, sb, lab, groups=grp, metric=metric, n_boot=n_boot, seed=seed, alpha=alpha)
            lo, hi, p = float(res["low"]), float(res["high"]), float(res["p_value"])
            diff = float(res["diff"])
            if lo <= 0 <= hi:
                verdict = "no significant difference"
            else:
                better = al.systems[i].label if diff < 0 else al.systems[j].label
                verdict = f"{better} better"
            rows.append(
                {
                    "eval_corpus": al.systems[i].eval_corpus,
                    "metric": metric,
                    "system_a": al.systems[i].label,
                    "system_b": al.systems[j].label,
                    "diff": diff,
                    "low": lo,
                    "high": hi,
                    "p_value": p,
                    "seed_pairs": k,
                    "verdict": verdict,
                }
            )
            if progress is not None:
                progress()
    df = pd.DataFrame(
        rows,
        columns=[
            "eval_corpus",
            "metric",
            "system_a",
            "system_b",
            "diff",
            "low",
            "high",
            "p_value",
            "seed_pairs",
            "verdict",
        ],
    )
    df.insert(df.columns.get_loc("p_value") + 1, "p_holm", holm(df["p_value"].to_numpy()))
    return df


def genre_table(systems: list[System], metric: str = "eer") -> pd.DataFrame:
    """Genre x system table of a per-genre metric as recorded in metrics.json, mean over seeds."""
    cols = {}
    for s in systems:
        per: dict[str, list[float]] = {}
        for r in s.runs:
            for g, d in r.per_genre.items():
                if isinstance(d, dict) and isinstance(d.get(metric), (int, float)):
                    per.setdefault(g, []).append(float(d[metric]))
        if per:
            cols[s.label] = {g: float(np.mean(v)) for g, v in per.items()}
    return pd.DataFrame(cols).sort_index()
