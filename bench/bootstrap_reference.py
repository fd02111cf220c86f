"""The group bootstrap as it was before seeds were resampled (bench 2026-11): kept for comparison only.

Used by the ``bench perf`` row that times the report statistics beside their previous
implementation, and by the tests that check the current engine (:mod:`bench.bootstrap`) against it.
Nothing else should import it.  It resamples enrolment speakers only, with the seeds of a system
pooled (a speaker's trials of every seed move together), and counts every corner of the pooled
trials for every resample (one matmul of [R, G] by [G, corners] per system and per paired test).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.bootstrap import _chunks, _draw_groups, _finite_replicates, _group_codes, _interval, _metric_fn
from bench.metrics import _as_arrays, _bins, _corners

# Per-group corner counts stay dense up to this many entries per matrix (float64), else sparse.
_DENSE_ENTRIES = 1 << 24


class _GroupCorners:
    """Per-group counts at the corner thresholds of one system's full trial set.

    Corners are those of :func:`_corners` (``-inf``, every distinct target score, ``+inf``):
    ``fa[g, k]`` = non-targets of group g with score >= t_k, ``miss[g, k]`` = targets of group g
    with score < t_k.  A resample that takes group g ``m_g`` times has the counts ``m @ fa`` and
    ``m @ miss`` at every corner, so each replicate is a weighted sum over groups instead of a pass
    over the trials.  Thresholds whose target score is missing from a resample still give valid
    operating points of it (the point of the next score up), so minDCF and the ROC hull do not
    change.  Corners with the same total non-target count as the corner before them are dropped:
    in every resample such a corner has the same P_fa and a P_miss no lower than its predecessor,
    so it is never below the hull nor the cost minimum (first and last corners are always kept).
    Counts are integers, exact in float64.
    """

    def __init__(self, s: np.ndarray, lab: np.ndarray, gi: np.ndarray, n_groups: int):
        tau = np.unique(s[lab])
        m = tau.size + 2
        # non-target with score x counts at corners k < 1 + #(tau <= x); target tau_j at k >= j + 2
        c_non = 1 + np.searchsorted(tau, s[~lab], "right")
        c_tar = 2 + np.searchsorted(tau, s[lab], "left")
        self.n_groups, self.dense = n_groups, n_groups * m <= _DENSE_ENTRIES
        g_non, g_tar = gi[~lab], gi[lab]
        if self.dense:
            hn = np.bincount(g_non * m + c_non, minlength=n_groups * m).reshape(n_groups, m)
            ht = np.bincount(g_tar * m + c_tar, minlength=n_groups * m).reshape(n_groups, m)
            fa = np.zeros((n_groups, m))
            fa[:, :-1] = np.cumsum(hn[:, :0:-1], axis=1)[:, ::-1]
            miss = np.cumsum(ht, axis=1).astype(np.float64)
            tot = fa.sum(axis=0)
        else:
            from scipy import sparse

            self.hn = sparse.csr_matrix((np.ones(c_non.size), (g_non, c_non)), shape=(n_groups, m))
            self.ht = sparse.csr_matrix((np.ones(c_tar.size), (g_tar, c_tar)), shape=(n_groups, m))
            tot = self._cum_fa(np.asarray(self.hn.sum(axis=0)))[0]
        keep = np.ones(m, dtype=bool)
        keep[1:-1] = tot[1:-1] != tot[:-2]
        self.cols = np.flatnonzero(keep)
        if self.dense:
            self.fa, self.miss = np.ascontiguousarray(fa[:, self.cols]), np.ascontiguousarray(miss[:, self.cols])

    @staticmethod
    def _cum_fa(hn: np.ndarray) -> np.ndarray:
        fa = np.zeros(hn.shape)
        fa[:, :-1] = np.cumsum(hn[:, :0:-1], axis=1)[:, ::-1]
        return fa

    @property
    def width(self) -> int:
        return int(self.cols.size)

    def counts(self, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fa, miss) [b, corners] of the resamples with group multiplicities ``mult`` [b, G]."""
        w = np.asarray(mult, dtype=np.float64)
        if self.dense:
            return w @ self.fa, w @ self.miss
        fa = self._cum_fa(np.asarray((self.hn.T @ w.T).T))
        miss = np.cumsum(np.asarray((self.ht.T @ w.T).T), axis=1)
        return fa[:, self.cols], miss[:, self.cols]


def _evaluate(fa: np.ndarray, miss: np.ndarray, fns: list) -> list[np.ndarray]:
    """Each batched metric on corner counts; NaN for resamples without one of the classes."""
    nn, nt = fa[:, 0], miss[:, -1]
    ok = (nt > 0) & (nn > 0)
    out = []
    for fn in fns:
        vals = np.full(fa.shape[0], np.nan)
        if ok.all():
            vals = np.asarray(fn(fa, miss, nn, nt), dtype=np.float64)
        elif ok.any():
            vals[ok] = fn(fa[ok], miss[ok], nn[ok], nt[ok])
        out.append(vals)
    return out


