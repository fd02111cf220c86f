"""The runner's calibration step: fit on the validation trials, apply to the evaluation scores.

``calibrate_eval`` embeds the validation utterances (held-out training speakers), scores the
validation trials, fits ``bench.calibration`` on them and applies the fit to the evaluation
scores it is given. It never reads the evaluation trials' labels: the caller computes the
calibrated metrics from the returned LLRs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.calibration import Calibration, fit_calibration
from bench.config import EvalConfig
from bench.data.corpus import Corpus

# The trial side information lives beside the scoring it follows (bench.runner.evaluate calls it too);
# eval_durations and trial_side stay importable from here.
from bench.runner.evaluate import (  # noqa: F401
    Embeddings,
    TrialScores,
    _durations,
    cohort_embeddings,
    eval_durations,
    resolve_enroll_ids,
    score_trials,
    trial_side,
)


def validation_scores(
    embed: Callable[[pd.DataFrame], Embeddings], corpus: Corpus, eval_cfg: EvalConfig, side: bool = False
) -> TrialScores | None:
    """Scores of the validation trials, normalised as the evaluation scores are (AS-norm with the
    same training-speaker cohort when ``eval.asnorm``), with ``side`` information when asked;
    None without validation trials.
    """
    val, trials = corpus.val, corpus.val_trials
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
    embed: Callable[[pd.DataFrame], Embeddings], corpus: Corpus, eval_cfg: EvalConfig, eval_scores: TrialScores
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
