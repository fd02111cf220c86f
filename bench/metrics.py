"""Speaker-verification metrics: EER, minDCF, actDCF, Cllr, minCllr, DET points.

This is the one place metrics are computed; training, ``bench score``, reports and tuning call it.
:data:`METRIC_TABLE` (near the end; the row type is :class:`bench.metric_table.Metric`) lists every
metric with its ``metrics.json`` key, label, digits, direction, bootstrap support and the function
defining it: a new metric is that function plus one row, and ``compute_metrics``, the reports and
``bench score`` pick it up.
Bootstrap intervals and paired tests live in :mod:`bench.bootstrap`, which builds on this module.

Conventions (they hold for every function here):

* ``scores`` are real numbers, larger = more likely the same speaker; ``labels`` are booleans
  (``True`` = target trial).  ``NaN`` scores are rejected; ``+-inf`` are allowed.
* A threshold ``t`` accepts a trial when ``score >= t``.  Equal scores are never split: every
  operating point accepts or rejects all trials of a tied score value together, so the results
  do not depend on the order of the input.  The operating points are the thresholds at every
  distinct score value plus ``+inf`` (reject all).
* ``P_miss(t)`` = fraction of target trials rejected, ``P_fa(t)`` = fraction of non-target trials
  accepted.  EER values are in **percent**; DCF values are normalised (divided by the cost of the
  best trivial system, ``min(p, 1 - p)``) with ``C_miss = C_fa = 1``; Cllr in bits.
* LLR inputs (``act_dcf``, ``cllr``) are natural-log likelihood ratios.

Algorithm: target and non-target scores are each sorted once (together the work of one sort of N,
and far cheaper than an argsort of N).  All operating points that can matter are the thresholds at
the distinct target scores ("corners" of the DET staircase: no other threshold has a lower P_miss
for its P_fa); P_fa at those thresholds comes from binary search in the sorted non-targets. So
everything is O(N log N) time, O(N) memory, with exact integer counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from bench.errors import BenchError
from bench.metric_table import Metric, MetricTable

EER_METHODS = ("rocch", "interp")


# --------------------------------------------------------------------------------------------
# Input handling and the shared ROC representation
# --------------------------------------------------------------------------------------------


def _as_arrays(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels)
    if lab.dtype != bool:
        if lab.size and not np.isin(lab, (0, 1)).all():
            raise ValueError("labels must be booleans or 0/1")
        lab = lab.astype(bool)
    lab = lab.reshape(-1)
    if s.shape != lab.shape:
        raise ValueError(f"scores ({s.size}) and labels ({lab.size}) differ in length")
    if np.isnan(s).any():
        raise BenchError(f"{int(np.isnan(s).sum())} score(s) are NaN")
    n_tar = int(lab.sum())
    if n_tar == 0 or n_tar == lab.size:
        kind = "no target" if n_tar == 0 else "no non-target"
        raise BenchError(f"the trials have {kind} trials; EER/DCF need both classes")
    return s, lab


@dataclass
class _Bins:
    """Trials counted per score interval, relative to the distinct target scores ``tau``.

    ``tcount[k]`` = targets with score == tau[k].  Non-target bins: ``nbins[2k]`` = non-targets
    strictly between tau[k-1] and tau[k] (tau[-1] = -inf, tau[K] = +inf) and ``nbins[2k+1]`` =
    non-targets equal to tau[k].  Every operating point's counts are sums of these bins.
    """

    tau: np.ndarray
    tcount: np.ndarray
    nbins: np.ndarray


def _bins(scores: np.ndarray, labels: np.ndarray) -> _Bins:
    tar = np.sort(scores[labels])
    non = np.sort(scores[~labels])
    first = np.empty(tar.size, dtype=bool)
    first[0] = True
    np.not_equal(tar[1:], tar[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    tau = tar[starts]
    tcount = np.diff(np.append(starts, tar.size))
    left = np.searchsorted(non, tau, "left")
    right = np.searchsorted(non, tau, "right")
    nbins = np.empty(2 * tau.size + 1, dtype=np.int64)
    nbins[0 : 2 * tau.size : 2] = left - np.concatenate(([0], right[:-1]))
    nbins[1::2] = right - left
    nbins[-1] = non.size - right[-1]
    return _Bins(tau, tcount, nbins)


def _corners(tcount: np.ndarray, nbins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fa, miss) counts at thresholds [-inf, tau_0, ..., tau_{K-1}, +inf]; last axis = point.

    Works on a leading batch axis (bootstrap replicates); counts may be float (still integral).
    """
    shape = tcount.shape[:-1]
    k = tcount.shape[-1]
    zero = np.zeros((*shape, 1), dtype=tcount.dtype)
    miss = np.concatenate((zero, np.cumsum(tcount, axis=-1)), axis=-1)  # at tau_k: targets < tau_k
    miss = np.concatenate((miss[..., :1], miss), axis=-1)  # -inf point also misses nothing
    suffix = np.cumsum(nbins[..., ::-1], axis=-1)[..., ::-1]  # suffix[b] = sum of bins >= b
    fa = np.concatenate((suffix[..., :1], suffix[..., 1 : 2 * k : 2], np.zeros((*shape, 1), suffix.dtype)), axis=-1)
    return fa, miss


