"""Typed options of a tuning study (``bench tune``), separate from the experiment config it trains."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PRUNERS = ("median", "hyperband", "none")
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

    def study_name(self, experiment: str) -> str:
        return self.study or f"{experiment}-{self.loss}"

    def study_dir(self, experiment: str) -> Path:
        """Folder of the study's trial run directories, summary and plots."""
        return Path(self.out) / f"{experiment}-tune-{self.study_name(experiment)}"
