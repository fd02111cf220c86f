"""Score calibration: the prior-weighted logistic regression against scikit-learn and the closed-form
Gaussian LLR, calibrated actDCF/Cllr against their minimum counterparts, and the guarantee that the
fit never reads the evaluation trials."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench.calibration import fit_calibration, fit_logistic, quality_features, trial_weights
from bench.config import CalibrationConfig, EvalConfig, load_config
from bench.errors import BenchError
from bench.metrics import compute_metrics

# --- the objective: scikit-learn as an independent solver -----------------------------------------


def _sklearn_fit(x, labels, prior, l2):
    from sklearn.linear_model import LogisticRegression

    # J = sum_i w_i loss_i + l2/2 |w|^2 is sklearn's C sum_i w_i loss_i + |w|^2 / 2 with C = 1/l2; its
    # intercept is the log posterior odds at the prior, i.e. our bias + logit(prior)
    clf = LogisticRegression(C=np.inf if l2 == 0 else 1.0 / l2, tol=1e-14, max_iter=100_000)
    clf.fit(x, labels, sample_weight=trial_weights(labels, prior))
    return clf.coef_[0], float(clf.intercept_[0]) - math.log(prior / (1 - prior))


def _objective(x, labels, prior, l2, w, b):
    a = x @ w + b + math.log(prior / (1 - prior))
    loss = np.where(labels, np.logaddexp(0, -a), np.logaddexp(0, a))
    return float(trial_weights(labels, prior) @ loss + 0.5 * l2 * w @ w)


@pytest.mark.parametrize("prior,l2", [(0.5, 0.0), (0.01, 0.0), (0.05, 0.01)])
def test_fit_equals_sklearn_on_the_same_objective(prior, l2):
    rng = np.random.default_rng(1)
    n_tar, n_non = 400, 3000
    labels = np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]
    # a score and two quality-like features on very different scales
    score = np.where(labels, 0.5, 0.1) + 0.15 * rng.standard_normal(labels.size)
    dur = rng.uniform(0.5, 3.0, labels.size)
    norm = 20 + 5 * rng.standard_normal(labels.size) + 3 * labels
    x = np.stack([score, dur, norm], axis=1)
    w, b = fit_logistic(x, labels, prior=prior, l2=l2)
    w_ref, b_ref = _sklearn_fit(x, labels, prior, l2)
    np.testing.assert_allclose(w, w_ref, rtol=1e-4, atol=1e-6)
    assert b == pytest.approx(b_ref, rel=1e-4, abs=1e-5)
    assert _objective(x, labels, prior, l2, w, b) <= _objective(x, labels, prior, l2, w_ref, b_ref) + 1e-12


def test_at_prior_half_the_objective_is_cllr_of_the_calibrated_scores():
    from bench.metrics import cllr

    rng = np.random.default_rng(2)
    labels = rng.random(3000) < 0.3
    s = labels * 1.0 + rng.standard_normal(3000)
    cal = fit_calibration(s, labels, prior=0.5)
    llr = cal.apply(s)
    value = _objective(s[:, None], labels, 0.5, 0.0, cal.weights, cal.bias)
    assert value / math.log(2) == pytest.approx(cllr(llr, labels), rel=1e-9)


# --- calibration on Gaussian scores, whose true LLR is known in closed form -----------------------

MU_T, MU_N, SIGMA = 0.45, 0.10, 0.10
SLOPE = (MU_T - MU_N) / SIGMA**2  # log N(s; mu_t, sigma) - log N(s; mu_n, sigma) = SLOPE * s + OFFSET
OFFSET = -(MU_T**2 - MU_N**2) / (2 * SIGMA**2)


def _gaussian_trials(seed, n_tar=3000, n_non=30000):
    """Cosine-like scores of a well-separated system (EER about 4 %)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]
    return np.where(labels, MU_T, MU_N) + SIGMA * rng.standard_normal(labels.size), labels


