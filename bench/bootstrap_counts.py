"""Counting engine of the group and seeds x groups bootstraps (:func:`bench.bootstrap.replicates`).

A resample weighs every cell (seed s, group g) by ``W[r, cell] = m_s w_g``; this module turns those
weights into each resample's EER and minDCF without touching the trials again.

A resample's false-alarm and miss counts at any threshold are ``W @ counts``, the cell counts
weighted.  The thresholds that matter are the corners of the DET staircase
of the pooled trials (every distinct target score, plus -inf and +inf; a corner whose target score
is absent from a resample is still an operating point of it, dominated by the next corner up).
Those are tens of thousands on a CN-Celeb trial list, so the counts are first taken at every
64th corner only (one matmul for all resamples); the corners of a gap between two counted ones are
bounded by the box the two span (P_fa and P_miss are monotone in the threshold), and only the gaps
whose box could hold a better point are counted, at every 8th corner, then inside the 8-corner gaps
that still could, at every corner (``_STEPS``):

* minDCF: a gap is counted when its lower bound (misses of its first corner, false alarms of its
  last) is below the smallest cost found; the minimum over the counted corners is then exact.
* EER (ROCCH): the convex-hull walk runs on the counted corners; a gap is counted when the
  lower-left corner of its box lies below the chord found, and the walk repeats until no box does.
  The chord then supports every corner, so its crossing is the EER of all of them.

All counts are integers, exact in float64, so the values equal the metrics of the resampled trial
lists computed from scratch (tests check this against a plain loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError
from bench.metrics import _check_p, _walk


def _parse_metric(metric: str) -> float | None:
    """None for ``"eer"``, the target prior p for ``"mindcf@<p>"`` (``"mindcf"`` = 0.01)."""
    if metric == "eer":
        return None
    if metric == "mindcf" or metric.startswith("mindcf@"):
        return _check_p(metric.partition("@")[2] or 0.01)
    raise ValueError(f"unknown bootstrap metric {metric!r}: use 'eer' or 'mindcf@<p_target>'")


# Corner steps of the refinement levels.  Every resample gets counts at every 64th corner (one
# matmul of [R, cells] by [cells, corners / 64]); inside a 64-corner block that could hold the
# optimum, at every 8th corner; inside an 8-corner block that still could, at every corner.  On a
# CN-Celeb-sized list (53k corners, 588 cells) a resample then needs a few hundred counted corners.
_STEPS = (64, 8, 1)
# A gap whose rows x (bin, cell) entries exceed this is counted in a shared BLAS product.
_SHARED_PRODUCT = 200_000
# Cells x coarse corners above this (2 GiB of float64 counts) is refused before any work.
_MAX_CELL_COUNTS = 1 << 27
# Coarse blocks on each side of a requested one whose trials are fetched with it.
_PREFETCH = 2


def _rank(thr: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.searchsorted(thr, x, "right")`` (how many of the sorted ``thr`` are <= x), for large ``x``.

    A binary search per value costs ~20 cache-unfriendly steps; a uniform grid over the finite
    thresholds gives a lower bound in one lookup, then each value steps up past the few thresholds
    left in its bucket.  Exact: the bound comes from the bucket below the computed one, so float
    rounding of the bucket index cannot overshoot.
    """
    x = np.asarray(x, dtype=np.float64)
    fin = thr[np.isfinite(thr)]
    n_low = int(np.count_nonzero(thr == -np.inf))
    n_high = int(np.count_nonzero(thr == np.inf))
    if fin.size < 2 or fin[0] == fin[-1] or x.size < 8 * thr.size:
        return np.searchsorted(thr, x, "right")
    lo, n_buckets = fin[0], max(4096, 8 * fin.size)
    scale = n_buckets / (fin[-1] - lo)
    # bucket b's bound counts the thresholds below the start of bucket b - 1 (bucket 0's is 0, and
    # values below lo never step up, since they are below fin[0])
    table = np.searchsorted(fin, lo + (np.arange(n_buckets) - 1) / scale, "left").astype(np.int32)
    t = np.subtract(x, lo)
    t *= scale
    np.minimum(t, n_buckets - 1, out=t)
    np.maximum(t, 0, out=t)
    out = table[t.astype(np.int32)]
    ext = np.append(fin, np.inf)
    idx = np.flatnonzero((out < fin.size) & (x >= ext[out]))
    while idx.size:
        out[idx] += 1
        idx = idx[(out[idx] < fin.size) & (x[idx] >= ext[out[idx]])]
    if n_low:
        out += n_low
    if n_high:
        out += n_high * (x == np.inf)
    return out