def _polyline(tcount: np.ndarray, nbins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fa, miss) counts of every distinct operating point, in threshold order, 1-D.

    Between corner k and corner k+1 the DET staircase goes to the point just above tau_k (its
    tied non-targets leave together with its targets: a diagonal step when both exist) and then
    only P_fa falls; those intermediate points are collinear, so corners plus the "just above"
    points describe the whole piecewise-linear ROC.
    """
    fa_c, miss_c = _corners(tcount, nbins)
    k = tcount.size
    suffix = np.cumsum(nbins[::-1])[::-1]
    fa_a = suffix[2::2]  # just above tau_k: non-targets in bins >= 2k+2
    miss_a = miss_c[2 : k + 2]
    fa = np.empty(2 * k + 2, dtype=fa_c.dtype)
    miss = np.empty(2 * k + 2, dtype=miss_c.dtype)
    fa[0], miss[0] = fa_c[0], miss_c[0]
    fa[1 : 2 * k : 2], miss[1 : 2 * k : 2] = fa_c[1 : k + 1], miss_c[1 : k + 1]
    fa[2 : 2 * k + 1 : 2], miss[2 : 2 * k + 1 : 2] = fa_a, miss_a
    fa[-1], miss[-1] = 0, miss_c[-1]
    return fa, miss


def _corner_thresholds(tau: np.ndarray) -> np.ndarray:
    return np.concatenate(([-np.inf], tau, [np.inf]))


# --------------------------------------------------------------------------------------------
# EER
# --------------------------------------------------------------------------------------------


def _walk(fa: np.ndarray, miss: np.ndarray, side: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
    """Quickhull walk of :func:`_rocch_crossing` on rows [B, M], updating ``p``/``q`` in place."""
    b = fa.shape[0]
    active = np.ones(b, dtype=bool)
    for _ in range(fa.shape[1] + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        pf, pm = fa[idx, p[idx]], miss[idx, p[idx]]
        qf, qm = fa[idx, q[idx]], miss[idx, q[idx]]
        cross = (qf - pf)[:, None] * (miss[idx] - pm[:, None]) - (qm - pm)[:, None] * (fa[idx] - pf[:, None])
        r = np.argmax(cross, axis=1)
        below = cross[np.arange(idx.size), r] > 0
        active[idx[~below]] = False
        idx, r = idx[below], r[below]
        s = side[idx, r]
        p[idx[s <= 0]] = r[s <= 0]
        q[idx[s >= 0]] = r[s >= 0]
        active[idx[s == 0]] = False


def _rocch_crossing(
    fa: np.ndarray, miss: np.ndarray, n_non: npt.ArrayLike, n_tar: npt.ArrayLike, window: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the ROC convex hull crosses P_miss == P_fa, for a batch of point sets [B, M].

    A quickhull walk restricted to the crossing: P (P_miss <= P_fa) and Q (P_miss >= P_fa) are
    points of the set; the point farthest below chord PQ (a hull vertex) replaces P or Q by its
    side of the diagonal, until no point is below PQ.  Then the line PQ supports the set, so the
    chord lies on the hull and its crossing with the diagonal is the ROCCH EER.  Any P, Q on their
    sides are valid starts, so the walk starts at the points nearest the diagonal and runs on a
    window of points around P..Q; one pass over all points checks that PQ supports the whole
    set, and rows where it does not go on from their P, Q with a window four times wider.
    Cross products use raw counts: scaling the axes by 1/N and 1/T keeps their signs, and
    integer counts keep them exact (products < 2**53).

    Returns (eer fraction [B], index of P [B], index of Q [B], alpha [B]) with the crossing at
    P + alpha (Q - P).
    """
    fa = np.asarray(fa, dtype=np.float64)
    miss = np.asarray(miss, dtype=np.float64)
    b, m = fa.shape
    rows = np.arange(b)
    n_non = np.broadcast_to(np.asarray(n_non, dtype=np.float64), (b,))
    n_tar = np.broadcast_to(np.asarray(n_tar, dtype=np.float64), (b,))
    # signed distance from the diagonal, times N*T: > 0 means P_miss > P_fa; points run in
    # threshold order, so it is non-decreasing along a row
    side = miss * n_non[:, None] - fa * n_tar[:, None]
    # P strictly below and Q strictly above the diagonal (the trivial systems at both ends
    # always are): a point on the diagonal need not be on the hull, only a farthest one is
    q = (side <= 0).sum(axis=1)
    p = (side < 0).sum(axis=1) - 1
    todo = rows
    width = window
    while todo.size:
        width = max(width, int((q[todo] - p[todo]).max()) + 2 * window)
        if width >= m:
            pt, qt = p[todo], q[todo]
            _walk(fa[todo], miss[todo], side[todo], pt, qt)
            p[todo], q[todo] = pt, qt
            break
        lo = np.clip((p[todo] + q[todo] - width) // 2, 0, m - width)
        cols = lo[:, None] + np.arange(width)
        pt, qt = p[todo] - lo, q[todo] - lo
        fw, mw, sw = (np.take_along_axis(a[todo], cols, 1) for a in (fa, miss, side))
        _walk(fw, mw, sw, pt, qt)
        p[todo], q[todo] = pt + lo, qt + lo
        pf, pm, qf, qm = fa[todo, p[todo]], miss[todo, p[todo]], fa[todo, q[todo]], miss[todo, q[todo]]
        cross = (qf - pf)[:, None] * (miss[todo] - pm[:, None]) - (qm - pm)[:, None] * (fa[todo] - pf[:, None])
        todo = todo[(cross > 0).any(axis=1)]
        width *= 4
    sp, sq = side[rows, p], side[rows, q]
    denom = sq - sp
    alpha = np.where(denom > 0, -sp / np.where(denom > 0, denom, 1.0), 0.0)
    up = fa[rows, p] / n_non
    uq = fa[rows, q] / n_non
    return up + alpha * (uq - up), p, q, alpha


def _interp_crossing(fa: np.ndarray, miss: np.ndarray, n_non: float, n_tar: float) -> tuple[float, int, float]:
    side = miss * float(n_non) - fa * float(n_tar)  # non-decreasing along the polyline
    j = int(np.searchsorted(side, 0.0, "left"))
    u = fa / n_non
    if side[j] == 0:
        return float(u[j]), j, 0.0
    alpha = -side[j - 1] / (side[j] - side[j - 1])
    return float(u[j - 1] + alpha * (u[j] - u[j - 1])), j - 1, float(alpha)


def _eer_with_threshold(s: np.ndarray, lab: np.ndarray, method: str) -> tuple[float, float]:
    if method not in EER_METHODS:
        raise ValueError(f"unknown EER method {method!r}; choose from {EER_METHODS}")
    bins = _bins(s, lab)
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    if method == "rocch":
        fa, miss = _corners(bins.tcount, bins.nbins)
        e, p, q, alpha = _rocch_crossing(fa[None], miss[None], n_non, n_tar)
        thr = _corner_thresholds(bins.tau)
        lo, hi, a = thr[p[0]], thr[q[0]], alpha[0]
    else:
        fa, miss = _polyline(bins.tcount, bins.nbins)
        e0, j, a = _interp_crossing(fa, miss, n_non, n_tar)
        e = np.array([e0])
        # polyline point 2k+1 is corner tau_k, point 2k+2 is "just above tau_k"
        thr = np.full(fa.size, np.nan)
        thr[0] = -np.inf
        thr[1:-1:2] = bins.tau
        thr[2:-1:2] = np.nextafter(bins.tau, np.inf)
        thr[-1] = np.inf
        lo, hi = thr[j], thr[min(j + 1, thr.size - 1)]
    # threshold of the end of the crossing segment nearest the crossing, preferring a finite one
    t = lo if (a <= 0.5 and np.isfinite(lo)) or not np.isfinite(hi) else hi
    return 100.0 * float(e[0]), float(t)


def eer(scores: npt.ArrayLike, labels: npt.ArrayLike, method: str = "rocch") -> float:
    """Equal error rate in percent.

    ``method="rocch"`` (default): the point where the ROC convex hull crosses P_miss == P_fa
    (as in BOSARIS / NIST tools).  It equals the largest minimum Bayes error over all priors,
    is uniquely defined whatever the ties, and treats a score set and its monotone transforms
    identically; it is never above the interpolated value and at most 50 %.
    ``method="interp"``: linear interpolation between the two neighbouring operating points of
    the (non-convex) ROC at the crossing, what ``scipy.optimize.brentq`` on scikit-learn's
    ``roc_curve`` computes.  For thousands of trials the two differ in the second decimal.
    """
    s, lab = _as_arrays(scores, labels)
    return _eer_with_threshold(s, lab, method)[0]


# --------------------------------------------------------------------------------------------
# DCF and Cllr
# --------------------------------------------------------------------------------------------


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p}")
    return p