def test_linear_calibration_recovers_the_gaussian_llr_and_meets_the_minimum_costs():
    val_s, val_l = _gaussian_trials(10)
    ev_s, ev_l = _gaussian_trials(11)
    cal = fit_calibration(val_s, val_l, prior=0.01, l2=CalibrationConfig().l2)  # the runner's default ridge
    assert cal.weights[0] == pytest.approx(SLOPE, rel=0.06)
    assert cal.bias == pytest.approx(OFFSET, rel=0.06)

    raw = compute_metrics(ev_s, ev_l, p_targets=(0.01, 0.05), llr=True)
    calibrated = compute_metrics(cal.apply(ev_s), ev_l, p_targets=(0.01, 0.05), llr=True)
    # raw cosines read as LLRs: every trial is below the Bayes threshold log(99), nothing is accepted
    assert raw["actdcf@0.01"] == pytest.approx(1.0) and raw["mindcf@0.01"] < 0.5
    assert raw["cllr"] > raw["min_cllr"] + 0.3
    for p in ("0.01", "0.05"):
        assert calibrated[f"mindcf@{p}"] == pytest.approx(raw[f"mindcf@{p}"])  # a monotone map
        assert 0 <= calibrated[f"actdcf@{p}"] - calibrated[f"mindcf@{p}"] < 0.05
    assert 0 <= calibrated["cllr"] - calibrated["min_cllr"] < 0.02


def test_quality_measures_move_the_threshold_with_the_condition():
    # both classes' scores drop with shorter test audio (log seconds); enrolment length has no effect
    def trials(seed):
        s, lab = _gaussian_trials(seed)
        r = np.random.default_rng(seed + 100)
        log_test = r.uniform(0.0, 2.0, lab.size)
        log_enroll = r.uniform(1.0, 3.0, lab.size)
        s = s - 0.15 * (2.0 - log_test)
        return s, lab, {"dur_enroll": np.exp(log_enroll), "dur_test": np.exp(log_test)}

    val_s, val_l, val_side = trials(30)
    ev_s, ev_l, ev_side = trials(31)
    qmf = fit_calibration(val_s, val_l, val_side, ["duration"], prior=0.01)
    assert qmf.names == ["score", "log_dur_enroll", "log_dur_test"]
    # true LLR = SLOPE * (s + 0.15 (2 - log_test)) + OFFSET
    np.testing.assert_allclose(qmf.weights, [SLOPE, 0.0, -0.15 * SLOPE], rtol=0.08, atol=0.6)
    linear = fit_calibration(val_s, val_l, prior=0.01)
    m_qmf = compute_metrics(qmf.apply(ev_s, ev_side), ev_l, p_targets=(0.01,), llr=True)
    m_lin = compute_metrics(linear.apply(ev_s), ev_l, p_targets=(0.01,), llr=True)
    assert m_qmf["cllr"] < m_lin["cllr"] - 0.03
    assert m_qmf["actdcf@0.01"] < m_lin["actdcf@0.01"]


def test_separable_trials_give_a_finite_fit_with_the_ridge():
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    s = np.where(labels, 0.8, 0.1) + np.linspace(0, 0.05, 100)
    cal = fit_calibration(s, labels, prior=0.5, l2=1e-5)
    assert np.isfinite(cal.weights).all() and 0 < cal.weights[0] < 1e4
    llr = cal.apply(s)
    assert (llr[labels] > 0).all() and (llr[~labels] < 0).all()


def test_bad_input_is_a_clear_error():
    s = np.array([0.1, 0.2, 0.3])
    with pytest.raises(BenchError, match="only one class"):
        fit_calibration(s, np.array([True, True, True]))
    with pytest.raises(BenchError, match="NaN"):
        fit_calibration(np.array([0.1, np.nan, 0.3, 0.4]), np.array([True, False, True, False]))
    with pytest.raises(BenchError, match="unknown quality measure 'durtion'.*duration"):
        quality_features({}, ["durtion"])
    with pytest.raises(BenchError, match="needs dur_enroll, dur_test"):
        fit_calibration(np.r_[s, 0.4], np.array([True, False, True, False]), None, ["duration"])
    with pytest.raises(BenchError, match="prior must be in"):
        fit_calibration(np.r_[s, 0.4], np.array([True, False, True, False]), prior=1.0)
    with pytest.raises(BenchError, match="eval.calibration.method must be"):
        load_config(overrides=["eval.calibration.method=platt"])


