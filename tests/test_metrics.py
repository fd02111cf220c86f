"""bench.metrics against brute force (every threshold tried), scikit-learn, hand cases, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import bootstrap as B
from bench import bootstrap_reference as R
from bench import metrics as M
from bench.errors import BenchError

# --------------------------------------------------------------------------------------------
# Brute-force references, written independently of the module's bin/corner machinery
# --------------------------------------------------------------------------------------------


def brute_points(s, lab):
    """(P_fa, P_miss) at every threshold: each distinct score (accept >=) and +inf."""
    s, lab = np.asarray(s, float), np.asarray(lab, bool)
    thr = np.append(np.unique(s), np.inf)
    pm = np.array([(s[lab] < t).mean() for t in thr])
    pf = np.array([(s[~lab] >= t).mean() for t in thr])
    return pf, pm


def brute_min_dcf(s, lab, p):
    pf, pm = brute_points(s, lab)
    return ((p * pm + (1 - p) * pf) / min(p, 1 - p)).min()


def brute_rocch_eer(s, lab):
    """Lowest crossing with the diagonal of any chord between two operating points, one on
    each side: that is where the convex hull crosses it."""
    pf, pm = brute_points(s, lab)
    u, v = np.append(pf, 1.0), np.append(pm, 0.0)
    d = v - u
    best = 1.0
    for i, j in itertools.product(range(u.size), repeat=2):
        if d[i] <= 0 <= d[j]:
            if d[i] == d[j]:
                e = u[i]
            else:
                a = -d[i] / (d[j] - d[i])
                e = u[i] + a * (u[j] - u[i])
            best = min(best, e)
    return 100 * best


def brute_pav_min_cllr(s, lab):
    """Pool-adjacent-violators on the score-sorted labels, tied scores pooled from the start."""
    s, lab = np.asarray(s, float), np.asarray(lab, bool)
    blocks = []  # [n_target, n_total]
    for v in np.unique(s):
        blocks.append([int(lab[s == v].sum()), int((s == v).sum())])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            t, n = blocks.pop()
            blocks[-1][0] += t
            blocks[-1][1] += n
    n_t, n_n = lab.sum(), (~lab).sum()
    c_t = c_n = 0.0
    for t, n in blocks:
        non = n - t
        if t and non:
            llr = math.log(t / n_t) - math.log(non / n_n)
            c_t += t * math.log2(1 + math.exp(-llr))
            c_n += non * math.log2(1 + math.exp(llr))
    return 0.5 * (c_t / n_t + c_n / n_n)


def sklearn_interp_eer(s, lab):
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(lab, s)
    return 100 * brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)


def random_set(rng, n_max=40, levels=None):
    while True:
        n = int(rng.integers(2, n_max))
        s = rng.integers(0, levels, n).astype(float) if levels else rng.standard_normal(n)
        lab = rng.random(n) < rng.uniform(0.1, 0.9)
        if 0 < lab.sum() < n:
            return s, lab


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------


def test_hand_case_hull_vs_interpolation():
    # targets {2, 4}, non-targets {1, 3}.  Operating points (P_fa, P_miss): t<=1 (1, 0), t=2 (.5, 0),
    # t=3 (.5, .5), t=4 (0, .5), t>4 (0, 1).  Hull edge (.5, 0)-(0, .5) crosses at .25; the raw
    # curve touches the diagonal at (.5, .5).
    s, lab = [1, 2, 3, 4], [0, 1, 0, 1]
    assert M.eer(s, lab) == pytest.approx(25.0)
    assert M.eer(s, lab, method="interp") == pytest.approx(50.0)
    assert M.min_dcf(s, lab, 0.5) == pytest.approx(0.5)  # miss + fa at t=2 or t=4
    assert M.min_dcf(s, lab, 0.01) == pytest.approx(min(1.0, (0.01 * 0.5 + 0) / 0.01))
    # PAV: posteriors [0, 1, 0, 1] -> pool middle -> [0, .5, .5, 1]; LLRs [-inf, 0, 0, inf]
    assert M.min_cllr(s, lab) == pytest.approx(0.5)


def test_hand_case_all_tied_and_perfect():
    assert M.eer([5, 5, 5, 5], [1, 0, 1, 0]) == pytest.approx(50.0)
    assert M.eer([5, 5, 5, 5], [1, 0, 1, 0], method="interp") == pytest.approx(50.0)
    assert M.min_dcf([5, 5, 5], [1, 0, 0], 0.01) == pytest.approx(1.0)
    assert M.min_cllr([5, 5, 5, 5], [1, 0, 1, 0]) == pytest.approx(1.0)
    perfect = M.compute_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert perfect["eer"] == 0.0 and perfect["mindcf@0.01"] == 0.0 and perfect["min_cllr"] == 0.0
    assert 0.2 < perfect["eer_threshold"] <= 0.8  # accepting >= it separates the classes


def test_hand_case_one_tie_across_classes():
    # target 2 and non-target 2 are tied: no threshold separates them.  Points: (1,0), (.5,0) at
    # t=2 -> accept both 2s, (0, .5) at t=3, (0, 1).  Hull crossing of (.5,0)-(0,.5): .25.
    s, lab = [1, 2, 2, 3], [0, 0, 1, 1]
    assert M.eer(s, lab) == pytest.approx(25.0)
    # the diagonal step from (.5, 0) to (0, .5) crosses at .25 too
    assert M.eer(s, lab, method="interp") == pytest.approx(25.0)


def test_act_dcf_and_cllr_hand():
    assert M.cllr([0.0, 0.0], [1, 0]) == pytest.approx(1.0)
    assert M.cllr([3.0, -3.0], [1, 0]) == pytest.approx(math.log2(1 + math.exp(-3)))
    assert M.act_dcf([3.0, -3.0], [1, 0], 0.5) == 0.0
    # p=0.01 -> Bayes threshold log(99) = 4.595: the target at 3 is missed -> P_miss 1 -> 0.01/0.01
    assert M.act_dcf([3.0, -3.0], [1, 0], 0.01) == pytest.approx(1.0)
    # exactly at the threshold counts as accepted
    assert M.act_dcf([0.0, -1.0], [1, 0], 0.5) == 0.0


# --------------------------------------------------------------------------------------------
# Brute force and oracle agreement on random sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [None, 3, 8])
def test_against_brute_force(levels):
    rng = np.random.default_rng(levels or 0)
    for _ in range(60):
        s, lab = random_set(rng, levels=levels)
        assert M.eer(s, lab) == pytest.approx(brute_rocch_eer(s, lab), abs=1e-9)
        for p in (0.01, 0.05, 0.3, 0.5, 0.9):
            assert M.min_dcf(s, lab, p) == pytest.approx(brute_min_dcf(s, lab, p), abs=1e-12)
        assert M.min_cllr(s, lab) == pytest.approx(brute_pav_min_cllr(s, lab), abs=1e-9)


@pytest.mark.parametrize("levels", [None, 4, 50])
def test_interp_eer_matches_sklearn(levels):
    rng = np.random.default_rng(10 + (levels or 0))
    for _ in range(20):
        s, lab = random_set(rng, n_max=300, levels=levels)
        assert M.eer(s, lab, method="interp") == pytest.approx(sklearn_interp_eer(s, lab), abs=1e-7)


def test_operating_points_match_sklearn_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    s, lab = rng.integers(0, 30, 500).astype(float), rng.random(500) < 0.3
    fpr, tpr, _ = roc_curve(lab, s, drop_intermediate=False)
    p_fa, p_miss = M.det_curve(s, lab, max_points=10_000)
    ours = set(zip(np.round(p_fa, 12), np.round(p_miss, 12)))
    # sklearn's distinct points; ours adds nothing off its polyline but lists only its vertices
    theirs = set(zip(np.round(fpr, 12), np.round(1 - tpr, 12)))
    assert ours <= theirs | {(1.0, 0.0)}
    corners = {(a, b) for a, b in theirs if not any(c <= a and d <= b and (c, d) != (a, b) for c, d in theirs)}
    assert corners <= ours


def test_larger_set_rocch_against_brute_and_thresholds():
    rng = np.random.default_rng(5)
    lab = rng.random(600) < 0.2
    s = np.round(rng.standard_normal(600) + 1.5 * lab, 1)
    m = M.compute_metrics(s, lab)
    assert m["eer"] == pytest.approx(brute_rocch_eer(s, lab), abs=1e-9)
    # the EER threshold's own operating point is a hull vertex next to the crossing
    pm = (s[lab] < m["eer_threshold"]).mean()
    pf = (s[~lab] >= m["eer_threshold"]).mean()
    assert min(pm, pf) <= m["eer"] / 100 + 1e-12 <= max(pm, pf) + 1e-12


def test_windowed_crossing_equals_full_walk():
    rng = np.random.default_rng(8)
    lab = rng.random(20_000) < 0.5
    s = rng.standard_normal(lab.size) + lab
    bins = M._bins(s, lab)
    tc = B._resample_counts(bins.tcount, 20, rng)
    nb = B._resample_counts(bins.nbins, 20, rng)
    fa, miss = M._corners(tc, nb)
    full = M._rocch_crossing(fa, miss, nb.sum(1), tc.sum(1), window=10**9)[0]
    for w in (4, 64):
        np.testing.assert_array_equal(M._rocch_crossing(fa, miss, nb.sum(1), tc.sum(1), window=w)[0], full)


def test_compute_metrics_keys_and_consistency():
    rng = np.random.default_rng(1)
    lab = rng.random(2000) < 0.1
    s = rng.standard_normal(2000) + 2 * lab
    m = M.compute_metrics(s, lab, p_targets=(0.01, 0.05, 0.001))
    assert set(m) == {
        "eer", "eer_threshold", "mindcf@0.01", "mindcf@0.05", "mindcf@0.001", "cllr", "min_cllr", "n_target", "n_nontarget"
    }  # fmt: skip
    assert m["eer"] == M.eer(s, lab)
    assert m["mindcf@0.001"] == M.min_dcf(s, lab, 0.001)
    assert m["min_cllr"] == M.min_cllr(s, lab) and m["cllr"] == M.cllr(s, lab)
    assert (m["n_target"], m["n_nontarget"]) == (int(lab.sum()), int((~lab).sum()))
    assert "actdcf@0.01" in M.compute_metrics(s, lab, llr=True)


def test_input_errors():
    with pytest.raises(BenchError, match="NaN"):
        M.eer([0.1, float("nan")], [1, 0])
    with pytest.raises(BenchError, match="no non-target"):
        M.compute_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(BenchError, match="no target"):
        M.min_dcf([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError):
        M.eer([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError):
        M.eer([0.1, 0.2], [1, 0], method="kaldi")
    with pytest.raises(ValueError):
        M.min_dcf([0.1, 0.2], [1, 0], 1.0)
    # infinite scores are legal (LLRs of certain decisions)
    assert M.eer([-np.inf, np.inf], [0, 1]) == 0.0


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

trial_sets = st.lists(st.tuples(st.integers(-6, 6), st.booleans()), min_size=2, max_size=60).filter(
    lambda xs: 0 < sum(b for _, b in xs) < len(xs)
)


def _unpack(xs):
    return np.array([v for v, _ in xs], float), np.array([b for _, b in xs], bool)


@settings(max_examples=80, deadline=None)
@given(trial_sets, st.sampled_from(["affine", "cube", "exp"]))
def test_invariant_to_monotone_transforms(xs, kind):
    s, lab = _unpack(xs)
    f = {"affine": lambda x: 3 * x + 7, "cube": lambda x: x**3 - x / 10, "exp": lambda x: np.exp(x / 3)}[kind]
    t = f(s)
    assert M.eer(t, lab) == pytest.approx(M.eer(s, lab), abs=1e-9)
    assert M.eer(t, lab, "interp") == pytest.approx(M.eer(s, lab, "interp"), abs=1e-9)
    assert M.min_dcf(t, lab, 0.05) == pytest.approx(M.min_dcf(s, lab, 0.05), abs=1e-12)
    assert M.min_cllr(t, lab) == pytest.approx(M.min_cllr(s, lab), abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(trial_sets)
def test_label_swap_symmetry(xs):
    s, lab = _unpack(xs)
    assert M.eer(-s, ~lab) == pytest.approx(M.eer(s, lab), abs=1e-9)
    assert M.eer(-s, ~lab, "interp") == pytest.approx(M.eer(s, lab, "interp"), abs=1e-9)
    assert M.min_dcf(-s, ~lab, 0.2) == pytest.approx(M.min_dcf(s, lab, 0.8), abs=1e-12)
    assert M.min_cllr(-s, ~lab) == pytest.approx(M.min_cllr(s, lab), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(trial_sets, st.randoms(use_true_random=False))
def test_ties_order_independent_and_bounded(xs, rnd):
    s, lab = _unpack(xs)
    perm = list(range(s.size))
    rnd.shuffle(perm)
    a = M.compute_metrics(s, lab)
    b = M.compute_metrics(s[perm], lab[perm])
    assert a.pop("cllr") == pytest.approx(b.pop("cllr"), abs=1e-12)  # summation order only
    assert a == b  # ties are never split by input order: results are identical
    assert 0 <= a["eer"] <= 50 + 1e-9 and a["eer"] <= M.eer(s, lab, "interp") + 1e-9
    assert 0 <= a["mindcf@0.01"] <= 1 and 0 <= a["min_cllr"] <= 1 + 1e-12
    # EER is the largest minimum Bayes error over priors (checked on a grid: never exceeded)
    pf, pm = brute_points(s, lab)
    grid = np.linspace(0, 1, 101)
    bayes = np.min(grid[:, None] * pm + (1 - grid[:, None]) * np.append(pf, 1)[:-1], axis=1)
    assert bayes.max() <= a["eer"] / 100 + 1e-9


# --------------------------------------------------------------------------------------------
# DET curve
# --------------------------------------------------------------------------------------------


def test_det_curve_thinning():
    rng = np.random.default_rng(2)
    lab = rng.random(5000) < 0.3
    s = rng.standard_normal(5000) + lab
    full_fa, full_miss = M.det_curve(s, lab, max_points=10**6)
    fa, miss = M.det_curve(s, lab, max_points=100)
    assert 2 < fa.size <= 100
    assert (fa[0], miss[0]) == (1.0, 0.0) and (fa[-1], miss[-1]) == (0.0, 1.0)
    assert np.all(np.diff(fa) <= 0) and np.all(np.diff(miss) >= 0)
    assert set(zip(fa, miss)) <= set(zip(full_fa, full_miss))
    small_fa, _ = M.det_curve([1, 2, 3, 4], [0, 1, 0, 1], max_points=100)
    assert small_fa.size == 5


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


class _FixedRng:
    """Stands in for a Generator: ``multinomial`` returns prepared group multiplicities."""

    def __init__(self, m):
        self.m = np.asarray(m)

    def multinomial(self, n, pvals, size):
        assert self.m.shape == (size, len(pvals)) and (self.m.sum(axis=1) == n).all()
        return self.m


def test_group_replicates_equal_metrics_of_repeated_trials():
    rng = np.random.default_rng(4)
    n, g = 400, 12
    groups = rng.integers(0, g, n)
    lab = rng.random(n) < 0.4
    s = np.round(rng.standard_normal(n) + lab, 1)
    m = rng.multinomial(g, np.full(g, 1 / g), size=6)
    bins = M._bins(s, lab)
    for metric in ("eer", "mindcf@0.05"):
        got = B._replicates(s, lab, bins, metric, 6, groups, _FixedRng(m))
        for row, val in zip(m, got):
            w = row[groups]
            ss, ll = np.repeat(s, w), np.repeat(lab, w)
            if 0 < ll.sum() < ll.size:
                want = M.eer(ss, ll) if metric == "eer" else M.min_dcf(ss, ll, 0.05)
                assert val == pytest.approx(want, abs=1e-9)
            else:
                assert np.isnan(val)


def _naive_metric(s, lab, metric):
    if not 0 < lab.sum() < lab.size:
        return np.nan
    return M.eer(s, lab) if metric == "eer" else M.min_dcf(s, lab, float(metric.split("@")[1]))


@pytest.mark.parametrize("dense", [True, False])
def test_group_corners_equal_brute_force_counts_and_metrics(monkeypatch, dense):
    if not dense:
        monkeypatch.setattr(R, "_DENSE_ENTRIES", 0)
    rng = np.random.default_rng(6)
    n, g = 500, 9
    groups = rng.integers(0, g, n)
    lab = rng.random(n) < 0.2
    s = np.round(rng.standard_normal(n) + lab, 1)  # many ties, within and across classes
    s[:3] = [np.inf, -np.inf, 4.0]
    gc = R._GroupCorners(s, lab, groups, g)
    assert gc.dense == dense and gc.width < np.unique(s[lab]).size + 2  # dominated corners dropped
    mult = rng.integers(0, 3, size=(7, g))
    mult[0] = 0
    mult[0, 0] = 1  # a resample of a single group, perhaps without one class
    fa, miss = gc.counts(mult)
    thr = np.concatenate(([-np.inf], np.unique(s[lab]), [np.inf]))[gc.cols]
    for row, f_row, m_row in zip(mult, fa, miss):
        w = row[groups]
        # brute force: count every trial at every threshold; the last point rejects everything
        for j, (t, f, m) in enumerate(zip(thr, f_row, m_row)):
            last = j == thr.size - 1
            assert f == sum(w[i] for i in range(n) if not lab[i] and s[i] >= t and not last)
            assert m == sum(w[i] for i in range(n) if lab[i] and (s[i] < t or last))
    metrics = ["eer", "mindcf@0.01", "mindcf@0.3"]
    vals = R._evaluate(fa, miss, [B._metric_fn(x) for x in metrics])
    for r, row in enumerate(mult):
        ss, ll = np.repeat(s, row[groups]), np.repeat(lab, row[groups])
        for metric, v in zip(metrics, vals):
            want = _naive_metric(ss, ll, metric)
            assert (np.isnan(v[r]) and np.isnan(want)) or v[r] == pytest.approx(want, abs=1e-9)


def _naive_group_resamples(systems, lab, groups, metric, n_boot, seed):
    """The definition: per resample one multinomial draw of the groups, shared by all systems."""
    uniq, gi = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        w = rng.multinomial(uniq.size, np.full(uniq.size, 1 / uniq.size))[gi]
        out.append([_naive_metric(np.repeat(s, w), np.repeat(lab, w), metric) for s in systems])
    return np.array(out).T


@pytest.mark.parametrize("metric", ["eer", "mindcf@0.05"])
def test_group_bootstraps_equal_naive_loops(metric):
    rng = np.random.default_rng(12)
    n = 600
    groups = rng.integers(0, 15, n)
    lab = rng.random(n) < 0.15
    a = np.round(rng.standard_normal(n) + 1.5 * lab + 0.4 * rng.standard_normal(15)[groups], 2)
    b = np.round(a + 0.6 * rng.standard_normal(n), 2)
    va, vb = _naive_group_resamples([a, b], lab, groups, metric, 150, 4)
    r = B.paired_bootstrap(a, b, lab, groups=groups, metric=metric, n_boot=150, seed=4)
    d = (va - vb)[np.isfinite(va - vb)]
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (d.size + 1))
    assert r["low"] == pytest.approx(lo, abs=1e-9) and r["high"] == pytest.approx(hi, abs=1e-9)
    assert r["p_value"] == pytest.approx(p) and r["n_boot"] == d.size
    ci = B.bootstrap_ci(a, lab, metric=metric, n_boot=150, groups=groups, seed=4)
    assert ci == pytest.approx(tuple(np.quantile(va[np.isfinite(va)], [0.025, 0.975])), abs=1e-9)


def test_bootstrap_cis_equals_one_call_per_metric():
    rng = np.random.default_rng(13)
    lab = rng.random(800) < 0.1
    s = rng.standard_normal(800) + 2 * lab
    metrics = ["eer", "mindcf@0.01", "mindcf@0.1"]
    for groups in (None, np.arange(800) % 30):
        got = B.bootstrap_cis(s, lab, metrics, n_boot=200, groups=groups, seed=3)
        for m in metrics:
            assert got[m] == B.bootstrap_ci(s, lab, metric=m, n_boot=200, groups=groups, seed=3)


def test_many_groups_draw_uniform_counts(monkeypatch):
    """Past _MULTINOMIAL_GROUPS groups, multiplicities are counts of G uniform group draws."""
    monkeypatch.setattr(B, "_MULTINOMIAL_GROUPS", 3)
    rng = np.random.default_rng(14)
    n = 300
    lab = rng.random(n) < 0.3
    s = np.round(rng.standard_normal(n) + lab, 1)
    got = B._replicates(s, lab, M._bins(s, lab), "eer", 20, np.arange(n), np.random.default_rng(5))
    draw = np.random.default_rng(5)
    for v in got:
        w = np.bincount(draw.integers(0, n, n), minlength=n)
        assert v == pytest.approx(M.eer(np.repeat(s, w), np.repeat(lab, w)), abs=1e-9)


def test_paired_trial_resampling_equals_naive_loop():
    rng = np.random.default_rng(15)
    n = 400
    lab = rng.random(n) < 0.25
    a = np.round(rng.standard_normal(n) + 1.5 * lab, 1)
    b = np.round(a + rng.standard_normal(n), 1)
    r = B.paired_bootstrap(a, b, lab, metric="eer", n_boot=60, seed=8)
    tpos, npos = np.flatnonzero(lab), np.flatnonzero(~lab)
    draw = np.random.default_rng(8)
    d = []
    for _ in range(60):
        idx = np.r_[tpos[draw.integers(0, tpos.size, tpos.size)], npos[draw.integers(0, npos.size, npos.size)]]
        d.append(M.eer(a[idx], lab[idx]) - M.eer(b[idx], lab[idx]))
    lo, hi = np.quantile(d, [0.025, 0.975])
    assert r["low"] == pytest.approx(lo, abs=1e-9) and r["high"] == pytest.approx(hi, abs=1e-9)


@pytest.mark.parametrize("total_per_bin", [1, 50])
def test_resample_counts_both_paths(total_per_bin):
    rng = np.random.default_rng(0)
    counts = np.array([0, 3, 0, 1, 5, 0, 2]) * total_per_bin
    out = B._resample_counts(counts, 4000, rng)
    assert (out.sum(axis=1) == counts.sum()).all() and (out[:, counts == 0] == 0).all()
    np.testing.assert_allclose(out.mean(axis=0), counts, rtol=0.05, atol=0.05)


def test_bootstrap_ci_matches_naive_resampling():
    rng = np.random.default_rng(9)
    lab = rng.random(400) < 0.3
    s = rng.standard_normal(400) + 1.2 * lab
    lo, hi = B.bootstrap_ci(s, lab, n_boot=800, seed=1)
    assert B.bootstrap_ci(s, lab, n_boot=800, seed=1) == (lo, hi)  # deterministic
    tar, non = s[lab], s[~lab]
    naive = []
    for _ in range(800):
        ts, ns = rng.choice(tar, tar.size), rng.choice(non, non.size)
        naive.append(M.eer(np.r_[ts, ns], np.r_[np.ones(ts.size, bool), np.zeros(ns.size, bool)]))
    nlo, nhi = np.quantile(naive, [0.025, 0.975])
    assert lo < M.eer(s, lab) < hi
    assert lo == pytest.approx(nlo, abs=1.2) and hi == pytest.approx(nhi, abs=1.2)
    # speaker-level resampling with few groups gives a wider interval than trial resampling
    glo, ghi = B.bootstrap_ci(s, lab, n_boot=500, groups=np.arange(400) % 5, seed=1)
    assert ghi - glo > 0


def test_paired_bootstrap():
    rng = np.random.default_rng(11)
    lab = rng.random(3000) < 0.2
    base = rng.standard_normal(3000)
    a = base + 2.0 * lab
    b = base + 1.0 * lab + 0.3 * rng.standard_normal(3000)
    same = B.paired_bootstrap(a, a, lab, n_boot=200)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    r = B.paired_bootstrap(a, b, lab, n_boot=300, seed=2)
    assert r["diff"] == pytest.approx(M.eer(a, lab) - M.eer(b, lab))
    assert r["diff"] < 0 and r["high"] < 0 and r["p_value"] < 0.01
    rev = B.paired_bootstrap(b, a, lab, n_boot=300, seed=2)
    assert rev["diff"] == -r["diff"] and rev["low"] == pytest.approx(-r["high"])
    g = B.paired_bootstrap(a, b, lab, groups=np.arange(3000) % 40, metric="mindcf@0.05", n_boot=200)
    assert g["diff"] == pytest.approx(M.min_dcf(a, lab, 0.05) - M.min_dcf(b, lab, 0.05))
    with pytest.raises(ValueError):
        B.paired_bootstrap(a, b, lab, metric="cllr", n_boot=10)


def test_perf_metrics_small_run_agrees():
    from bench.perf_metrics import sklearn_eer, time_metrics

    r = time_metrics(n=3000, repeats=1, bootstrap_n=2000)
    assert r["ours_eer_mindcf"]["value"][0] == pytest.approx(r["ours_compute_metrics"]["value"]["eer"])
    assert r["sklearn_roc_curve_eer"]["value"] == pytest.approx(r["ours_eer_interp"]["value"], abs=1e-9)
    s, lab = np.array([1, 2, 3, 4.0]), np.array([0, 1, 0, 1], bool)
    assert sklearn_eer(s, lab) == pytest.approx(50.0)


def test_validation_metrics_are_the_brute_force_eer_and_mindcf_of_the_cosine_scores():
    # the train loop's per-epoch validation EER and minDCF (what bench tune --objective mindcf
    # minimises), against cosine scores computed here and every threshold tried
    from types import SimpleNamespace

    import pandas as pd

    from bench.data.trials import Trials
    from bench.runner.evaluate import validation_metrics
    from bench.scoring import Embeddings

    rng = np.random.default_rng(5)
    spk = np.repeat(np.arange(12), 5)
    centres = rng.standard_normal((12, 16))
    x = centres[spk] + 1.3 * rng.standard_normal((spk.size, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"s{k:02d}/u{i}" for i, k in enumerate(spk)]
    pairs = [(i, j) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    lab = np.array([spk[i] == spk[j] for i, j in pairs])
    trials = Trials([ids[i] for i, _ in pairs], [ids[j] for _, j in pairs], lab)
    corpus = SimpleNamespace(val=pd.DataFrame({"utt_id": ids}), val_trials=trials)
    seen = []

    def embed(df):
        seen.append(list(df["utt_id"]))
        return Embeddings(list(df["utt_id"]), x.astype(np.float32))

    got = validation_metrics(embed, corpus, [0.05, 0.01])
    s = np.array([float(x[i].astype(np.float32) @ x[j].astype(np.float32)) for i, j in pairs])
    assert seen == [ids]
    assert got is not None and set(got) == {"eer", "mindcf"}
    assert got["eer"] == pytest.approx(brute_rocch_eer(s, lab), abs=1e-4)
    assert got["mindcf"] == pytest.approx(brute_min_dcf(s, lab, 0.05), abs=1e-4)  # the first p_target
    assert 0 < got["mindcf"] < 1
    assert validation_metrics(embed, SimpleNamespace(val=None, val_trials=None), [0.01]) is None
