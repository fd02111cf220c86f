"""Classification losses: plain softmax (margin variants are added beside it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from losses import LOSSES
from losses.base import LossOutput, SpeakerLoss


def flatten_views(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, V, D], [B] -> [B*V, D], [B*V] with each view keeping its utterance's label."""
    b, v, d = embeddings.shape
    return embeddings.reshape(b * v, d), labels.repeat_interleave(v)


@dataclass
class SoftmaxConfig:
    bias: bool = True


@LOSSES.register("softmax", SoftmaxConfig, "linear classifier + cross-entropy over all views")
class SoftmaxLoss(SpeakerLoss):
    def __init__(self, cfg: SoftmaxConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.fc = nn.Linear(embed_dim, num_classes, bias=cfg.bias)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        x, y = flatten_views(embeddings, labels)
        logits = self.fc(x.float())
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean().detach()
        return LossOutput(loss, {"ce": loss.detach()}, acc)
