"""The real-voice step of ``bench demo``: score each finished run on the real corpus, plus the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError

REAL_NAME = "real"


def score_on_real(outcomes: list[Any], real: Path, synth: Path, experiment_dir: Path, force: bool = False) -> dict:
    """``bench eval RUN --corpus real --name real`` for every finished run, and the MFCC baseline on
    the real and the synthetic trials (``mfcc-baseline`` system). Never raises for a missing or
    broken real corpus: the reason goes into ``notes`` and the demo goes on.

    A run scored before is scored again only when it was (re)trained now or ``force`` is given.
    """
    from bench.crosseval import EVAL_DIR, evaluate_run
    from bench.realvoices.baseline import BASELINE_LOSS, write_baseline_run
    from bench.results import METRICS_FILE

    info: dict[str, Any] = {"corpus": str(real), "scored": [], "reused": [], "notes": []}
    if not (Path(real) / "corpus.json").is_file():
        info["notes"].append(f"no real-voice corpus at {real}; build it with `bench data real --out {real}` "
                             "to see how the models transfer to real voices")  # fmt: skip
        return info
    for o in outcomes:
        done = Path(o.run_dir) / EVAL_DIR / REAL_NAME / METRICS_FILE
        if done.exists() and not force and o.action == "skipped":
            info["reused"].append(o.loss)
            continue
        try:
            res = evaluate_run(o.run_dir, real, corpus_type="cnceleb", name=REAL_NAME, force=True)
        except BenchError as e:
            info["notes"].append(f"{o.loss}: not scored on real voices ({e})")
            continue
        info["scored"].append(o.loss)
        info.setdefault("eer", {})[o.loss] = res.metrics.overall["eer"]
    base = Path(experiment_dir) / BASELINE_LOSS / "seed0" / EVAL_DIR
    for corpus, name in ((real, REAL_NAME), (synth, "synthetic")):
        if (base / name / METRICS_FILE).exists() and not info["scored"] and not force:
            continue
        try:
            write_baseline_run(corpus, experiment_dir, name)
        except (BenchError, OSError) as e:
            info["notes"].append(f"baseline on {name} not scored ({e})")
    return info
