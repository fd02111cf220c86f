"""`bench embed` and `bench eval` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def embed() -> None:
    """Embed every utterance of a corpus with a trained run's model."""
    not_built("embed", 14)


def evaluate() -> None:
    """Embed, score and record a trained run on any corpus."""
    not_built("eval", 14)
