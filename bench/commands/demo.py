"""`bench demo` (not built yet)."""

from __future__ import annotations

from bench.commands.common import not_built


def demo() -> None:
    """Generate the demo corpus, train four losses, score and write the report."""
    not_built("demo", 12)
