"""The non-learned MFCC baseline (:mod:`bench.synth.baseline`) per trial cell, and as a report system.

:func:`write_baseline_run` scores a corpus' ``eval/lists/trials.lst`` with the baseline and writes
the result where ``bench report`` collects it, in the layout of ``bench eval``::

    <experiment>/mfcc-baseline/seed0/config.toml         loss.name = "mfcc-baseline", backbone "none"
    <experiment>/mfcc-baseline/seed0/eval/<name>/        metrics.json (same schema, same trial sha256)
                                                         and scores.txt

so the report shows it in the same table, on the same trials, as the trained models (with
intervals and paired tests), e.g. beside ``aam (synthetic -> real)``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from bench.data.trials import Trials
from bench.results import CONFIG_FILE, EVAL_DIR, METRICS_FILE, NON_LEARNED, SCORES_FILE

BASELINE_LOSS = "mfcc-baseline"
TRAIN_CORPUS = NON_LEARNED


def _trial_cells(corpus: Path) -> tuple[Trials, list[str]]:
    """The corpus' trial list (its reader records the file's sha256) and the cell of each trial."""
    from bench.data.corpus import cnceleb_genre
    from bench.data.trials import read_trials

    t = read_trials(corpus / "eval" / "lists" / "trials.lst")
    return t, [cnceleb_genre(Path(u).name) for u in t.test]


def baseline_per_cell(corpus: str | Path) -> dict:
    """Baseline EER (%) on all trials and per cell (the genre field of the test utterance)."""
    from bench.synth.baseline import eer_percent, run_baseline

    corpus = Path(corpus)
    res = run_baseline(corpus, return_scores=True)
    _, cells = _trial_cells(corpus)
    g = np.array(cells)
    per = {}
    for c in sorted(set(cells)):
        m = g == c
        lab = res["labels"][m]
        per[c] = eer_percent(res["scores"][m], lab) if lab.any() and not lab.all() else None
    return {"eer": res["eer"], "per_cell": per, "trials": res["trials"], "method": res["method"]}


def write_baseline_run(corpus: str | Path, experiment_dir: str | Path, name: str, p_targets=(0.01, 0.05)) -> Path:
    """Score ``corpus`` with the baseline into ``<experiment_dir>/mfcc-baseline/seed0/eval/<name>/``.

    ``name`` must be the evaluation-corpus name the trained runs carry on the same trials
    (``synthetic`` for their own evaluation, ``real`` for ``bench eval --name real``), so the
    report puts the baseline in their table. Returns the result folder (replaced if present).
    """
    from bench.config import to_toml
    from bench.io import atomic_write
    from bench.results import CrossCorpus, MetricsRecord, TrialsRef
    from bench.runner.evaluate import TrialScores, metrics_of, write_scores
    from bench.synth.baseline import run_baseline

    corpus = Path(corpus).resolve()
    res = run_baseline(corpus, return_scores=True)
    trials, cells = _trial_cells(corpus)
    if len(trials) != len(res["scores"]):
        raise AssertionError("baseline and trial reader disagree on the number of trials")
    ts = TrialScores(
        trials.enroll, trials.test, np.asarray(res["scores"], np.float64), np.asarray(res["labels"], bool), cells
    )
    metrics = metrics_of(ts, p_targets)
    record = MetricsRecord(
        overall=metrics["overall"],
        per_genre=metrics["per_genre"],
        trials=TrialsRef(path=trials.path, sha256=trials.sha256, n=len(ts.scores)),
        corpus=name,
        enroll_mode="concat",
        cross=CrossCorpus(eval_corpus=name, train_corpus=TRAIN_CORPUS, eval_corpus_root=str(corpus)),
        loss=BASELINE_LOSS,
        seed=0,
        method=res["method"],
    )
    run = Path(experiment_dir) / BASELINE_LOSS / "seed0"
    cfg = {"experiment": Path(experiment_dir).name, "loss": {"name": BASELINE_LOSS}, "model": {"backbone": "none"},
           "train": {"seed": 0}, "eval": {"enroll_mode": "concat"}}  # fmt: skip
    atomic_write(run / CONFIG_FILE, to_toml(cfg))
    final = run / EVAL_DIR / name
    tmp = final.parent / f".{name}.tmp-{os.getpid()}"  # dot-prefixed: never collected half-written
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_scores(tmp / SCORES_FILE, ts)
    record.write(tmp / METRICS_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
