"""`bench report` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def report() -> None:
    """Build comparison tables, paired tests and DET curves from run directories."""
    not_built("report", 10)
