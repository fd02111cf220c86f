"""`bench tune` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def tune() -> None:
    """Optuna search over margin, temperature, scale and loss weights."""
    not_built("tune", 11)
