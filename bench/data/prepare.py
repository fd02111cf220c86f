"""Make sure the corpus a command needs is there before any expensive work.

The embedded synthetic corpus is generated on first use (``bench run``, ``bench tune`` and
``bench demo`` work on a fresh checkout with no preparation); a real corpus that is missing stops
with a message naming the folder looked for and how to point at the real one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class DemoPreset:
    """One size of the demo: its training config, its synthetic corpus and where results go."""

    config: str  # bench/presets/<config>.toml
    synth: str  # bench.synth preset the corpus is scaled from
    speakers: int  # training speakers (validation/evaluation speakers and banks scale with them)
    data: Path
    report: Path
    minutes: int  # wall-time target on 2 CPU cores, all losses x seeds, corpus and report included
    summary: str  # the corpus size; the step budget comes from the config (bench demo adds it)
    losses: tuple[str, ...]  # what `bench demo --preset <name>` compares unless --losses says otherwise


DEMO_PRESETS = {
    # Ten minutes on 2 cores hold 6 runs trained to their plateau (450-850 steps each, measured 2026-12-07), not 12: the
    # short demo answers the project's question (does SupCon on top of AAM help?) and the hour-long
    # one adds the two single-objective ablations.
    "demo": DemoPreset("demo", "demo", 100, Path("data/synth-demo100"), Path("reports/out/demo"), 10,
                       "100 training speakers", ("aam", "aamsupcon")),
    "cpu": DemoPreset("demo-cpu", "full", 300, Path("data/synth-cpu300"), Path("reports/out/demo-cpu"), 60,
                      "300 training speakers", ("softmax", "aam", "supcon", "aamsupcon")),
}  # fmt: skip


def corpus_config(preset: str = "demo") -> Any:
    """The :class:`bench.synth.SynthConfig` of a demo preset's corpus."""
    from bench.synth import make_config

    p = DEMO_PRESETS[preset]
    return make_config(p.synth, speakers=p.speakers)


def preset_for(root: str | Path) -> str:
    """The demo preset whose corpus folder is ``root`` (``demo``, the embedded default, otherwise)."""
    for name, p in DEMO_PRESETS.items():
        if Path(root) == p.data:
            return name
    return "demo"


def ensure_synthetic(
    root: str | Path,
    *,
    progress: Any = None,
    workers: int = 0,
    preset: str | None = None,
    check_size: bool = False,
) -> str:
    """Generate the corpus of demo ``preset`` (default: :func:`preset_for` ``root``) at ``root``
    unless a finished corpus (``corpus.json``) is there; returns ``"reused"`` or ``"generated"``.

    With ``check_size`` (the preset's own folder) a corpus with another number of training speakers
    is refused by name (its manifest records it), so a stale corpus is never silently reused.
    ``progress(done, total)`` is called as utterances finish.
    """
    root = Path(root)
    preset = preset or preset_for(root)
    manifest = root / "corpus.json"
    if manifest.exists() and check_size:
        from bench.synth.corpus import manifest_params, read_manifest

        params = (read_manifest(root) or {}).get("params")
        want = manifest_params(corpus_config(preset))
        if params and params.get("train_speakers") != want["train_speakers"]:
            raise BenchError(
                f"this corpus has {params.get('train_speakers')} training speakers, the '{preset}' demo uses "
                f"{want['train_speakers']}; delete the folder or pass --data for a new one",
                path=manifest,
            )
    if manifest.exists():
        return "reused"
    from bench.synth import generate

    generate(corpus_config(preset), root, workers=workers or os.cpu_count() or 1, progress=progress)
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
        if (root / "data").is_dir() and not (root / ".synth-params.json").exists():
            return "exists"  # a corpus in the synthetic layout made elsewhere (no manifest): used as it is
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(stderr=True, markup=False)
            console.print(  # soft_wrap: one line in a log file, whatever the path's length
                f"{root}: no synthetic corpus here yet; generating the embedded one", highlight=False, soft_wrap=True
            )
            with Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console, transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task(f"generating {root}", total=None)
                return ensure_synthetic(
                    root, progress=lambda done, total: bar.update(task, completed=done, total=total)
                )
        return ensure_synthetic(root)
    if not root.exists():
        raise BenchError(
            f"{data.corpus} corpus folder not found (looked for {root}); point to it with "
            f"--corpus {data.corpus}:DIR or --set data.root=DIR"
        )
    return "exists"
