"""When training has reached its validation plateau: early stopping and the ``converged`` record.

A run is *converged* when its validation EER has stopped improving: the last ``patience``
validations brought no improvement larger than ``min_delta`` (absolute EER points) over the best
value seen before them. This is the usual early-stopping rule (Prechelt, "Early stopping — but
when?", 1998; Keras ``EarlyStopping(patience, min_delta)``), applied both to stop a run
(``train.early_stop = true``) and, after the fact, to label any run converged or not: a run that
spent its whole ``train.epochs`` budget while still improving is ``converged: false``, and so
is a run that never validated (nothing says it plateaued).

Under ``optim.scheduler = "plateau"`` the same rule first cuts the learning rate: a plateau
multiplies it by ``optim.gamma`` up to ``optim.max_reductions`` times, and only a plateau at the
last, lowest rate counts as converged (the rule of torch's ``ReduceLROnPlateau`` with
``threshold_mode="abs"`` and its ``patience`` one less than ours, and of SpeechBrain's
``NewBobScheduler``). Under a fixed schedule such as cosine, a run can only be judged on the
validations at the end of its schedule, where the annealing itself still lowers the EER.

The state is a handful of numbers that travel in the checkpoint (``TrainState.plateau``), so a
resumed run stops exactly where the uninterrupted one would have.

Example:
    >>> p = Plateau(patience=2, min_delta=0.5)
    >>> [p.update(e, v) for e, v in enumerate([30.0, 20.0, 19.8, 19.9], start=1)]
    [False, False, False, True]
    >>> p.best_epoch, p.best  # the plain minimum, even an improvement below min_delta
    (3, 19.8)
    >>> p.reference  # what a later EER must beat by more than min_delta
    20.0

    With one learning-rate cut allowed, the first plateau cuts the rate and the second one converges:

    >>> p = Plateau(patience=1, min_delta=0.0, max_reductions=1)
    >>> [(p.update(e, v), p.reductions) for e, v in enumerate([10.0, 10.5, 9.0, 9.2], start=1)]
    [(False, 0), (False, 1), (False, 1), (True, 1)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError


@dataclass
class Plateau:
    """Tracks the best validation EER (percent) and how many validations have passed without beating it.

    ``update(epoch, eer)`` returns True once ``patience`` validations in a row failed to improve on
    the best by more than ``min_delta`` and no learning-rate cut is left (``reductions ==
    max_reductions``); while cuts are left, such a plateau counts one more cut in ``reductions``
    and starts the count again. ``best``/``best_epoch`` follow the plain minimum (any
    improvement, even below ``min_delta``), which is what ``best.pt`` holds.
    """

    patience: int = 3
    min_delta: float = 0.0
    max_reductions: int = 0  # learning-rate cuts before a plateau counts as converged (scheduler "plateau")
    reductions: int = 0  # cuts made so far
    best: float | None = None  # lowest validation EER so far
    best_epoch: int | None = None  # 1-based epoch of ``best``
    reference: float | None = None  # the value an improvement must beat by more than min_delta
    waited: int = 0  # validations since the last improvement larger than min_delta
    validations: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise BenchError(f"train.patience must be >= 1 (validations without improvement), got {self.patience}")
        if self.min_delta < 0 or not math.isfinite(self.min_delta):
            raise BenchError(f"train.min_delta must be a finite number >= 0 (EER points), got {self.min_delta}")
        if self.max_reductions < 0:
            raise BenchError(f"optim.max_reductions must be >= 0, got {self.max_reductions}")

    def update(self, epoch: int, eer: float | None) -> bool:
        """Record the validation EER of ``epoch`` (None: no validation that epoch); True = plateau reached."""
        if eer is None or not math.isfinite(eer):
            return self.plateaued
        self.validations += 1
        if self.best is None or eer < self.best:
            self.best, self.best_epoch = float(eer), int(epoch)
        if self.reference is None or eer < self.reference - self.min_delta:
            self.reference, self.waited = float(eer), 0
        else:
            self.waited += 1
        if self.waited >= self.patience and self.reductions < self.max_reductions:
            self.reductions, self.waited = self.reductions + 1, 0
        return self.plateaued

    @property
    def plateaued(self) -> bool:
        return self.waited >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(
        cls, state: dict[str, Any] | None, patience: int, min_delta: float, max_reductions: int = 0
    ) -> Plateau:
        """A tracker with the counters of ``state`` (a checkpoint) and the settings of this run."""
        p = cls(patience=patience, min_delta=min_delta, max_reductions=max_reductions)
        for k, v in (state or {}).items():
            if k not in ("patience", "min_delta", "max_reductions") and hasattr(p, k):
                setattr(p, k, v)
        return p


def assess(val_eers: Iterable[float | None], patience: int, min_delta: float, max_reductions: int = 0) -> Plateau:
    """Replay a run's per-epoch validation EERs (None where it did not validate) through the rule."""
    p = Plateau(patience=patience, min_delta=min_delta, max_reductions=max_reductions)
    for epoch, v in enumerate(val_eers, start=1):
        p.update(epoch, v)
    return p


@dataclass
class Budget:
    """What a run consumed and whether it converged; recorded in ``run.json`` and ``metrics.json``."""

    converged: bool
    stopped_early: bool  # early stopping ended the run before train.epochs
    epochs: int  # epochs trained
    max_epochs: int  # the budget (train.epochs)
    steps: int  # optimisation steps taken (skipped NaN steps included)
    samples_seen: int  # training utterances consumed (each with data.views views)
    best_epoch: int | None
    best_val_eer: float | None
    patience: int
    min_delta: float
    lr_reductions: int = 0  # learning-rate cuts at plateaus (scheduler "plateau"; 0 otherwise)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def budget_of(
    history: list[dict[str, Any]],
    *,
    steps: int,
    samples: int,
    max_epochs: int,
    patience: int,
    min_delta: float,
    max_reductions: int = 0,
) -> Budget:
    """The :class:`Budget` of a run from its epoch history (rows with ``val_eer``) and counters."""
    p = assess([row.get("val_eer") for row in history], patience, min_delta, max_reductions)
    epochs = len(history)
    return Budget(
        converged=p.plateaued,
        stopped_early=p.plateaued and epochs < max_epochs,
        epochs=epochs,
        max_epochs=max_epochs,
        steps=steps,
        samples_seen=samples,
        best_epoch=p.best_epoch,
        best_val_eer=p.best,
        patience=patience,
        min_delta=min_delta,
        lr_reductions=p.reductions,
    )
