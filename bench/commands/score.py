"""`bench score` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def score() -> None:
    """Score trials from a score or embedding file: EER, minDCF, actDCF, Cllr."""
    not_built("score", 9)
