"""`bench data check` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def check() -> None:
    """Validate a corpus and print a summary table."""
    not_built("data check", 7)
