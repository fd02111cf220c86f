"""The one call shape shared by every loss: ``loss(embeddings[B, V, D], labels[B]) -> LossOutput``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LossOutput:
    """Result of a loss call.

    ``loss`` is the scalar to back-propagate; ``parts`` holds detached named components (e.g.
    ``{"supcon": ..., "aam": ...}``) for logging; ``accuracy`` is the classifier's top-1 accuracy
    in [0, 1] for losses with a classifier (for the prototypical losses: the queries' nearest
    prototype), else None.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    accuracy: torch.Tensor | None = None


class SpeakerLoss(nn.Module):
    """Base class of registry losses.

    Subclasses are built as ``cls(config, embed_dim, num_classes)`` and implement
    ``forward(embeddings[B, V, D], labels[B] int64) -> LossOutput``; V is the number of views
    (1 for plain single-view training).
    """

    #: whether the loss needs more than one view or more than one utterance per speaker
    needs_positives: bool = False
    #: False when the loss depends on the order of a speaker's rows in the batch (the prototypical
    #: losses take each speaker's first row as its query); reordering speakers never matters
    row_order_invariant: bool = True

    def set_margin_factor(self, factor: float) -> None:
        """Multiply every margin of the loss by ``factor`` in [0, 1] (margin warm-up). No-op here.

        The factor is the schedule's progress, not the logit scale ``s`` some losses also have.
        """

    def set_margin_scale(self, factor: float) -> None:
        """Former name of :meth:`set_margin_factor`, kept for callers written against it."""
        self.set_margin_factor(factor)
