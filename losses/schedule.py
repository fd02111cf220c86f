"""Margin warm-up: the margins of a loss grow linearly from 0 to their configured values.

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
"""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError
from losses.base import SpeakerLoss


class MarginScheduler:
    """Sets ``loss.set_margin_scale(min(1, progress / warmup_epochs))``.

    ``progress`` is the fractional number of epochs done (``epoch + batch / batches_per_epoch``), so
    the warm-up can be stepped per batch. ``warmup_epochs = 0`` means full margins from the start.
    Losses without a margin ignore the scale, so the scheduler can wrap any registry loss.
    """

    def __init__(self, loss: SpeakerLoss, warmup_epochs: float):
        if not warmup_epochs >= 0:
            raise BenchError(f"loss.margin_warmup_epochs must be >= 0, got {warmup_epochs}")
        self.loss = loss
        self.warmup_epochs = float(warmup_epochs)
        self.progress = 0.0
        self.scale = 1.0
        self.step(0.0)

    def factor(self, epoch_progress: float) -> float:
        """The margin scale at ``epoch_progress`` epochs, in [0, 1]."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, max(0.0, epoch_progress / self.warmup_epochs))

    def step(self, epoch_progress: float) -> None:
        """Apply the scale for ``epoch_progress`` (fractional epochs done) to the loss."""
        self.progress = float(epoch_progress)
        self.scale = self.factor(self.progress)
        self.loss.set_margin_scale(self.scale)

    def state_dict(self) -> dict[str, Any]:
        return {"warmup_epochs": self.warmup_epochs, "progress": self.progress, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore progress (and re-apply the scale to the loss); warmup_epochs keeps its configured value."""
        self.step(float(state["progress"]))