# --- in the runner: fitted on the validation trials only -----------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """An (untrained) tiny model's embedder and the tiny CN-Celeb fixture corpus."""
    import torch

    from bench.runner.train import build_components, embedder
    from tests.runner_helpers import make_corpus, tiny_config

    corpus = make_corpus(tmp_path_factory.mktemp("cal"))
    cfg = tiny_config()
    model, _ = build_components(cfg, len(corpus.speakers))
    return embedder(model.eval(), cfg, torch.device("cpu")), corpus


@pytest.mark.parametrize("method", ["linear", "qmf"])
def test_runner_fit_never_reads_the_evaluation_trials(scored, method):
    import copy

    from bench.runner.calibrate import calibrate_eval
    from bench.runner.evaluate import evaluate_corpus

    embed, corpus = scored
    eval_cfg = EvalConfig(batch_size=8, calibration=CalibrationConfig(method=method))
    ts, _ = evaluate_corpus(embed, corpus, eval_cfg)
    llr, record = calibrate_eval(embed, corpus, eval_cfg, ts)
    assert record["fitted_on"]["trials"] == "validation"
    assert record["fitted_on"]["n"] == len(corpus.val_trials)
    if method == "qmf":
        assert record["features"] == ["score", "log_dur_enroll", "log_dur_test", "norm_enroll", "norm_test"]

    # corrupt the evaluation labels: the fitted calibration and the calibrated scores do not move
    bad = copy.copy(corpus)
    bad.trials = dataclasses.replace(corpus.trials, labels=~np.asarray(corpus.trials.labels))
    ts_bad, _ = evaluate_corpus(embed, bad, eval_cfg)
    assert (ts_bad.labels != ts.labels).all()
    llr_bad, record_bad = calibrate_eval(embed, bad, eval_cfg, ts_bad)
    assert record_bad == record
    np.testing.assert_array_equal(llr_bad, llr)

    # ... while corrupting the validation labels does: the test above could fail
    other = copy.copy(corpus)
    other.val_trials = dataclasses.replace(corpus.val_trials, labels=~np.asarray(corpus.val_trials.labels))
    _, record_val = calibrate_eval(embed, other, eval_cfg, ts)
    assert record_val["weights"] != record["weights"]


def test_validation_scores_are_normalised_like_the_evaluation_scores(scored):
    from bench.runner.calibrate import validation_scores
    from bench.runner.evaluate import cohort_embeddings, score_trials

    embed, corpus = scored
    plain = validation_scores(embed, corpus, EvalConfig(batch_size=8))
    normed = validation_scores(embed, corpus, EvalConfig(batch_size=8, asnorm=True, cohort_size=4, asnorm_top=2))
    emb = embed(corpus.val)
    cohort = cohort_embeddings(embed, corpus.train, 4)
    ref = score_trials(emb, emb, corpus.val_trials, cohort=cohort, asnorm_top=2)
    np.testing.assert_allclose(normed.scores, ref.scores, rtol=1e-12)
    assert not np.allclose(normed.scores, plain.scores)


def test_runner_without_validation_trials_records_why(scored):
    import copy

    from bench.runner.calibrate import calibrate_eval
    from bench.runner.evaluate import evaluate_corpus

    embed, corpus = scored
    eval_cfg = EvalConfig(batch_size=8)
    ts, _ = evaluate_corpus(embed, corpus, eval_cfg)
    none = copy.copy(corpus)
    none.val_trials = None
    llr, record = calibrate_eval(embed, none, eval_cfg, ts)
    assert llr is None and "no validation trials" in record["skipped"]
    off = dataclasses.replace(eval_cfg, calibration=CalibrationConfig(method="none"))
    assert calibrate_eval(embed, corpus, off, ts) == (None, {"method": "none"})
