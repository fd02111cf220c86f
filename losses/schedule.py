"""Margin schedule: the margins of a loss grow from 0 to their configured values.

The schedule is a factor f in [0, 1] applied with ``loss.set_margin_factor(f)`` (every margin of
the loss is multiplied by f). With p the fractional number of epochs done, ``start`` the epoch at
which the margin starts to grow and ``W`` the warm-up length in epochs, ``r = (p - start) / W``::

    f = 0                                  for p < start
    f = r                                  linear shape,       start <= p < start + W
    f = 1 - exp(r * ln(1e-3 / (1 + 1e-6)))  exponential shape,  start <= p < start + W
    f = 1                                  for p >= start + W

The exponential shape is the one of WeSpeaker's ``MarginScheduler`` (``increase_type="exp"``: fast
growth first, ~0.999 of the margin at the end of the warm-up); its ``increase_start_epoch`` (1-based)
is ``start + 1`` here and its ``fix_start_epoch`` is ``start + W + 1``. ``W = 0`` with ``start = 0``
means full margins from the first step; ``W = 0`` with ``start > 0`` switches the margins on at
``start``.

Example:
    >>> from losses import LOSSES
    >>> loss = LOSSES.build("aam", {"margin": 0.2}, 8, 4)
    >>> sched = MarginScheduler(loss, warmup_epochs=2)
    >>> round(loss.margin, 3)
    0.0
    >>> sched.step(0.5); round(loss.margin, 3)
    0.05
    >>> sched.step(3.0); round(loss.margin, 3)
    0.2
    >>> sched = MarginScheduler(loss, warmup_epochs=2, start_epoch=1, shape="exp")
    >>> sched.step(1.0); round(loss.margin, 3)
    0.0
    >>> sched.step(2.0); round(loss.margin, 4)  # half-way: 1 - 1e-3 ** 0.5 of the margin
    0.1937
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.errors import BenchError
from losses.base import SpeakerLoss

# WeSpeaker's exponential increase: 1 - exp(r * log(final / (initial + 1e-6))) with initial 1, final 1e-3
_EXP_LOG = math.log(1e-3 / (1.0 + 1e-6))

#: warm-up shape name -> r in [0, 1) -> factor in [0, 1)
SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda r: r,
    "exp": lambda r: 1.0 - math.exp(r * _EXP_LOG),
}


class MarginScheduler:
    """Sets ``loss.set_margin_factor(f(progress))`` for the schedule of the module docstring.

    ``progress`` is the fractional number of epochs done (``epoch + batch / batches_per_epoch``), so
    the schedule can be stepped per batch. Losses without a margin ignore the factor, so the
    scheduler can wrap any registry loss. Raises BenchError for a negative length or start, or an
    unknown shape.
    """

    def __init__(self, loss: SpeakerLoss, warmup_epochs: float, start_epoch: float = 0.0, shape: str = "linear"):
        if not warmup_epochs >= 0:
            raise BenchError(f"loss.margin_warmup_epochs must be >= 0, got {warmup_epochs}")
        if not start_epoch >= 0:
            raise BenchError(f"loss.margin_start_epoch must be >= 0, got {start_epoch}")
        if shape not in SHAPES:
            raise BenchError(f"loss.margin_shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        self.loss = loss
        self.warmup_epochs = float(warmup_epochs)
        self.start_epoch = float(start_epoch)
        self.shape = shape
        self.progress = 0.0
        self.margin_factor = 1.0
        self.step(0.0)

    def factor_at(self, epoch_progress: float) -> float:
        """The margin factor at ``epoch_progress`` epochs, in [0, 1]."""
        p = epoch_progress - self.start_epoch
        if p < 0:
            return 0.0
        if p >= self.warmup_epochs:
            return 1.0
        return SHAPES[self.shape](p / self.warmup_epochs)

    def step(self, epoch_progress: float) -> None:
        """Apply the factor for ``epoch_progress`` (fractional epochs done) to the loss."""
        self.progress = float(epoch_progress)
        self.margin_factor = self.factor_at(self.progress)
        self.loss.set_margin_factor(self.margin_factor)

    def state_dict(self) -> dict[str, Any]:
        return {
            "warmup_epochs": self.warmup_epochs,
            "start_epoch": self.start_epoch,
            "shape": self.shape,
            "progress": self.progress,
            "factor": self.margin_factor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore progress and re-apply the factor to the loss; the schedule keeps its configured form.

        Checkpoints written before the schedule had a start and a shape (keys ``warmup_epochs``,
        ``progress``, ``scale``) load the same way: only ``progress`` is read.
        """
        self.step(float(state["progress"]))
