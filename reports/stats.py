"""Uncertainty for the comparison: seed statistics, bootstrap intervals and paired tests.

Every number here comes from :mod:`bench.metrics` and :mod:`bench.bootstrap`; this module only
aligns score files, asks for resamples and aggregates.

Conventions (documented in the report itself):

* **mean ± std** over the seeds of a system, each seed's metric from ``compute_metrics`` on its
  own ``scores.txt`` (sample std, ``ddof=1``; blank for a single seed).
* **95 % interval**: a two-stage bootstrap of the system's metric on its seeds pooled: each
  resample draws the seeds with replacement and, independently, the *enrolment speakers* with
  replacement (all trials of a drawn speaker move together, because trials sharing a speaker are
  correlated), so seed-to-seed variation of training is inside the interval
  (``bench.bootstrap.replicates``; Davison & Hinkley 1997, section 3.8).  With one seed only the
  speakers are resampled and the row carries a ``warning``.
* **Paired test**: the same resamples applied to the difference A − B on trials matched by their
  (enroll, test) key, seed *i* of A paired with seed *i* of B and speakers by id. The p-value is
  two-sided; the verdict is "no significant difference" whenever the interval contains 0. With
  one seed pair the verdict carries a ``warning`` (seed variation not in the test).
* **Holm-adjusted p** (``p_holm``): the pairwise p-values corrected for testing every pair of the
  table (Holm's step-down method, family = all pairs of one corpus and metric), for readers who
  want a family-wise error rate instead of the per-comparison interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.metric_table import CALIBRATED_PREFIX
from bench.metrics import METRIC_TABLE
from reports.collect import System, read_scores

#: the report's default columns (bench.metrics.METRIC_TABLE: each row's ``report`` keys, raw-score
#: metrics first); ``cal_<key>`` columns are metrics of the calibrated scores, read from each run's
#: metrics.json "calibration" block (``calibration.overall[<key>]``), NaN for a run without calibration
METRICS = METRIC_TABLE.report_columns()


def metric_label(key: str) -> str:
    """The column label of a metric key (``eer`` -> ``EER (%)``, ``cal_cllr`` -> ``Cllr (cal.)``)."""
    return METRIC_TABLE.label(key)


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
    # bootstrap results shared by the table and the paired tests: (system, seeds, n_boot, seed, metric)
    boot: dict[tuple, tuple[float, np.ndarray]] = field(default_factory=dict, repr=False)

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


ONE_SEED_WARNING = "one seed: seed-to-seed variation is not included"


def seed_warning(n_seeds: int) -> str:
    """The warning a one-seed interval or verdict carries ("" with several seeds)."""
    return ONE_SEED_WARNING if n_seeds == 1 else ""


def boot(
    al: Aligned, i: int, k: int, metrics: list[str], n_boot: int, seed: int
) -> dict[str, tuple[float, np.ndarray]]:
    """``{metric: (point, replicates)}`` of system ``i`` on its first ``k`` seeds (two-stage bootstrap).

    Computed once per (system, seeds, n_boot, seed, metric) and kept on ``al``: every system with
    the same seed count sees the same resamples, so a paired test is the difference of two systems'
    replicates and reuses the table's work.
    """
    from bench.bootstrap import replicates

    key = (i, k, n_boot, seed)
    missing = [m for m in metrics if (*key, m) not in al.boot]
    if missing:
        r = replicates(al.scores[i][:k], al.labels, al.groups, missing, n_boot=n_boot, seed=seed)
        for m in missing:
            al.boot[(*key, m)] = (r.point[m], r.values[m])
    return {m: al.boot[(*key, m)] for m in metrics}


def p_targets_of(metrics: list[str]) -> tuple[float, ...]:
    """The target priors of the raw-score per-prior keys among ``metrics`` (0.01 when none)."""
    keys = [METRIC_TABLE.resolve(m) for m in metrics]
    return tuple(sorted({k.p for k in keys if k.p is not None and not k.calibrated})) or (0.01,)


def system_table(
    al: Aligned,
    metrics: list[str] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: Any = None,
    pair_metrics: tuple[str, ...] = ("eer",),
) -> pd.DataFrame:
    """One row per system: per metric mean, std over seeds, bootstrap interval and best flag.

    ``pair_metrics``: metrics the paired tests will ask for, bootstrapped now with the others (the
    resamples are drawn and the trials binned once per system).
    """
    from bench.bootstrap import percentile_interval

    labels = al.labels
    pts = p_targets_of(metrics)
    extra = [m for m in pair_metrics if bootstrappable(m) and m not in metrics]
    rows = []
    for i, (s, mat) in enumerate(zip(al.systems, al.scores)):
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
        # one set of resamples serves every metric, and later the paired tests
        bs = [m for m in metrics if bootstrappable(m)] if n_boot > 0 else []
        reps = boot(al, i, mat.shape[0], bs + extra, n_boot, seed) if bs else {}
        cis = {m: percentile_interval(reps[m][1], alpha) for m in bs}
        row["warning"] = seed_warning(mat.shape[0]) if bs else ""
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
        # The best value by the metric's direction (the table's lower_is_better); ties are all marked.
        col = df[f"{m}_mean"]
        best = col.min() if METRIC_TABLE.resolve(m).lower_is_better else col.max()  # NaN cells are never best
        df[f"{m}_best"] = np.isclose(df[f"{m}_mean"], best, rtol=0, atol=1e-12)
    return df


def bootstrappable(metric: str) -> bool:
    """Metrics ``bench.bootstrap`` can resample (the table's ``bootstrap`` rows: EER and minDCF, raw
    scores); the others (Cllr, calibrated metrics) are reported without an interval."""
    return METRIC_TABLE.bootstrappable(metric)


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

    ``metric`` is ``eer`` or ``mindcf@<p>``; the test and its p-value are ``bench.bootstrap.paired_test``.

    Seeds are paired by rank (first with first) and resampled with the speakers (two-stage
    bootstrap, see :func:`boot`); with unequal seed counts the extra seeds of the larger system are
    left out of the test and the row says how many pairs were used; with one pair the row's
    ``warning`` says that seed variation is not in the test.
    """
    from bench.bootstrap import paired_test

    if not bootstrappable(metric):
        raise BenchError(f"paired tests support {METRIC_TABLE.bootstrap_names()}, not '{metric}'")
    rows = []
    # Without resamples there is no test to report (n_boot = 0 asks for point estimates only).
    n = len(al.systems) if n_boot > 0 else 0
    for i in range(n):
        for j in range(i + 1, n):
            k = min(al.scores[i].shape[0], al.scores[j].shape[0])
            (pa, va), (pb, vb) = (
                boot(al, i, k, [metric], n_boot, seed)[metric],
                boot(al, j, k, [metric], n_boot, seed)[metric],
            )
            res = paired_test(va, vb, pa, pb, alpha=alpha)
            lo, hi, p = float(res["low"]), float(res["high"]), float(res["p_value"])
            diff = float(res["diff"])
            if lo <= 0 <= hi:
                verdict = "no significant difference"
            else:
                a_better = (diff < 0) == METRIC_TABLE.resolve(metric).lower_is_better
                better = al.systems[i].label if a_better else al.systems[j].label
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
                    "warning": seed_warning(k),
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
            "warning",
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
