"""Loss registry: each entry maps a name to (loss class, config dataclass).

Every loss is called as ``loss(embeddings[B, V, D], labels[B]) -> LossOutput``. Families (one
module each, ``bench list losses`` shows them with their papers): classification margins
(``classification``, ``subcenter``, ``sphere``), contrastive (``contrastive``), prototypical
(``prototypical``) and pair-based metric learning (``pair``).
"""

from bench.registry import Registry

LOSSES = Registry("loss")

# Importing the family modules registers their entries.
from losses import classification, contrastive, pair, prototypical, sphere, subcenter  # noqa: E402,F401
from losses.base import LossOutput, SpeakerLoss  # noqa: E402

__all__ = ["LOSSES", "LossOutput", "SpeakerLoss"]
