"""SpeakerModel = Fbank frontend + registry backbone: ``wave[B, T] (16 kHz) -> embedding[B, D]``."""

from __future__ import annotations

import torch
from torch import nn

from bench.registry import config_from_mapping
from models import BACKBONES
from models.base import Backbone
from models.config import FrontendConfig, ModelConfig
from models.frontend import Fbank


class SpeakerModel(nn.Module):
    """Frontend and backbone on one device.

    ``forward(wave[B, T] float32, lengths[B] int64 | None) -> embedding[B, embed_dim] float32``.
    With ``lengths``, samples past each length are ignored: a zero-padded batch gives, in eval mode,
    the embeddings of its utterances run one at a time. SpecAugment is applied only in train mode.
    """

    def __init__(self, frontend: Fbank, backbone: Backbone):
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.embed_dim: int = backbone.embed_dim

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats, mask = self.frontend(wave, lengths)
        emb: torch.Tensor = self.backbone(feats, mask)
        return emb.float()


def build_model(model_cfg: ModelConfig) -> SpeakerModel:
    """Build the frontend and ``model_cfg.backbone`` with ``model_cfg.params`` (checked by the registry)."""
    fcfg = model_cfg.frontend
    if not isinstance(fcfg, FrontendConfig):
        fcfg = config_from_mapping(FrontendConfig, dict(fcfg), where="model.frontend")
    frontend = Fbank(fcfg)
    backbone = BACKBONES.build(model_cfg.backbone, model_cfg.params, frontend.n_mels)
    return SpeakerModel(frontend, backbone)