def _min_dcf_counts(
    fa: np.ndarray, miss: np.ndarray, n_non: npt.ArrayLike, n_tar: npt.ArrayLike, p: float
) -> tuple[Any, Any]:
    # (min cost, argmin): arrays [B] for batched counts, numpy scalars for 1-D counts
    dcf = (p * miss / np.asarray(n_tar, float)[..., None] + (1 - p) * fa / np.asarray(n_non, float)[..., None]) / min(
        p, 1 - p
    )
    return dcf.min(axis=-1), dcf.argmin(axis=-1)


@overload
def min_dcf(
    scores: npt.ArrayLike, labels: npt.ArrayLike, p_target: float = ..., return_threshold: Literal[False] = ...
) -> float: ...


@overload
def min_dcf(
    scores: npt.ArrayLike, labels: npt.ArrayLike, p_target: float = ..., *, return_threshold: Literal[True]
) -> tuple[float, float]: ...


@overload
def min_dcf(
    scores: npt.ArrayLike, labels: npt.ArrayLike, p_target: float = ..., return_threshold: bool = ...
) -> float | tuple[float, float]: ...


def min_dcf(
    scores: npt.ArrayLike, labels: npt.ArrayLike, p_target: float = 0.01, return_threshold: bool = False
) -> float | tuple[float, float]:
    """Minimum normalised detection cost over all thresholds, C_miss = C_fa = 1.

    ``min_t (p P_miss(t) + (1 - p) P_fa(t)) / min(p, 1 - p)``; 1.0 is the best trivial system.
    With ``return_threshold`` also returns the minimising threshold (accept ``score >= t``).
    """
    p = _check_p(p_target)
    s, lab = _as_arrays(scores, labels)
    bins = _bins(s, lab)
    fa, miss = _corners(bins.tcount, bins.nbins)
    val, k = _min_dcf_counts(fa, miss, int((~lab).sum()), int(lab.sum()), p)
    if return_threshold:
        return float(val), float(_corner_thresholds(bins.tau)[k])
    return float(val)


