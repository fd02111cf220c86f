"""The seeds x speakers bootstrap (bench.bootstrap, bench.bootstrap_counts) against its plain definition and its predecessor.

The plain definition: draw the speaker multiplicities w (one multinomial per resample) and the seed
multiplicities m (another), write out the resampled trial list (every trial of seed s and speaker g
``m_s * w_g`` times) and compute the metric on it from scratch with ``bench.metrics``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import bootstrap as B
from bench import bootstrap_counts as C
from bench import bootstrap_reference as R
from bench import metrics as M
from bench.errors import BenchError


def _naive(s, lab, metric):
    if not 0 < lab.sum() < lab.size:
        return np.nan
    return M.eer(s, lab) if metric == "eer" else M.min_dcf(s, lab, float(metric.split("@")[1]))


def _plain_draws(n_groups, n_seeds, n_boot, seed):
    """The definition of the draws: per resample, G speakers then (all resamples) S seeds, uniform."""
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)
    m = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot) if n_seeds > 1 else np.ones((n_boot, 1))
    return w, m.astype(int)


def _plain_replicates(mat, lab, groups, metric, n_boot, seed):
    """Metric of each resampled trial list, written out trial by trial."""
    uniq, gi = np.unique(groups, return_inverse=True)
    w, m = _plain_draws(uniq.size, mat.shape[0], n_boot, seed)
    out = []
    for wr, mr in zip(w, m):
        reps = (mr[:, None] * wr[gi][None, :]).ravel()  # [S * N] copies of each (seed, trial)
        out.append(_naive(np.repeat(mat.ravel(), reps), np.repeat(np.tile(lab, mat.shape[0]), reps), metric))
    return np.array(out)


def _system(rng, n, n_groups, n_seeds, ties=True):
    groups = rng.integers(0, n_groups, n)
    lab = rng.random(n) < 0.2
    spk = 0.4 * rng.standard_normal(n_groups)[groups]
    mat = np.stack([rng.standard_normal(n) + (1.0 + 0.3 * s) * lab + spk for s in range(n_seeds)])
    return (np.round(mat, 1) if ties else mat), lab, groups


def test_draws_are_speakers_then_seeds():
    w, m = B.draw_resamples(7, 3, 50, seed=5)
    pw, pm = _plain_draws(7, 3, 50, 5)
    assert (w == pw).all() and (m == pm).all() and (m.sum(axis=1) == 3).all()
    w1, m1 = B.draw_resamples(7, 1, 50, seed=5)
    assert (w1 == w).all() and (m1 == 1).all()  # one seed: the speaker bootstrap's own draws


@pytest.mark.parametrize("steps", [(1,), (2, 1), (3, 1), (7, 3, 1), (16, 4, 1), (64, 8, 1)])
@pytest.mark.parametrize("n_seeds", [1, 3])
def test_replicates_equal_the_plain_definition(monkeypatch, steps, n_seeds):
    """Every replicate, whatever the refinement steps ((1,) = every corner counted for every
    resample; small steps = many gaps refined, over two or three levels)."""
    monkeypatch.setattr(C, "_STEPS", steps)
    block = steps[0]
    rng = np.random.default_rng(block * 10 + n_seeds)
    mat, lab, groups = _system(rng, 700, 9, n_seeds)  # many ties, within and across classes
    mat[0, :3] = [np.inf, -np.inf, 4.0]
    metrics = ["eer", "mindcf@0.01", "mindcf@0.3"]
    got = B.replicates(mat, lab, groups, metrics, n_boot=40, seed=block).values
    for metric in metrics:
        want = _plain_replicates(mat, lab, groups, metric, 40, block)
        assert np.isnan(got[metric]).tolist() == np.isnan(want).tolist()
        np.testing.assert_allclose(got[metric], want, rtol=0, atol=1e-9)


def test_shared_products_equal_the_plain_definition(monkeypatch):
    """Gaps counted in the shared BLAS product (every gap, here) give the same replicates."""
    monkeypatch.setattr(C, "_STEPS", (9, 3, 1))
    monkeypatch.setattr(C, "_SHARED_PRODUCT", 0)
    rng = np.random.default_rng(31)
    mat, lab, groups = _system(rng, 800, 11, 2)
    got = B.replicates(mat, lab, groups, ["eer", "mindcf@0.05"], n_boot=30, seed=3).values
    for metric in ("eer", "mindcf@0.05"):
        np.testing.assert_allclose(got[metric], _plain_replicates(mat, lab, groups, metric, 30, 3), rtol=0, atol=1e-9)


def test_replicates_without_ties_and_with_empty_classes(monkeypatch):
    monkeypatch.setattr(C, "_STEPS", (4, 2, 1))
    rng = np.random.default_rng(3)
    mat, lab, groups = _system(rng, 400, 3, 2, ties=False)  # 3 speakers: some resamples lack a class
    lab[groups == 0] = False
    got = B.replicates(mat, lab, groups, ["eer", "mindcf@0.05"], n_boot=60, seed=2).values
    for metric in ("eer", "mindcf@0.05"):
        want = _plain_replicates(mat, lab, groups, metric, 60, 2)
        assert np.isnan(want).any() and np.isnan(got[metric]).tolist() == np.isnan(want).tolist()
        np.testing.assert_allclose(got[metric], want, rtol=0, atol=1e-9)


def test_too_many_resampling_units_are_refused_before_work(monkeypatch):
    monkeypatch.setattr(C, "_MAX_CELL_COUNTS", 1000)
    rng = np.random.default_rng(2)
    mat, lab, _ = _system(rng, 2000, 5, 2)
    with pytest.raises(BenchError, match="--unit speaker"):
        B.replicates(mat, lab, np.arange(2000), ["eer"], n_boot=10)


def test_point_value_is_the_metric_of_the_pooled_seeds():
    rng = np.random.default_rng(4)
    mat, lab, groups = _system(rng, 600, 7, 3)
    pooled = np.tile(lab, 3)
    for n_boot in (0, 5):
        r = B.replicates(mat, lab, groups, ["eer", "mindcf@0.05"], n_boot=n_boot)
        assert r.point["eer"] == pytest.approx(M.eer(mat.ravel(), pooled), abs=1e-12)
        assert r.point["mindcf@0.05"] == pytest.approx(M.min_dcf(mat.ravel(), pooled, 0.05), abs=1e-12)
        assert r.values["eer"].shape == (n_boot,)


def test_rank_equals_searchsorted():
    rng = np.random.default_rng(0)
    for thr in (
        np.unique(np.round(rng.standard_normal(300), 2)),
        np.concatenate(([-np.inf, -np.inf], np.sort(rng.standard_normal(50) ** 3), [np.inf])),
        np.array([0.0, 1.0]),
        np.array([1.0]),
    ):
        x = np.concatenate((np.round(rng.standard_normal(20_000), 2) * 2, thr, [np.inf, -np.inf, thr[-1] + 1e-300]))
        np.testing.assert_array_equal(C._rank(thr, x), np.searchsorted(thr, x, "right"))


@pytest.mark.parametrize("metric", ["eer", "mindcf@0.05"])
def test_one_seed_equals_the_previous_engine(metric):
    """With one seed the speaker bootstrap is unchanged: same draws, same intervals, same test."""
    rng = np.random.default_rng(12)
    mat, lab, groups = _system(rng, 2000, 25, 2)
    a, b = mat
    new = B.bootstrap_cis(a, lab, [metric, "mindcf@0.01"], n_boot=150, groups=groups, seed=4)
    old = R.bootstrap_cis_v1(a, lab, [metric, "mindcf@0.01"], n_boot=150, groups=groups, seed=4)
    for m in new:
        assert new[m] == pytest.approx(old[m], abs=1e-12)
    pn = B.paired_bootstrap(a, b, lab, groups=groups, metric=metric, n_boot=150, seed=4)
    po = R.paired_bootstrap_v1(a, b, lab, groups, metric=metric, n_boot=150, seed=4)
    assert pn.keys() == po.keys()
    for k in pn:
        assert pn[k] == (pytest.approx(po[k], abs=1e-12) if isinstance(po[k], float) else po[k])


def test_paired_test_pairs_seeds_by_index_and_speakers_by_id():
    rng = np.random.default_rng(21)
    a, lab, groups = _system(rng, 900, 12, 3)
    b = np.round(a + 0.5 * rng.standard_normal(a.shape), 1)
    r = B.paired_bootstrap(a, b, lab, groups=groups, metric="eer", n_boot=80, seed=6)
    d = _plain_replicates(a, lab, groups, "eer", 80, 6) - _plain_replicates(b, lab, groups, "eer", 80, 6)
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (d.size + 1))
    assert r["low"] == pytest.approx(lo, abs=1e-9) and r["high"] == pytest.approx(hi, abs=1e-9)
    assert r["p_value"] == pytest.approx(p)
    pooled = np.tile(lab, 3)
    assert r["diff"] == pytest.approx(M.eer(a.ravel(), pooled) - M.eer(b.ravel(), pooled))
    with pytest.raises(ValueError):
        B.paired_bootstrap(a, b[:2], lab, groups=groups)


def test_seed_spread_widens_the_interval():
    """Seeds that disagree (EER about 31 %, 16 %, 7 %): resampling seeds widens the pooled interval
    well beyond the speakers-only interval of the same pooled trials, which hides the spread."""
    rng = np.random.default_rng(8)
    n, g = 4000, 40
    groups = rng.integers(0, g, n)
    lab = rng.random(n) < 0.25
    mat = np.stack([rng.standard_normal(n) + sep * lab for sep in (1.0, 2.0, 3.0)])
    lo, hi = B.bootstrap_ci(mat, lab, "eer", n_boot=300, groups=groups, seed=1)
    old = R.bootstrap_cis_v1(mat.ravel(), np.tile(lab, 3), ["eer"], n_boot=300, groups=np.tile(groups, 3), seed=1)
    olo, ohi = old["eer"]
    assert lo <= M.eer(mat.ravel(), np.tile(lab, 3)) <= hi
    assert hi - lo > 3 * (ohi - olo)
    # one seed alone has no seed spread to add: its interval is the speakers-only one
    assert B.bootstrap_ci(mat[1], lab, "eer", n_boot=300, groups=groups, seed=1) == pytest.approx(
        R.bootstrap_cis_v1(mat[1], lab, ["eer"], n_boot=300, groups=groups, seed=1)["eer"], abs=1e-12
    )
