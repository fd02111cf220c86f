"""Score calibration: prior-weighted linear logistic regression, optionally with quality measures.

Raw cosine scores rank trials well but are not log-likelihood ratios (LLRs): their actual DCF at the
Bayes threshold and their Cllr are meaningless. A calibration maps scores (and, with quality measure
functions, per-trial side information) to LLRs::

    llr = bias + w_score * score + sum_k w_k * q_k

fitted on held-out *validation* trials and then applied, unchanged, to the evaluation scores.

Objective (Brümmer, "Measuring, refining and calibrating speaker and language information extracted
from speech", PhD thesis, 2010; the BOSARIS toolkit's ``train_linear_fusion``): with effective prior
``P`` (``p C_miss / (p C_miss + (1 - p) C_fa)``, equal to ``p`` for unit costs), ``T`` target and
``N`` non-target trials, ``f = X w + b`` and ``c = logit(P)``::

    J(w, b) = P/T sum_tar log(1 + exp(-(f + c))) + (1 - P)/N sum_non log(1 + exp(f + c)) + l2/2 |w|^2

``J / log 2`` is the prior-weighted Cllr of the calibrated scores (at ``P = 0.5`` exactly Cllr).
Minimising it is logistic regression with per-trial weights ``P/T`` and ``(1 - P)/N`` whose intercept
is ``b + c``; the ``c`` offset makes ``f`` an LLR rather than a log posterior odds. ``l2`` penalises
the weights (not the bias) on the raw feature scale; a small value keeps the fit finite when the
validation trials are perfectly separable.

Quality measure functions (QMF, Thienpondt et al., "The IDLAB VoxSRC-20 submission: large margin
fine-tuning and quality-aware score calibration", ICASSP 2021) add per-trial quality features so the
decision threshold moves with trial conditions. Measures here: ``duration`` (log seconds of the
enrolment and the test audio) and ``norm`` (embedding norms before length normalisation).

Example:
    >>> rng = np.random.default_rng(0)
    >>> labels = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    >>> scores = np.where(labels, 0.4, 0.1) + 0.1 * rng.standard_normal(4000)
    >>> cal = fit_calibration(scores, labels, prior=0.5)
    >>> round(float(cal.weights[0]))  # the true LLR slope is (0.4 - 0.1) / 0.1**2 = 30
    29
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError

#: per-trial side information a quality measure may read (arrays [N]): seconds of audio and
#: embedding norms before length normalisation, of the enrolment and the test side of each trial
SIDE_KEYS = ("dur_enroll", "dur_test", "norm_enroll", "norm_test")


def _log_seconds(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, np.float64), 1e-2))  # 10 ms floor: no log(0) for empty audio


#: quality measure name -> (side keys it needs, side -> named feature columns)
QUALITY_MEASURES: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]]] = {
    "duration": (
        ("dur_enroll", "dur_test"),
        lambda s: {"log_dur_enroll": _log_seconds(s["dur_enroll"]), "log_dur_test": _log_seconds(s["dur_test"])},
    ),
    "norm": (
        ("norm_enroll", "norm_test"),
        lambda s: {
            "norm_enroll": np.asarray(s["norm_enroll"], np.float64),
            "norm_test": np.asarray(s["norm_test"], np.float64),
        },
    ),
}


def quality_features(side: Mapping[str, np.ndarray] | None, measures: Sequence[str]) -> dict[str, np.ndarray]:
    """Named feature columns of the quality ``measures`` from per-trial ``side`` information.

    Raises BenchError for an unknown measure or side information that is missing.
    """
    out: dict[str, np.ndarray] = {}
    for name in measures:
        if name not in QUALITY_MEASURES:
            from bench.registry import suggest

            known = sorted(QUALITY_MEASURES)
            raise BenchError(f"unknown quality measure '{name}'{suggest(name, known)}; known: {', '.join(known)}")
        needs, fn = QUALITY_MEASURES[name]
        missing = [k for k in needs if side is None or side.get(k) is None]
        if missing:
            raise BenchError(f"quality measure '{name}' needs {', '.join(missing)} for every trial, which are missing")
        out.update(fn(side))  # type: ignore[arg-type]
    return out


def _check_prior(prior: float) -> float:
    prior = float(prior)
    if not 0.0 < prior < 1.0:
        raise BenchError(f"calibration prior must be in (0, 1), got {prior}")
    return prior


def trial_weights(labels: np.ndarray, prior: float) -> np.ndarray:
    """``P/T`` for each target and ``(1 - P)/N`` for each non-target trial (they sum to 1)."""
    lab = np.asarray(labels, bool)
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    return np.where(lab, prior / max(n_tar, 1), (1.0 - prior) / max(n_non, 1))


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, prior: float = 0.5, l2: float = 0.0
) -> tuple[np.ndarray, float]:
    """Minimise the prior-weighted logistic objective ``J`` of the module docstring.

    Args:
        features: [N, K] float; column 0 is normally the raw score.
        labels: [N] bool (True = target trial); both classes must be present.
        prior: effective target prior P in (0, 1).
        l2: ridge penalty on the weights (raw feature scale), >= 0.

    Returns ``(weights [K], bias)`` such that ``features @ weights + bias`` are LLRs. Solved with
    L-BFGS on standardised features (same optimum, better conditioning); constant columns get
    weight 0. Raises BenchError for one-class or non-finite input.
    """
    from scipy.optimize import minimize

    x = np.asarray(features, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    lab = np.asarray(labels, bool).reshape(-1)
    if x.shape[0] != lab.size:
        raise BenchError(f"calibration: {x.shape[0]} feature rows but {lab.size} labels")
    if not np.isfinite(x).all():
        raise BenchError("calibration: scores or quality features contain NaN or inf")
    if lab.all() or not lab.any():
        raise BenchError("calibration needs target and non-target trials; the fitting trials have only one class")
    if l2 < 0:
        raise BenchError(f"calibration l2 must be >= 0, got {l2}")
    prior = _check_prior(prior)
    weight = trial_weights(lab, prior)
    offset = math.log(prior / (1.0 - prior))
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    y = lab.astype(np.float64)
    pen = l2 / sd**2  # |w|^2 on the raw scale, w = v / sd

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        v, b = theta[:-1], theta[-1]
        a = z @ v + b + offset  # log posterior odds at prior P
        # target: log(1 + e^-a); non-target: log(1 + e^a)
        loss = np.where(lab, np.logaddexp(0.0, -a), np.logaddexp(0.0, a))
        value = float(weight @ loss + 0.5 * np.sum(pen * v * v))
        r = weight * (_sigmoid(a) - y)  # dJ/da per trial
        grad = np.append(z.T @ r + pen * v, r.sum())
        return value, grad

    theta0 = np.zeros(x.shape[1] + 1)
    res = minimize(
        objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-12, "ftol": 1e-15}
    )
    v, b = res.x[:-1], float(res.x[-1])
    w = v / sd
    return w, b - float(w @ mu)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass
class Calibration:
    """A fitted calibration: ``llr = bias + features @ weights``, feature 0 the raw score."""

    names: list[str]  # feature names: "score", then quality features
    weights: np.ndarray  # [K]
    bias: float
    prior: float
    l2: float
    measures: list[str]  # quality measures (empty: linear calibration of the score alone)

    def features(self, scores: np.ndarray, side: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """[N, K] design matrix of ``scores`` and the quality features of ``side``."""
        cols = [np.asarray(scores, np.float64).reshape(-1)]
        q = quality_features(side, self.measures)
        cols += [q[n] for n in self.names[1:]]
        return np.stack(cols, axis=1)

    def apply(self, scores: np.ndarray, side: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated LLRs [N] (natural log) of raw ``scores`` [N] (+ per-trial ``side`` information)."""
        return self.features(scores, side) @ self.weights + self.bias

    def to_dict(self) -> dict:
        return {
            "features": list(self.names),
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "prior": float(self.prior),
            "l2": float(self.l2),
            "quality": list(self.measures),
        }


def fit_calibration(
    scores: np.ndarray,
    labels: np.ndarray,
    side: Mapping[str, np.ndarray] | None = None,
    measures: Sequence[str] = (),
    prior: float = 0.5,
    l2: float = 0.0,
) -> Calibration:
    """Fit a linear (``measures`` empty) or quality-aware calibration on labelled trials.

    ``scores`` [N] raw scores, ``labels`` [N] bool, ``side`` per-trial side information (see
    :data:`SIDE_KEYS`) needed by the quality ``measures``. Only the trials given here are read:
    pass validation trials, never the evaluation trials.
    """
    q = quality_features(side, measures)
    names = ["score", *q]
    x = np.stack([np.asarray(scores, np.float64).reshape(-1), *q.values()], axis=1)
    w, b = fit_logistic(x, labels, prior=prior, l2=l2)
    return Calibration(names=names, weights=w, bias=b, prior=float(prior), l2=float(l2), measures=list(measures))
