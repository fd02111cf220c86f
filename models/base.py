"""Base class of registry backbones: ``forward(feats[B, F, T], mask[B, T] bool | None) -> [B, D]``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """A backbone is built as ``cls(config, in_features)`` and exposes ``embed_dim``.

    ``mask`` marks valid frames (True) of a padded batch; None means every frame is valid.
    """

    embed_dim: int

    @classmethod
    def count_parameters(cls, cfg: Any, in_features: int = 80) -> int:
        """Number of trainable parameters for ``cfg``; built on the meta device, so no memory or time."""
        with torch.device("meta"):
            module = cls(cfg, in_features)
        return sum(p.numel() for p in module.parameters() if p.requires_grad)
