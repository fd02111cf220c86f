"""The runner's calibration step: fit on the validation trials, apply to the evaluation scores.

``calibrate_eval`` embeds the validation utterances (held-out training speakers), scores the
validation trials, fits ``bench.calibration`` on them and applies the fit to the evaluation
scores it is given. It never reads the evaluation trials' labels: the caller computes the
calibrated metrics from the returned LLRs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bench.calibration import Calibration, fit_calibration
from bench.config import EvalConfig
from bench.runner.evaluate import Embeddings, TrialScores, cohort_embeddings, resolve_enroll_ids, score_trials


def _durations(index: Any) -> dict[str, float]:
    if index is None or len(index) == 0 or "duration" not in index:
        return {}
    return dict(zip((str(u) for u in index["utt_id"]), (float(d) for d in index["duration"])))


def eval_durations(corpus: Any, eval_cfg: EvalConfig) -> dict[str, float]:
    """Seconds of audio per enrolment model and test utterance of the evaluation trials.

    ``concat`` enrolment: the enrolment file's duration; ``mean``: the sum over the model's
    utterances in ``corpus.enroll_map``.
    """
    out = _durations(getattr(corpus, "test", None))
    if eval_cfg.enroll_mode == "mean":
        extra = _durations(getattr(corpus, "extra", None))
        for model, utts in (getattr(corpus, "enroll_map", None) or {}).items():
            out[model] = float(sum(extra.get(u, 0.0) for u in utts))
    else:
        out.update(_durations(getattr(corpus, "enroll", None)))
    return out


def trial_side(
    enroll: Embeddings, test: Embeddings, trials: Any, durations: Mapping[str, float], max_seconds: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-trial side information (``bench.calibration.SIDE_KEYS``): seconds of audio (capped at
    ``max_seconds`` when > 0, as embedded) and embedding norms of each trial's two sides.

    Keys without data (an index without durations, embeddings without norms) are left out.
    """
    e_ids = resolve_enroll_ids(trials.enroll, enroll)
    t_ids = [str(u) for u in trials.test]
    path = getattr(trials, "path", None)
    out: dict[str, np.ndarray] = {}
    if durations:
        for key, ids in (("dur_enroll", e_ids), ("dur_test", t_ids)):
            d = np.array([durations.get(u, np.nan) for u in ids], dtype=np.float64)
            if max_seconds > 0:
                d = np.minimum(d, max_seconds)
            if not np.isnan(d).any():
                out[key] = d
    for key, emb, ids, what in (("norm_enroll", enroll, e_ids, "enrolment id"), ("norm_test", test, t_ids, "test id")):
        if emb.norms is not None:
            out[key] = emb.norms[emb.rows(ids, what, str(path) if path else None)]
    return out


def validation_scores(
    embed: Callable[[Any], Embeddings], corpus: Any, eval_cfg: EvalConfig, side: bool = False
) -> TrialScores | None:
    """Scores of the validation trials, normalised as the evaluation scores are (AS-norm with the
    same training-speaker cohort when ``eval.asnorm``), with ``side`` information when asked;
    None without validation trials.
    """
    val, trials = getattr(corpus, "val", None), getattr(corpus, "val_trials", None)
    if val is None or trials is None or len(val) == 0 or len(trials) == 0:
        return None
    emb = embed(val)
    # a calibration maps one kind of score: fitted on raw cosines it would miscalibrate AS-norm scores
    cohort = cohort_embeddings(embed, corpus.train, eval_cfg.cohort_size) if eval_cfg.asnorm else None
    ts = score_trials(emb, emb, trials, cohort=cohort, asnorm_top=eval_cfg.asnorm_top)
    if side:
        ts.side = trial_side(emb, emb, trials, _durations(val), eval_cfg.max_seconds)
    return ts


def calibrate_eval(
    embed: Callable[[Any], Embeddings], corpus: Any, eval_cfg: EvalConfig, eval_scores: TrialScores
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Calibrated LLRs of ``eval_scores`` and the record for ``metrics.json["calibration"]``.

    Fitted on the validation trials of ``corpus`` with ``eval_cfg.calibration`` (method ``linear``:
    the score alone; ``qmf``: plus its quality measures; prior 0: the first of ``eval.p_targets``).
    Returns ``(None, record)`` for method ``none`` or a corpus without validation trials (the
    record says why). Only ``eval_scores.scores`` and ``eval_scores.side`` are read.
    """
    c = eval_cfg.calibration
    if c.method == "none":
        return None, {"method": "none"}
    val = validation_scores(embed, corpus, eval_cfg, side=c.method == "qmf")
    if val is None:
        return None, {
            "method": c.method,
            "skipped": "the corpus has no validation trials (dev/val_trials.lst or data.val_speakers)",
        }
    prior = c.prior or float(eval_cfg.p_targets[0])
    measures = list(c.quality) if c.method == "qmf" else []
    cal: Calibration = fit_calibration(val.scores, val.labels, val.side, measures, prior=prior, l2=c.l2)
    llr = cal.apply(eval_scores.scores, eval_scores.side)
    from bench.metrics import cllr, min_cllr

    trials_path = getattr(corpus.val_trials, "path", None)
    record = {
        "method": c.method,
        **cal.to_dict(),
        "fitted_on": {
            "trials": "validation",
            "path": str(trials_path) if trials_path else None,
            "n": int(val.labels.size),
            "n_target": int(val.labels.sum()),
            # how well the fit calibrates its own trials (an optimistic figure)
            "cllr": cllr(cal.apply(val.scores, val.side), val.labels),
            "min_cllr": min_cllr(val.scores, val.labels),
        },
    }
    return llr, record
