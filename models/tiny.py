"""``tiny``: a narrow ECAPA-TDNN (C=128, about 0.5 M parameters) for the demo and the tests.

Same layers as :mod:`models.ecapa` with small widths, so the demo exercises the real code path
while a training step stays well under a second on one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import BACKBONES
from models.ecapa import ECAPA, ECAPAConfig


@dataclass
class TinyConfig(ECAPAConfig):
    """ECAPA widths scaled down for CPU demos."""

    channels: int = 128
    embed_dim: int = 128
    attention_channels: int = 64
    scale: int = 4
    se_channels: int = 32
    mfa_channels: int = 384


@BACKBONES.register("tiny", TinyConfig, "narrow ECAPA-TDNN (C=128) for demos and tests on CPU")
class Tiny(ECAPA):
    """ECAPA-TDNN with TinyConfig defaults. ``forward(feats[B, F, T], mask) -> [B, embed_dim]``."""
