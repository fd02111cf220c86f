"""`bench data synth` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def synth() -> None:
    """Generate the embedded synthetic corpus in the CN-Celeb layout."""
    not_built("data synth", 4)