class _Cells:
    """One system's trials counted per cell (seed s, group g; cell = s * G + g).

    Corners are those of :func:`bench.metrics._corners` on the pooled trials of all seeds: index 0
    is -inf, index k in 1..K the k-th distinct target score ``tau[k-1]``, index K+1 is +inf.  A
    non-target with score x is a false alarm at corners 0..v, v = #(tau <= x); a target with score
    tau[j] is a miss at corners >= j + 2.  ``fa[c, j]``/``miss[c, j]`` are the counts of cell c at
    coarse corner ``coarse[j]`` (every ``steps[0]``-th corner and the last).  Counts inside a coarse
    block come from :meth:`inside`, which reads the block's trials (found once, then kept).
    """

    def __init__(self, mat: np.ndarray, lab: np.ndarray, gi: np.ndarray, n_groups: int, steps=None):
        self.steps = tuple(steps or _STEPS)
        step = self.steps[0]
        n_seeds = mat.shape[0]
        self.n_cells, self.n_groups = n_seeds * n_groups, n_groups
        self.tau = np.unique(mat[:, lab])
        m = self.tau.size + 2
        coarse = np.arange(0, m, step)
        if coarse[-1] != m - 1:
            coarse = np.append(coarse, m - 1)
        self.coarse = coarse
        kc = coarse.size
        if self.n_cells * kc > _MAX_CELL_COUNTS:
            raise BenchError(
                f"bootstrapping {n_seeds} seed(s) x {n_groups:,} resampling units at {kc:,} coarse thresholds "
                f"needs {self.n_cells * kc * 16 / 2**30:.0f} GiB of counts; resample coarser units "
                "(enrolment speakers: --unit speaker) or fewer trials"
            )
        # coarse thresholds: the target scores of coarse corners 1..kc-2 (not the -inf/+inf corners)
        cthr = self.tau[coarse[1:-1] - 1] if kc > 2 else np.empty(0)
        self.non_idx = np.flatnonzero(~lab)
        self.gn, gt = gi[~lab], gi[lab]
        # hb = coarse corners at which a non-target is a false alarm; its block is hb - 1
        self.hb = np.empty((n_seeds, self.non_idx.size), dtype=np.int16 if kc < 2**15 else np.int32)
        hist_n = np.zeros(self.n_cells * (kc + 1), dtype=np.int64)
        base = self.gn.astype(np.int64) * (kc + 1) + 1
        span = n_groups * (kc + 1)
        for s in range(n_seeds):
            hb = _rank(cthr, mat[s, self.non_idx])  # coarse thresholds <= x: a false alarm at hb + 1 corners
            self.hb[s] = hb
            self.hb[s] += 1
            hist_n[s * span : (s + 1) * span] += np.bincount(hb + base, minlength=span)
        hist_n = hist_n.reshape(self.n_cells, kc + 1)
        self.fa = np.cumsum(hist_n[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)  # #(hb > j)
        c = 2 + np.searchsorted(self.tau, mat[:, lab], "left")  # [S, T] corner of each target
        t_cell = np.arange(n_seeds)[:, None] * n_groups + gt[None, :]
        ht = np.minimum((c - 1) // step + 1, kc - 1)  # coarse corners before c
        hist_t = np.bincount((t_cell * kc + ht).ravel(), minlength=self.n_cells * kc).reshape(self.n_cells, kc)
        self.miss = np.cumsum(hist_t, axis=1).astype(np.float64)
        # targets by coarse block, sorted by corner: cell and corner
        order = np.argsort(c.ravel(), kind="stable")
        self.t_corner, self.t_cell = c.ravel()[order], t_cell.ravel()[order]
        self.mat = mat
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def load(self, blocks) -> None:
        """Find the non-targets of coarse ``blocks`` (one pass over all trials), sorted by corner."""
        want_now = set(int(j) for j in blocks) - self._blocks.keys()
        if not want_now:
            return
        # the neighbours too: later rounds mostly ask for blocks next to earlier ones, and each call
        # is a pass over every trial
        near = {j + d for j in want_now for d in range(-_PREFETCH, _PREFETCH + 1)}
        new = np.array(sorted(j for j in near if 0 <= j < self.coarse.size - 1 and j not in self._blocks))
        want = np.zeros(self.coarse.size + 1, dtype=bool)
        want[new + 1] = True
        sel = np.flatnonzero(want[self.hb.ravel()])
        seed_of, pos = np.divmod(sel, self.non_idx.size)
        v = np.searchsorted(self.tau, self.mat[seed_of, self.non_idx[pos]], "right")
        cell = seed_of * self.n_groups + self.gn[pos]
        order = np.lexsort((v, self.hb.ravel()[sel]))  # by block, then corner
        v, cell = v[order], cell[order]
        bounds = np.searchsorted(v, self.coarse[np.append(new, new[-1] + 1)])
        for i, j in enumerate(new.tolist()):
            self._blocks[j] = (v[bounds[i] : bounds[i + 1]], cell[bounds[i] : bounds[i + 1]])

    def _binned(self, bins: np.ndarray, cells: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Trials counted per (bin, cell), the nonzero entries in bin order: (bin, cell, count)."""
        h = np.bincount(bins * self.n_cells + cells, minlength=n_bins * self.n_cells)
        nz = np.flatnonzero(h)
        b, c = np.divmod(nz, self.n_cells)
        return b, c, h[nz].astype(np.float64)

    def inside(self, lo: int, hi: int, step: int):
        """Corners ``pts = lo + step, lo + 2 step, ... < hi`` (lo, hi in one coarse block, loaded) and
        the gap's trials binned by those points: non-targets in bin i = (corner - lo) // step (false
        alarms at points 1..i), targets in bin i = ceil((corner - lo) / step) (misses at points i..k),
        each as (bin, cell, count) entries."""
        pts = np.arange(lo + step, hi, step)
        k = pts.size
        v, cell = self._blocks[lo // self.steps[0]]
        a, b = np.searchsorted(v, [lo + 1, hi])
        hf = self._binned((v[a:b] - lo) // step, cell[a:b], k + 1)
        a, b = np.searchsorted(self.t_corner, [lo + 1, hi])
        hm = self._binned(-((lo - self.t_corner[a:b]) // step), self.t_cell[a:b], k + 2)
        return pts, hf, hm

    @staticmethod
    def _per_bin(entries, n_bins: int, wr: np.ndarray) -> np.ndarray:
        b, c, cnt = entries
        out = np.zeros((wr.shape[0], n_bins))
        if b.size:
            starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
            out[:, b[starts]] = np.add.reduceat(wr[:, c] * cnt, starts, axis=1)
        return out

    @staticmethod
    def relative(hf, hm, k: int, wr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resample counts ``[rows, k]`` at the points of :meth:`inside` for cell weights ``wr``
        [rows, cells]: false alarms above those at the gap's end, misses above those at its start.

        Weighted sums over the gap's nonzero (bin, cell) entries (cost: entries x rows) rather than
        BLAS: the gaps are many and small, where a threaded BLAS call costs more in overhead than in
        arithmetic.
        """
        return _Cells.cumulate(_Cells._per_bin(hf, k + 1, wr), _Cells._per_bin(hm, k + 2, wr))

    @staticmethod
    def cumulate(per_f: np.ndarray, per_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin weighted counts ``[rows, k + 1]``, ``[rows, k + 2]`` -> counts at the k points."""
        rel_f = np.cumsum(per_f[:, ::-1], axis=1)[:, ::-1][:, 1:]
        rel_m = np.cumsum(per_m, axis=1)[:, 1:-1]
        return rel_f, rel_m

    @staticmethod
    def dense(entries, n_bins: int, n_cells: int) -> np.ndarray:
        """(bin, cell, count) entries as a dense [cells, bins] matrix."""
        b, c, cnt = entries
        out = np.zeros((n_cells, n_bins))
        out[c, b] = cnt
        return out


@dataclass
class _Points:
    """Counted corners ``pts`` (both ends and the points between) for resample ``rows``.

    ``fa``/``miss`` [rows, pts]; ``level`` indexes the step the points are spaced by, so a gap between
    two of them is counted next with ``steps[level + 1]``; ``open`` [rows, gaps] marks the gaps not
    counted yet that still have corners inside.
    """

    pts: np.ndarray
    rows: np.ndarray
    fa: np.ndarray
    miss: np.ndarray
    level: int
    open: np.ndarray


def _open_gaps(pts: np.ndarray, n_rows: int, level: int, n_levels: int) -> np.ndarray:
    gaps = (np.diff(pts) > 1) & (level + 1 < n_levels)
    return np.repeat(gaps[None, :], n_rows, axis=0)


def _expand(cells: _Cells, w: np.ndarray, requests: list[tuple[_Points, np.ndarray]]) -> list[_Points]:
    """Count the requested gaps (``need`` [rows, gaps] per :class:`_Points`) at the next step."""
    parts = []
    for rec, need in requests:
        need = need & rec.open
        rec.open &= ~need
        r, g = np.nonzero(need)
        if r.size:
            lo, hi = rec.pts[g], rec.pts[g + 1]
            parts.append((np.full(r.size, rec.level + 1), lo, hi, rec.rows[r], rec.fa[r, g], rec.fa[r, g + 1],
                          rec.miss[r, g], rec.miss[r, g + 1]))  # fmt: skip
    if not parts:
        return []
    level, lo, hi, rows, fa_lo, fa_hi, miss_lo, miss_hi = (np.concatenate(x) for x in zip(*parts))
    cells.load(np.unique(lo // cells.steps[0]))
    order = np.lexsort((rows, lo, level))
    key = np.stack((level, lo))[:, order]
    starts = np.flatnonzero(np.concatenate(([True], (np.diff(key, axis=1) != 0).any(axis=0))))
    groups = []
    for a, b in zip(starts, np.append(starts[1:], order.size)):
        sel = order[a:b]
        lv, l0, h0 = int(level[sel[0]]), int(lo[sel[0]]), int(hi[sel[0]])
        groups.append((sel, lv, l0, h0, *cells.inside(l0, h0, cells.steps[lv])))
    # Large gaps (many rows x entries) share one BLAS product over their rows: there, arithmetic
    # dominates; the many small ones use the entry sums of _Cells.relative (no call overhead).
    big = [i for i, g in enumerate(groups) if g[0].size * (g[5][0].size + g[6][0].size) > _SHARED_PRODUCT]
    shared: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if big:
        urows, pos = np.unique(np.concatenate([rows[groups[i][0]] for i in big]), return_inverse=True)
        dense = [
            _Cells.dense(h, n, cells.n_cells)
            for i in big
            for h, n in zip(groups[i][5:], (groups[i][4].size + 1, groups[i][4].size + 2))
        ]
        prod = w[urows] @ np.concatenate(dense, axis=1)
        col, start = 0, 0
        for i in big:
            sel, k = groups[i][0], groups[i][4].size
            r = pos[start : start + sel.size]
            start += sel.size
            shared[i] = _Cells.cumulate(prod[r, col : col + k + 1], prod[r, col + k + 1 : col + 2 * k + 3])
            col += 2 * k + 3
    out = []
    for i, (sel, lv, l0, h0, pts, hf, hm) in enumerate(groups):
        rel_f, rel_m = shared[i] if i in shared else _Cells.relative(hf, hm, pts.size, w[rows[sel]])
        f = np.column_stack((fa_lo[sel], fa_hi[sel][:, None] + rel_f, fa_hi[sel]))
        m = np.column_stack((miss_lo[sel], miss_lo[sel][:, None] + rel_m, miss_hi[sel]))
        allp = np.concatenate(([l0], pts, [h0]))
        out.append(_Points(allp, rows[sel], f, m, lv, _open_gaps(allp, sel.size, lv, len(cells.steps))))
    return out


def _dcf(fa, miss, nn, nt, p: float) -> np.ndarray:
    # the expression of bench.metrics._min_dcf_counts, so equal counts give equal costs
    return (p * miss / nt[..., None] + (1 - p) * fa / nn[..., None]) / min(p, 1 - p)


def _min_dcf_refined(cells, w, coarse: _Points, nn, nt, ps: dict[str, float], found: list[_Points]):
    """minDCF of every resample for each prior: counted level by level where a gap's bound (misses at
    its start, false alarms at its end) is below the best cost found."""
    best = {m: _dcf(coarse.fa, coarse.miss, nn, nt, p).min(axis=1) for m, p in ps.items()}
    frontier = [coarse]
    while frontier:
        requests = []
        for rec in frontier:
            need = np.zeros(rec.open.shape, dtype=bool)
            for m, p in ps.items():
                need |= _dcf(rec.fa[:, 1:], rec.miss[:, :-1], nn[rec.rows], nt[rec.rows], p) < best[m][rec.rows, None]
            requests.append((rec, need))
        frontier = _expand(cells, w, requests)
        found += frontier
        for rec in frontier:
            if rec.pts.size > 2:
                for m, p in ps.items():
                    vals = _dcf(rec.fa[:, 1:-1], rec.miss[:, 1:-1], nn[rec.rows], nt[rec.rows], p).min(axis=1)
                    best[m][rec.rows] = np.minimum(best[m][rec.rows], vals)
    return best


class _PointSet:
    """Every counted corner of each resample, as rows of [R, L] arrays that only grow (indices stay
    valid); unused slots repeat corner 0 (accept all), a point of every set."""

    def __init__(self, coarse: _Points, nn: np.ndarray, nt: np.ndarray):
        self.nn, self.nt = nn, nt
        self.fa, self.miss = coarse.fa.copy(), coarse.miss.copy()
        self.side = self.miss * nn[:, None] - self.fa * nt[:, None]
        self.at = np.full(nn.size, coarse.pts.size)

    def add(self, recs: list[_Points]) -> np.ndarray:
        """Append the points between the ends of ``recs``; returns a mask of the rows that grew."""
        n = self.nn.size
        extra = np.zeros(n, dtype=np.int64)
        for rec in recs:
            extra[rec.rows] += rec.pts.size - 2
        need = int((self.at + extra).max(initial=0))
        if need > self.fa.shape[1]:
            grow = need - self.fa.shape[1]
            self.fa = np.concatenate((self.fa, np.repeat(self.fa[:, :1], grow, axis=1)), axis=1)
            self.miss = np.concatenate((self.miss, np.zeros((n, grow))), axis=1)
            self.side = np.concatenate((self.side, np.repeat(self.side[:, :1], grow, axis=1)), axis=1)
        for rec in recs:
            k = rec.pts.size - 2
            if k:
                r = rec.rows
                cols = self.at[r][:, None] + np.arange(k)
                self.fa[r[:, None], cols], self.miss[r[:, None], cols] = rec.fa[:, 1:-1], rec.miss[:, 1:-1]
                self.side[r[:, None], cols] = rec.miss[:, 1:-1] * self.nn[r, None] - rec.fa[:, 1:-1] * self.nt[r, None]
                self.at[r] += k
        return extra > 0


def _eer_refined(cells, w, coarse: _Points, nn, nt, found: list[_Points]) -> np.ndarray:
    """ROCCH EER of every resample: the hull walk on the counted corners, counting the gaps whose
    box (lowest false alarms and misses of the gap) is below the chord found, until none is.

    Points only accumulate, so each round's walk starts from the previous chord, on the rows that
    gained points; the other rows' chords and gap checks stand.
    """
    n = coarse.rows.size
    pts = _PointSet(coarse, nn, nt)
    pts.add(found)
    side = pts.side
    p = np.argmax(np.where(side < 0, side, -np.inf), axis=1)
    q = np.argmin(np.where(side > 0, side, np.inf), axis=1)
    todo = np.ones(n, dtype=bool)
    while True:
        r = np.flatnonzero(todo)
        pr, qr = p[r], q[r]
        _walk(pts.fa[r], pts.miss[r], pts.side[r], pr, qr)
        p[r], q[r] = pr, qr
        rows = np.arange(n)
        pf, pm, qf, qm = pts.fa[rows, p], pts.miss[rows, p], pts.fa[rows, q], pts.miss[rows, q]
        requests = []
        for rec in [coarse, *found]:
            sub = np.flatnonzero(todo[rec.rows] & rec.open.any(axis=1))
            if sub.size == 0:
                continue
            g = rec.rows[sub]
            cross = (qf - pf)[g, None] * (rec.miss[sub, :-1] - pm[g, None]) - (qm - pm)[g, None] * (
                rec.fa[sub, 1:] - pf[g, None]
            )
            need = np.zeros(rec.open.shape, dtype=bool)
            need[sub] = cross > 0
            if need.any():
                requests.append((rec, need))
        new = _expand(cells, w, requests)
        if not new:
            break
        found += new
        todo = pts.add(new)
    sp, sq = pts.side[rows, p], pts.side[rows, q]
    denom = sq - sp
    alpha = np.where(denom > 0, -sp / np.where(denom > 0, denom, 1.0), 0.0)
    up, uq = pts.fa[rows, p] / nn, pts.fa[rows, q] / nn
    return 100.0 * (up + alpha * (uq - up))


def _cell_replicates(cells: _Cells, w: np.ndarray, metrics: list[str]) -> dict[str, np.ndarray]:
    """Replicates ``{metric: [R]}`` for resample cell weights ``w`` [R, cells]; NaN without a class."""
    r_all = w.shape[0]
    fa_c, miss_c = w @ cells.fa, w @ cells.miss  # [R, coarse corners]
    nn_all, nt_all = fa_c[:, 0], miss_c[:, -1]
    ok = np.flatnonzero((nn_all > 0) & (nt_all > 0))
    out = {m: np.full(r_all, np.nan) for m in metrics}
    if ok.size == 0:
        return out
    w, nn, nt = w[ok], nn_all[ok], nt_all[ok]
    coarse = _Points(cells.coarse, np.arange(ok.size), fa_c[ok], miss_c[ok], 0,
                     _open_gaps(cells.coarse, ok.size, 0, len(cells.steps)))  # fmt: skip
    found: list[_Points] = []
    ps = {m: p for m in metrics if (p := _parse_metric(m)) is not None}
    if ps:
        for m, v in _min_dcf_refined(cells, w, coarse, nn, nt, ps, found).items():
            out[m][ok] = v
    if "eer" in metrics:
        out["eer"][ok] = _eer_refined(cells, w, coarse, nn, nt, found)
    return out