def _group_replicates(corners: list[_GroupCorners], mult: np.ndarray, fns: list) -> list[list[np.ndarray]]:
    """``out[i][j]``: replicates of metric ``fns[j]`` of system ``corners[i]`` for each row of ``mult``."""
    out: list[list[list[np.ndarray]]] = [[[] for _ in fns] for _ in corners]
    width = max(c.width for c in corners) * 4 + mult.shape[1]
    start = 0
    for b in _chunks(mult.shape[0], width):
        m = mult[start : start + b]
        start += b
        for i, c in enumerate(corners):
            for j, vals in enumerate(_evaluate(*c.counts(m), fns)):
                out[i][j].append(vals)
    return [[np.concatenate(v) for v in per] for per in out]


def bootstrap_cis_v1(scores, labels, metrics, n_boot: int = 1000, groups=None, seed: int = 0, alpha: float = 0.05):
    """The former ``bench.metrics.bootstrap_cis`` with groups: ``{metric: (low, high)}``."""
    s, lab = _as_arrays(scores, labels)
    fns = [_metric_fn(m) for m in metrics]
    gi, n_groups = _group_codes(groups, lab.size)
    mult = _draw_groups(np.random.default_rng(seed), n_groups, n_boot)
    reps = _group_replicates([_GroupCorners(s, lab, gi, n_groups)], mult, fns)[0]
    return {m: _interval(v, alpha) for m, v in zip(metrics, reps)}


def paired_bootstrap_v1(scores_a, scores_b, labels, groups, metric: str = "eer", n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> dict:  # fmt: skip
    """The former ``bench.metrics.paired_bootstrap`` with groups."""
    sa, lab = _as_arrays(scores_a, labels)
    sb, _ = _as_arrays(scores_b, labels)
    fn = _metric_fn(metric)
    rng = np.random.default_rng(seed)
    full = {}
    for name, s in (("a", sa), ("b", sb)):
        bn = _bins(s, lab)
        fa, miss = _corners(bn.tcount[None], bn.nbins[None])
        full[name] = float(fn(fa, miss, np.array([(~lab).sum()]), np.array([lab.sum()]))[0])
    gi, n_groups = _group_codes(groups, lab.size)
    mult = _draw_groups(rng, n_groups, n_boot)
    corners = [_GroupCorners(s, lab, gi, n_groups) for s in (sa, sb)]
    (va,), (vb,) = _group_replicates(corners, mult, [fn])
    d = _finite_replicates(va - vb)
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    n = d.size
    p = min(1.0, 2.0 * min(np.count_nonzero(d <= 0) + 1, np.count_nonzero(d >= 0) + 1) / (n + 1))
    return {"metric": metric, "a": full["a"], "b": full["b"], "diff": full["a"] - full["b"], "low": float(lo),
            "high": float(hi), "p_value": float(p), "n_boot": int(n)}  # fmt: skip


def report_statistics_v1(
    mats: list[np.ndarray], labels, groups, metrics: list[str], pair_metric: str = "eer", n_boot: int = 1000,
    seed: int = 0, alpha: float = 0.05,
) -> dict[str, Any]:  # fmt: skip
    """The bootstrap work of the former ``reports.stats.system_table`` and ``pairwise``.

    ``mats``: per system ``[S, N]`` scores.  Intervals: speakers resampled, seeds pooled (the trials
    of all seeds concatenated, a speaker keeping one group id across seeds).  Paired tests: every
    pair, seeds paired by index up to the smaller count, the same pooling.  Returns
    ``{"intervals": [{metric: (low, high)}] per system, "pairs": {(i, j): paired_bootstrap_v1 dict}}``.
    """
    lab = np.asarray(labels, dtype=bool)
    grp = np.asarray(groups)

    def pooled(mat):
        k = mat.shape[0]
        return mat.reshape(-1), np.tile(lab, k), np.tile(grp, k)

    intervals = []
    for mat in mats:
        sc, lb, gr = pooled(mat)
        intervals.append(bootstrap_cis_v1(sc, lb, metrics, n_boot=n_boot, groups=gr, seed=seed, alpha=alpha))
    pairs = {}
    for i in range(len(mats)):
        for j in range(i + 1, len(mats)):
            k = min(mats[i].shape[0], mats[j].shape[0])
            sa, lb, gr = pooled(mats[i][:k])
            sb, _, _ = pooled(mats[j][:k])
            pairs[i, j] = paired_bootstrap_v1(sa, sb, lb, gr, metric=pair_metric, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"intervals": intervals, "pairs": pairs}
