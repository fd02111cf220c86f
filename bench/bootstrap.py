"""Bootstrap confidence intervals and paired tests of EER and minDCF.

Point metrics live in :mod:`bench.metrics` (and are re-exported from there with these functions);
this module resamples.  Three resampling units:

* **trials** (``groups=None``): stratified, targets and non-targets redrawn with replacement within
  their class; each replicate is a multinomial over the score bins, O(distinct scores).
* **groups** (``groups`` = one id per trial, e.g. the enrolment speaker): the cluster bootstrap;
  whole groups are redrawn with replacement and bring all their trials.
* **seeds x groups** (scores ``[S, N]``, one row per training seed of a system, on the same trials):
  a two-stage bootstrap.  Each resample draws the S seeds with replacement and, independently, the
  G groups with replacement; the resampled trial set holds every trial of seed s and group g
  ``m_s * w_g`` times, and the statistic is the metric of that pooled set.  Seeds and speakers are
  crossed (every seed scores every speaker), so the two factors are redrawn independently, as in the
  two-stage bootstrap of hierarchical data (Davison & Hinkley 1997, *Bootstrap Methods and their
  Application*, section 3.8) and the bootstrap of crossed random effects (Owen 2007, "The pigeonhole
  bootstrap", Ann. Appl. Stat. 1(2)); see also Saravanan et al. 2020, "Application of the
  hierarchical bootstrap to multi-level data in neuroscience".  Seed-to-seed variation of the
  training thus widens the interval.  With one seed only the groups are resampled, and the draws
  are those of the groups bootstrap.

Draws are deterministic in ``seed`` and depend only on (number of groups, number of seeds,
``n_boot``, ``seed``): every system of a report with the same seed count sees the same resamples,
which makes a paired test (seed i of A with seed i of B, speakers by id) the difference of the two
systems' replicates.

How the group replicates are counted, in O(seeds x trials) once and then independently of the
number of trials per resample, is in :mod:`bench.bootstrap_counts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.bootstrap_counts import _cell_replicates, _Cells, _parse_metric
from bench.errors import BenchError
from bench.metrics import _as_arrays, _Bins, _bins, _corners, _min_dcf_counts, _rocch_crossing

# --------------------------------------------------------------------------------------------
# Metrics on corner counts, draws, intervals
# --------------------------------------------------------------------------------------------


def _metric_fn(metric: str):
    """Batched metric on corner counts: f(fa[B, M], miss[B, M], n_non[B], n_tar[B]) -> [B]."""
    p = _parse_metric(metric)
    if p is None:
        return lambda fa, miss, nn, nt: 100.0 * _rocch_crossing(fa, miss, nn, nt)[0]
    return lambda fa, miss, nn, nt: _min_dcf_counts(fa, miss, nn, nt, p)[0]


def _chunks(n_boot: int, width: int):
    step = max(1, min(n_boot, 4_000_000 // max(width, 1)))
    for start in range(0, n_boot, step):
        yield min(step, n_boot - start)


# Group counts up to this many draw from one multinomial per resample (the stream the results
# were first computed with); more groups (e.g. every trial its own group) count uniform draws,
# the same distribution at O(groups) cost instead of one binomial draw per group.
_MULTINOMIAL_GROUPS = 4096


def _group_codes(groups, n: int) -> tuple[np.ndarray, int]:
    g = np.asarray(groups).reshape(-1)
    if g.size != n:
        raise ValueError(f"groups ({g.size}) and labels ({n}) differ in length")
    uniq, gi = np.unique(g, return_inverse=True)
    return gi.reshape(-1), uniq.size


def _draw_groups(rng: np.random.Generator, n_groups: int, n_boot: int) -> np.ndarray:
    """[n_boot, n_groups] multiplicities of the groups in ``n_boot`` resamples of ``n_groups`` groups."""
    if n_groups <= _MULTINOMIAL_GROUPS:
        return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    out = np.empty((n_boot, n_groups), dtype=np.int64)
    for i in range(n_boot):
        out[i] = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
    return out


def draw_resamples(n_groups: int, n_seeds: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities ``(groups [n_boot, n_groups], seeds [n_boot, n_seeds])`` of the two-stage bootstrap.

    Groups are drawn first, from ``default_rng(seed)``, exactly as the groups bootstrap draws them;
    then the seeds (all ones, no draw, with one seed).  The same arguments give the same draws.
    """
    rng = np.random.default_rng(seed)
    mult = _draw_groups(rng, n_groups, n_boot)
    if n_seeds == 1:
        return mult, np.ones((n_boot, 1), dtype=np.int64)
    return mult, rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)