def act_dcf(llr: npt.ArrayLike, labels: npt.ArrayLike, p_target: float = 0.01) -> float:
    """Actual normalised DCF of calibrated LLR scores at the Bayes threshold.

    Accepts when ``llr >= log((1 - p) / p)`` (C_miss = C_fa = 1), normalised by ``min(p, 1 - p)``.
    """
    p = _check_p(p_target)
    s, lab = _as_arrays(llr, labels)
    acc = s >= math.log((1 - p) / p)
    p_miss = np.count_nonzero(~acc & lab) / np.count_nonzero(lab)
    p_fa = np.count_nonzero(acc & ~lab) / np.count_nonzero(~lab)
    return float((p * p_miss + (1 - p) * p_fa) / min(p, 1 - p))


def cllr(llr: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits, equal class weights:
    ``0.5 (mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr))``.  1.0 = uninformative."""
    s, lab = _as_arrays(llr, labels)
    c_tar = np.logaddexp(0.0, -s[lab]).mean()
    c_non = np.logaddexp(0.0, s[~lab]).mean()
    return float(0.5 * (c_tar + c_non) / math.log(2))


def _lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the lower-left convex hull of points ordered by decreasing x, increasing y.

    Exact for integral counts whose products stay below 2**53.  Vectorised passes drop every
    point that is not a strict convex turn between its neighbours (it lies on or above a chord of
    the set, so it is never a hull vertex); a final monotone chain handles what is left.
    A vertex B between A and C is convex when (B - A) x (C - A) < 0 in this orientation.
    """
    idx = np.arange(x.size)
    for _ in range(8):
        if idx.size < 3:
            break
        xa, ya = x[idx[:-2]], y[idx[:-2]]
        xb, yb = x[idx[1:-1]], y[idx[1:-1]]
        xc, yc = x[idx[2:]], y[idx[2:]]
        cross = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa)
        keep = np.concatenate(([True], cross < 0, [True]))
        if keep.all():
            return idx
        idx = idx[keep]
    xs, ys = x[idx].tolist(), y[idx].tolist()
    hull: list[int] = []
    for i in range(len(xs)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]) < 0:
                break
            hull.pop()
        hull.append(i)
    out: np.ndarray = idx[np.array(hull)]
    return out


