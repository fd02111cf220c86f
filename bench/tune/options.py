"""Typed options of a tuning study (``bench tune``), separate from the experiment config it trains."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Metric:
    """A validation metric a study minimises: its key in the train loop's epoch rows and its label."""

    key: str  # column of epochs.csv (bench.runner.train.EPOCH_COLUMNS)
    name: str  # "EER": printed as "val EER 12.34%"
    text: str  # what it is, for the summary
    digits: int  # decimals shown
    unit: str = ""

    @property
    def label(self) -> str:
        return f"val {self.name}"

    @property
    def axis(self) -> str:
        """Axis and table heading: ``val EER %``."""
        return f"{self.label} {self.unit}".strip()

    def show(self, value: float) -> str:
        """``value`` as printed after the label: ``12.34%``, ``0.812``."""
        return f"{value:.{self.digits}f}{self.unit}"


def metric_of(name: str | None) -> Metric:
    """The objective of a study stored with ``name`` (studies from before ``--objective``: the EER)."""
    return OBJECTIVES[name or "eer"]


#: ``--objective`` name -> the validation metric of held-out training speakers a study minimises.
#: minDCF is taken at the first ``eval.p_targets`` (0.01 by default): EER-tuned margins and scales
#: need not suit the low-false-alarm end that minDCF(0.01) measures.
OBJECTIVES = {
    "eer": Metric("val_eer", "EER", "validation EER %", 2, "%"),
    "mindcf": Metric("val_mindcf", "minDCF", "validation minDCF at eval.p_targets[0]", 3),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class TuneConfig:
    """How a study searches; the trained models are described by the ``ExperimentConfig``.

    ``trials`` is the study's total of finished (complete or pruned) trials, shared by all
    workers of the study, not a per-process count.
    """

    loss: str = "aamsupcon"
    params: list[str] = field(default_factory=list)  # --param NAME=SPEC strings (bench.tune.space)
    trials: int = 20
    study: str = ""  # default: <experiment>-<loss>
    storage: str = ""  # default: sqlite:///<out>/tune/<study>.db
    pruner: str = "median"  # median | hyperband | none
    objective: str = "eer"  # eer | mindcf (OBJECTIVES)
    seed: int = 0  # sampler seed; the training seed stays train.seed for every trial
    out: str = "runs"
    #: random (TPE start-up) trials before the model-based search, and trials before median pruning
    startup_trials: int = 5
    warmup_epochs: int = 0  # epochs never pruned (median pruner)
    keep_checkpoints: bool = False  # trial checkpoints are deleted when a trial ends unless set
    heartbeat_seconds: int = 30  # RDB storages: a RUNNING trial with no heartbeat for grace_seconds ...
    grace_seconds: int = 120  # ... belongs to a dead worker and is marked FAIL
    poll_seconds: float = 5.0  # how often a worker with nothing to start checks the others' trials

    def validate(self) -> None:
        """Every option's range (``tune.*`` in bench/config_checks.py), before any study or data is opened."""
        from bench.config_checks import check_tune

        check_tune(self)

    @property
    def metric(self) -> Metric:
        return metric_of(self.objective)

    def study_name(self, experiment: str) -> str:
        return self.study or f"{experiment}-{self.loss}"

    def study_dir(self, experiment: str) -> Path:
        """Folder of the study's trial run directories, summary and plots."""
        return Path(self.out) / f"{experiment}-tune-{self.study_name(experiment)}"