def _finite_replicates(vals: np.ndarray) -> np.ndarray:
    good = vals[np.isfinite(vals)]
    if good.size < 0.5 * vals.size:
        raise BenchError(
            f"only {good.size} of {vals.size} bootstrap resamples contained both classes; "
            "use more groups or trial resampling"
        )
    return good


def _interval(vals: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(_finite_replicates(vals), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def percentile_interval(replicates: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval ``(low, high)`` at level ``1 - alpha`` of bootstrap replicates (NaN = a
    resample without one of the classes, left out; a BenchError when over half are)."""
    return _interval(np.asarray(replicates, dtype=np.float64), alpha)


def paired_test(rep_a: np.ndarray, rep_b: np.ndarray, a: float, b: float, alpha: float = 0.05) -> dict:
    """Paired bootstrap test from the replicates of two systems on the same resamples.

    ``diff = a - b`` (the point values), ``low``/``high`` the percentile interval of the resampled
    differences and the two-sided ``p_value = min(1, 2 min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (n + 1))``
    over the ``n`` finite differences ``d*``: the smallest level at which the percentile interval
    excludes zero (the +1 keeps it away from exactly 0; Davison & Hinkley 1997, section 4.4).
    """
    d = _finite_replicates(np.asarray(rep_a, dtype=np.float64) - np.asarray(rep_b, dtype=np.float64))
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    n = d.size
    p = min(1.0, 2.0 * min(np.count_nonzero(d <= 0) + 1, np.count_nonzero(d >= 0) + 1) / (n + 1))
    return {"a": a, "b": b, "diff": a - b, "low": float(lo), "high": float(hi), "p_value": float(p), "n_boot": int(n)}


def _cell_weights(group_mult: np.ndarray, seed_mult: np.ndarray) -> np.ndarray:
    """[R, S * G] weights of the cells (seed s, group g): ``m_s * w_g``."""
    r = group_mult.shape[0]
    return (
        (seed_mult[:, :, None] * group_mult[:, None, :])
        .reshape(r, seed_mult.shape[1] * group_mult.shape[1])
        .astype(np.float64)
    )


def _as_seed_matrix(scores, n: int) -> np.ndarray:
    mat = np.asarray(scores, dtype=np.float64)
    mat = mat.reshape(1, -1) if mat.ndim == 1 else mat
    if mat.ndim != 2 or mat.shape[1] != n:
        raise ValueError(f"scores must be [N] or [seeds, N] with N = {n} trials, got shape {np.shape(scores)}")
    if np.isnan(mat).any():
        raise BenchError(f"{int(np.isnan(mat).sum())} score(s) are NaN")
    return mat


@dataclass
class Replicates:
    """Bootstrap of one system: ``point[metric]`` on its pooled trials (every seed, every group once)
    and ``values[metric]`` [n_boot], NaN where a resample lacks a class."""

    point: dict[str, float]
    values: dict[str, np.ndarray]


def replicates(scores, labels, groups, metrics, n_boot: int = 1000, seed: int = 0) -> Replicates:
    """Two-stage bootstrap of one system: seeds and groups resampled.

    ``scores``: ``[N]`` or ``[S, N]`` (one row per training seed, all on the same N trials);
    ``labels [N]`` (target = True); ``groups [N]`` the resampling unit of each trial (the enrolment
    speaker).  Replicate r is the metric of the pooled trials in which every trial of seed s and
    group g appears ``m_s * w_g`` times, (w, m) = :func:`draw_resamples`.  Metrics: ``"eer"``
    (percent, ROCCH) and ``"mindcf@<p>"``.  Cost: O(S N) to bin the trials once, then per resample
    O(S G corners / 64) plus the refined gaps, independent of N.
    """
    _, lab = _as_arrays(np.zeros(np.size(labels)), labels)
    mat = _as_seed_matrix(scores, lab.size)
    metrics = list(metrics)
    for m in metrics:
        _parse_metric(m)
    gi, n_groups = _group_codes(groups, lab.size)
    group_mult, seed_mult = draw_resamples(n_groups, mat.shape[0], n_boot, seed)
    cells = _Cells(mat, lab, gi, n_groups)
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    # resamples in chunks bound the [R, cells] and [R, corners] matrices; the first chunk leads with
    # the point estimate (every cell once), a row like the others
    step = max(1, (1 << 22) // max(cells.n_cells, cells.coarse.size))
    for start in range(0, max(n_boot, 1), step):
        w = _cell_weights(group_mult[start : start + step], seed_mult[start : start + step])
        if start == 0:
            w = np.concatenate((np.ones((1, cells.n_cells)), w))
        for m, v in _cell_replicates(cells, w, metrics).items():
            out[m].append(v)
    point = {m: float(v[0][0]) for m, v in out.items()}
    out = {m: [v[0][1:], *v[1:]] for m, v in out.items()}
    return Replicates(point, {m: np.concatenate(v) for m, v in out.items()})


# --------------------------------------------------------------------------------------------
# Trial resampling
# --------------------------------------------------------------------------------------------


def _trial_bins(s: np.ndarray, lab: np.ndarray, bins: _Bins) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each trial: targets into [0, K), non-targets into [0, 2K] (see :class:`_Bins`)."""
    tb = np.searchsorted(bins.tau, s[lab])
    j = np.searchsorted(bins.tau, s[~lab], "left")
    tied = np.zeros(j.size, dtype=bool)
    inside = j < bins.tau.size
    tied[inside] = bins.tau[j[inside]] == s[~lab][inside]
    return tb, 2 * j + tied


def _replicates(s, lab, bins, metric, n_boot, groups, rng) -> np.ndarray:
    fn = _metric_fn(metric)
    k = bins.tau.size
    if groups is None:
        # Stratified trial resampling: drawing T targets (N non-targets) with replacement and
        # counting them per bin is a multinomial over the bins, so each replicate is O(K).
        out = []
        n_tar, n_non = int(lab.sum()), int((~lab).sum())
        for b in _chunks(n_boot, 3 * k + 3):
            tc = _resample_counts(bins.tcount, b, rng)
            nb = _resample_counts(bins.nbins, b, rng)
            fa, miss = _corners(tc, nb)
            out.append(fn(fa, miss, np.full(b, n_non), np.full(b, n_tar)))
        return np.concatenate(out)
    gi, n_groups = _group_codes(groups, lab.size)
    mult = _draw_groups(rng, n_groups, n_boot)
    cells = _Cells(s[None], lab, gi, n_groups)
    return _cell_replicates(cells, mult.astype(np.float64), [metric])[metric]


def _resample_counts(counts: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """[b, len(counts)] bin counts of ``counts.sum()`` items redrawn with replacement."""
    total = int(counts.sum())
    nz = np.flatnonzero(counts)
    out = np.zeros((b, counts.size))
    # a multinomial costs one binomial draw per occupied bin, redrawing items one per item:
    # take whichever is cheaper (a binomial draw costs several uniform draws)
    if total < 6 * nz.size:
        cat = np.repeat(np.arange(nz.size), counts[nz])
        for i in range(b):
            out[i, nz] = np.bincount(cat[rng.integers(0, total, total)], minlength=nz.size)
    else:
        out[:, nz] = rng.multinomial(total, counts[nz] / total, size=b)
    return out


def _paired_trial_replicates(sa, sb, lab, fn, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified trial resampling shared by both systems: per replicate, T target and N
    non-target draws with replacement (in that order), counted into each system's score bins."""
    tpos, npos = np.flatnonzero(lab), np.flatnonzero(~lab)
    systems = []
    for s in (sa, sb):
        bins = _bins(s, lab)
        tb, nb_of = _trial_bins(s, lab, bins)
        systems.append((bins.tau.size, tb, nb_of))
    n_tar, n_non = tpos.size, npos.size
    k_max = max(k for k, _, _ in systems)
    out: tuple[list, list] = ([], [])
    for b in _chunks(n_boot, 2 * (3 * k_max + 3)):
        draws = []
        for _ in range(b):
            draws.append((rng.integers(0, n_tar, n_tar), rng.integers(0, n_non, n_non)))
        for (k, tb, nb_of), dest in zip(systems, out):
            tc = np.stack([np.bincount(tb[t], minlength=k) for t, _ in draws]).astype(np.float64)
            nb = np.stack([np.bincount(nb_of[n], minlength=2 * k + 1) for _, n in draws]).astype(np.float64)
            fa, miss = _corners(tc, nb)
            dest.append(fn(fa, miss, np.full(b, float(n_non)), np.full(b, float(n_tar))))
    return np.concatenate(out[0]), np.concatenate(out[1])


# --------------------------------------------------------------------------------------------
# Public intervals and tests
# --------------------------------------------------------------------------------------------


def bootstrap_ci(
    scores, labels, metric: str = "eer", n_boot: int = 1000, groups=None, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` at level ``1 - alpha``.

    ``metric``: ``"eer"`` (percent, ROCCH) or ``"mindcf@<p>"`` (``"mindcf"`` = p 0.01).
    ``groups=None``: trials are resampled with replacement within each class (target and
    non-target counts stay fixed).  ``groups`` = one id per trial (e.g. the enrolment speaker):
    whole groups are resampled with replacement and each drawn group brings all its trials,
    which respects the dependence between trials sharing a speaker (wider, more honest
    intervals); ``scores`` may then be ``[S, N]``, one row per training seed, and seeds are
    resampled too (see :func:`replicates`).  Resamples left without one of the classes are
    discarded.  Deterministic in ``seed``.

    With groups each replicate costs O(cells x distinct target scores / 64) plus the refined
    blocks, independent of the number of trials (see :mod:`bench.bootstrap_counts`); without, O(distinct scores).
    """
    return bootstrap_cis(scores, labels, [metric], n_boot=n_boot, groups=groups, seed=seed, alpha=alpha)[metric]


def bootstrap_cis(
    scores, labels, metrics, n_boot: int = 1000, groups=None, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci` of several metrics, ``{metric: (low, high)}``, equal to one call per metric.

    Every call of :func:`bootstrap_ci` with the same seed draws the same resamples, so with groups
    the resamples are drawn and counted once and every metric is read from the same counts.
    """
    if groups is None:
        s, lab = _as_arrays(scores, labels)
        for m in metrics:
            _parse_metric(m)
        bins = _bins(s, lab)
        return {
            m: _interval(_replicates(s, lab, bins, m, n_boot, None, np.random.default_rng(seed)), alpha)
            for m in metrics
        }
    reps = replicates(scores, labels, groups, list(metrics), n_boot=n_boot, seed=seed)
    return {m: _interval(v, alpha) for m, v in reps.values.items()}


def paired_bootstrap(
    scores_a, scores_b, labels, groups=None, metric: str = "eer", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Paired bootstrap test of ``metric(A) - metric(B)`` on the same trials.

    Each resample draws the same trials (or groups, see :func:`bootstrap_ci`) for both systems,
    so trial difficulty cancels.  With groups, ``scores_a``/``scores_b`` may be ``[S, N]``: seeds
    are paired by index (seed i of A with seed i of B) and groups by id, and both are resampled
    (:func:`replicates`).  Returns ``diff`` (A - B on all trials, seeds pooled; negative = A has the
    lower error), ``low``/``high`` and ``p_value`` as in :func:`paired_test`, ``n_boot`` (finite
    resamples), ``metric``, and ``a``/``b`` (the two point values).
    """
    if groups is None:
        fn = _metric_fn(metric)
        sa, lab = _as_arrays(scores_a, labels)
        sb, _ = _as_arrays(scores_b, labels)
        va, vb = _paired_trial_replicates(sa, sb, lab, fn, n_boot, np.random.default_rng(seed))
        full = []
        for s in (sa, sb):
            bn = _bins(s, lab)
            fa, miss = _corners(bn.tcount[None], bn.nbins[None])
            full.append(float(fn(fa, miss, np.array([(~lab).sum()]), np.array([lab.sum()]))[0]))
        return {"metric": metric, **paired_test(va, vb, full[0], full[1], alpha)}
    if np.shape(scores_a) != np.shape(scores_b):
        raise ValueError(
            f"paired systems need the same seeds x trials, got {np.shape(scores_a)} and {np.shape(scores_b)}"
        )
    ra = replicates(scores_a, labels, groups, [metric], n_boot=n_boot, seed=seed)
    rb = replicates(scores_b, labels, groups, [metric], n_boot=n_boot, seed=seed)
    return {
        "metric": metric,
        **paired_test(ra.values[metric], rb.values[metric], ra.point[metric], rb.point[metric], alpha),
    }