def _min_cllr_bins(bins: _Bins, n_non: int, n_tar: int) -> float:
    fa, miss = _corners(bins.tcount, bins.nbins)
    h = _lower_hull(fa.astype(np.float64), miss.astype(np.float64))
    # each hull edge is one PAV block: its trials get LLR log(dT/T) - log(dN/N)
    d_tar = np.diff(miss[h]).astype(np.float64)
    d_non = -np.diff(fa[h]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.log(d_tar / n_tar) - np.log(d_non / n_non)
        c_tar = np.where(d_tar > 0, d_tar * np.logaddexp(0.0, -llr), 0.0).sum() / n_tar
        c_non = np.where(d_non > 0, d_non * np.logaddexp(0.0, llr), 0.0).sum() / n_non
    return float(0.5 * (c_tar + c_non) / math.log(2))


def min_cllr(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Cllr after the optimal monotone calibration (pool-adjacent-violators), in bits.

    PAV blocks are the edges of the ROC convex hull, so they come from the same sorted counts;
    tied scores always share one block.  Invariant under strictly increasing transforms.
    """
    s, lab = _as_arrays(scores, labels)
    return _min_cllr_bins(_bins(s, lab), int((~lab).sum()), int(lab.sum()))


# --------------------------------------------------------------------------------------------
# All metrics at once, and the DET curve
# --------------------------------------------------------------------------------------------


class Curve:
    """The sorted counts of one score list, shared by every metric of :func:`compute_metrics`.

    ``scores``/``labels`` are the checked arrays, ``bins`` their :class:`_Bins`, ``fa``/``miss``
    the corner counts (:func:`_corners`); ``rocch`` = (EER percent, threshold), computed once.
    """

    def __init__(self, scores: npt.ArrayLike, labels: npt.ArrayLike):
        self.scores, self.labels = _as_arrays(scores, labels)
        self.n_tar, self.n_non = int(self.labels.sum()), int((~self.labels).sum())
        self.bins = _bins(self.scores, self.labels)
        self.fa, self.miss = _corners(self.bins.tcount, self.bins.nbins)
        self._rocch: tuple[float, float] | None = None

    @property
    def rocch(self) -> tuple[float, float]:
        if self._rocch is None:
            e, p_i, q_i, alpha = _rocch_crossing(self.fa[None], self.miss[None], self.n_non, self.n_tar)
            thr = _corner_thresholds(self.bins.tau)
            lo, hi = thr[p_i[0]], thr[q_i[0]]
            t = lo if (alpha[0] <= 0.5 and np.isfinite(lo)) or not np.isfinite(hi) else hi
            self._rocch = (100.0 * float(e[0]), float(t))
        return self._rocch


def _eer_interp(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    return eer(scores, labels, method="interp")


def _min_dcf_point(scores: npt.ArrayLike, labels: npt.ArrayLike, p_target: float) -> float:
    return min_dcf(scores, labels, p_target)


def _min_dcf_on_curve(c: Curve, p: float) -> float:
    return float(_min_dcf_counts(c.fa, c.miss, c.n_non, c.n_tar, _check_p(p))[0])


# The metric table: one row per metric (bench/metric_table.py explains the fields).  compute_metrics,
# reports (columns, labels, digits, best = lower or higher, intervals) and `bench score` read it;
# a new metric is its function above plus one row here.  Row order is the order of metrics.json
# keys and of the `bench score` table; the per-prior rows are written together, prior by prior.
METRIC_TABLE = MetricTable(
    [
        Metric(
            "eer", "EER (%)", 2, eer, bootstrap=True, on_curve=lambda c: c.rocch[0],
            companions=lambda c: {"eer_threshold": c.rocch[1]}, report=("eer",),
            cli_label="EER % (ROCCH)", cli_digits=3,
        ),
        Metric(
            "eer_interp", "EER (%, interpolated)", 2, _eer_interp, when="on_request",
            cli_label="EER % (interpolated)", cli_digits=3,
        ),
        Metric(
            "mindcf", "minDCF@{p}", 3, _min_dcf_point, per_prior=True, bootstrap=True,
            on_curve=_min_dcf_on_curve, report=("mindcf@0.01", "mindcf@0.05"), cli_label="minDCF (p={p})",
        ),
        Metric(
            "actdcf", "actDCF@{p}", 3, act_dcf, per_prior=True, when="llr", llr_only=True,
            on_curve=lambda c, p: act_dcf(c.scores, c.labels, p), report=("cal_actdcf@0.01",),
        ),
        Metric(
            "cllr", "Cllr", 3, cllr, llr_only=True, on_curve=lambda c: cllr(c.scores, c.labels),
            report=("cal_cllr",), cli_label="Cllr (scores as LLR)",
        ),
        Metric(
            "min_cllr", "minCllr", 3, min_cllr, on_curve=lambda c: _min_cllr_bins(c.bins, c.n_non, c.n_tar),
            report=("min_cllr",), cli_label="minCllr",
        ),
    ]
)  # fmt: skip


def _value(row: Metric, c: Curve, p: float | None) -> float:
    args = () if p is None else (p,)
    if row.on_curve is not None:
        return row.on_curve(c, *args)
    return row.point(c.scores, c.labels, *args)


def compute_metrics(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    p_targets: Iterable[float] = (0.01, 0.05),
    llr: bool = False,
    on_request: bool = False,
) -> dict[str, float]:
    """Every metric of :data:`METRIC_TABLE` from one pass over the sorted scores.

    Keys: ``eer`` (percent, ROCCH, see :func:`eer`), ``eer_threshold`` (score threshold of the
    hull vertex nearest the EER point), ``mindcf@<p>`` for each p (``f"mindcf@{p:g}"``),
    ``cllr`` (Cllr of the scores read as natural-log LLRs; only meaningful for calibrated
    scores, e.g. not raw cosines), ``min_cllr``, ``n_target``, ``n_nontarget``; with
    ``llr=True`` also ``actdcf@<p>``; with ``on_request=True`` then the rows computed only when
    asked (``eer_interp``: the interpolated EER), after the counts.
    """
    c = Curve(scores, labels)
    p_targets = tuple(p_targets)
    active = [r for r in METRIC_TABLE if r.when == "always" or (llr and r.when == "llr")]
    out: dict[str, float] = {}
    per_prior_done = False
    for row in active:
        if not row.per_prior:
            out[row.name] = _value(row, c, None)
            if row.companions is not None:
                out.update(row.companions(c))
        elif not per_prior_done:
            per_prior_done = True
            for p in p_targets:
                for r in active:
                    if r.per_prior:
                        out[r.key(p)] = _value(r, c, p)
    out["n_target"] = c.n_tar
    out["n_nontarget"] = c.n_non
    if on_request:
        for row in METRIC_TABLE:
            if row.when == "on_request":
                priors: tuple[float | None, ...] = p_targets if row.per_prior else (None,)
                for prior in priors:
                    out[row.key(prior)] = _value(row, c, prior)
    return out


def det_curve(scores: npt.ArrayLike, labels: npt.ArrayLike, max_points: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """DET operating points ``(p_fa, p_miss)`` (fractions), thinned for plotting.

    Points run from the accept-all end (p_fa = 1) to reject-all (p_miss = 1) and include every
    vertex of the piecewise-linear ROC before thinning.  Thinning keeps both ends and at most
    ``max_points`` points spread evenly along the curve's length on probit (normal deviate) axes,
    probabilities clipped to [1e-6, 1 - 1e-6] for that measure only.
    """
    from scipy.special import ndtri

    if max_points < 2:
        raise ValueError("max_points must be >= 2")
    s, lab = _as_arrays(scores, labels)
    bins = _bins(s, lab)
    fa, miss = _polyline(bins.tcount, bins.nbins)
    p_fa = fa / float((~lab).sum())
    p_miss = miss / float(lab.sum())
    keep = np.concatenate(([True], (np.diff(p_fa) != 0) | (np.diff(p_miss) != 0)))
    p_fa, p_miss = p_fa[keep], p_miss[keep]
    if p_fa.size <= max_points:
        return p_fa, p_miss
    x = ndtri(np.clip(p_fa, 1e-6, 1 - 1e-6))
    y = ndtri(np.clip(p_miss, 1e-6, 1 - 1e-6))
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    want = np.linspace(0.0, arc[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(arc, want), 0, arc.size - 1))
    idx = np.union1d(idx, [0, arc.size - 1])
    return p_fa[idx], p_miss[idx]
