"""Backbone registry: each entry maps a name to (backbone class, config dataclass).

``build_model(ModelConfig)`` assembles the fbank frontend and a registry backbone into a
``SpeakerModel`` mapping ``wave[B, T]`` at 16 kHz to ``embedding[B, D]``.
"""

from bench.registry import Registry

BACKBONES = Registry("backbone")

# Importing the backbone modules registers their entries.
from models import ecapa, resnet, tiny  # noqa: E402,F401
from models.model import SpeakerModel, build_model  # noqa: E402

__all__ = ["BACKBONES", "SpeakerModel", "build_model"]
