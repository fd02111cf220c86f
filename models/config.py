"""Configuration of a speaker model: the feature frontend and the backbone choice.

These dataclasses belong to ``models/``; the experiment config (``bench.config``) holds a
``ModelConfig`` as its ``model`` section. Nothing here imports the experiment config, so the models
can be built and tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FrontendConfig:
    """Log-mel filterbank computed on the training device."""

    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    mean_norm: bool = True
    specaug: bool = True
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks: int = 2
    time_mask_width: int = 10


@dataclass
class ModelConfig:
    backbone: str = "tiny"
    params: dict[str, Any] = field(default_factory=dict)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
