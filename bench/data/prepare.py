"""Make sure the corpus a command needs is there before any expensive work.

The embedded synthetic corpus is generated on first use (``bench run``, ``bench tune`` and
``bench demo`` work on a fresh checkout with no preparation); a real corpus that is missing stops
with a message naming the folder looked for and how to point at the real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# The synthetic preset generated when a synthetic corpus folder is missing.
EMBEDDED_PRESET = "demo"


def ensure_synthetic(root: str | Path, *, progress: Any = None, workers: int = 0) -> str:
    """Generate the embedded corpus (the ``demo`` synth preset) at ``root`` unless a finished one is there.

    Returns ``"reused"`` or ``"generated"``. ``progress(done, total)`` is called as utterances finish.
    """
    root = Path(root)
    if (root / "corpus.json").exists():
        return "reused"
    from bench.synth import generate, make_config

    generate(make_config(EMBEDDED_PRESET), root, workers=workers or os.cpu_count() or 1, progress=progress)
    return "generated"


def prepare_corpus(data: Any, *, quiet: bool = False) -> str:
    """Check or create the corpus of a ``DataConfig`` before training; returns what was done.

    ``synthetic``: generated with a progress bar on stderr when missing. Any other kind: a missing
    root is a :class:`BenchError` naming the folder and the ``--corpus KIND:DIR`` form.
    """
    root = Path(data.root)
    if data.corpus == "synthetic":
        if (root / "corpus.json").exists():
            return "reused"
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(stderr=True, markup=False)
            console.print(f"{root}: no synthetic corpus here yet; generating the embedded one", highlight=False)
            with Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console, transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task(f"generating {root}", total=None)
                return ensure_synthetic(root, progress=lambda done, total: bar.update(task, completed=done, total=total))
        return ensure_synthetic(root)
    if not root.exists():
        raise BenchError(
            f"{data.corpus} corpus folder not found (looked for {root}); point to it with "
            f"--corpus {data.corpus}:DIR or --set data.root=DIR"
        )
    return "exists"
