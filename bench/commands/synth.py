"""`bench data synth`: generate the embedded synthetic speaker corpus in the CN-Celeb1 layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from bench.commands.common import at_least, console, err_console, handle_errors, print_json


@handle_errors
def synth(
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Preset: demo (< 1 min on 2 cores), full (>= 1,000 training speakers) or transfer (demo-sized, more speakers, many languages, telephone codecs, prosody, glottal sources).",
        ),
    ] = "demo",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: data/synth-<preset>).")] = None,
    speakers: Annotated[
        Optional[int],
        typer.Option(
            "--speakers",
            callback=at_least(2),
            help="Training speakers, >= 2 (validation and evaluation speakers scale with it).",
        ),
    ] = None,
    utts: Annotated[
        Optional[int],
        typer.Option("--utts", callback=at_least(2), help="Utterances per training/validation speaker, >= 2."),
    ] = None,
    min_seconds: Annotated[Optional[float], typer.Option("--min-seconds", help="Shortest utterance, seconds.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Longest utterance, seconds.")] = None,
    seed: Annotated[
        Optional[int],
        typer.Option("--seed", callback=at_least(0), help="Random seed, >= 0; the same seed gives identical files."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", callback=at_least(0), help="Worker processes (default: CPU count).")
    ] = 0,
    check: Annotated[
        bool, typer.Option("--check", help="Score the eval trials with a non-learned MFCC baseline and print its EER.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest (and check result) as JSON.")] = False,
) -> None:
    """Generate the synthetic corpus: eSpeak NG voices, CN-Celeb-like genres, MUSAN/RIR banks, trial lists.

    Re-running on a complete corpus with the same options does nothing; an interrupted run resumes.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bench.synth import generate, make_config, run_baseline

    cfg = make_config(preset, speakers=speakers, utts=utts, min_seconds=min_seconds, max_seconds=max_seconds, seed=seed)
    out = out or Path("data") / f"synth-{cfg.preset}"
    n_workers = workers or os.cpu_count() or 1
    # With --json the bar goes to stderr so stdout stays machine-readable.
    bar_console = err_console if json_out else console
    columns = (
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=bar_console, transient=json_out) as progress:
        task = progress.add_task(f"synthesising {out}", total=None)
        manifest = generate(
            cfg, out, workers=n_workers, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    result = {"out": str(out), **manifest}
    if check:
        with Progress(*columns, console=bar_console, transient=json_out) as progress:
            task = progress.add_task("baseline embeddings", total=None)
            result["check"] = run_baseline(
                out, progress=lambda done, total: progress.update(task, completed=done, total=total)
            )
    if json_out:
        print_json(result)
        return
    _print(result)


def _print(result: dict) -> None:
    from rich.table import Table

    c = result["counts"]
    state = (
        "already complete, nothing to do"
        if result.get("reused")
        else f"generated in {result['generation_seconds']:.1f} s"
    )
    console.print(
        Text.assemble((str(result["out"]), "bold"), f": preset {result['preset']}, seed {result['seed']} ({state})"),
        highlight=False,
    )
    t = Table(show_header=True)
    t.add_column("part")
    t.add_column("speakers", justify="right")
    t.add_column("files", justify="right")
    t.add_row("train (dev/dev.lst)", f"{c['train']:,}", f"{c['train_utts']:,}")
    t.add_row("validation (dev/val_trials.lst)", f"{c['val']:,}", f"{c['val_utts']:,}")
    t.add_row("eval enrolment", f"{c['eval']:,}", f"{c['eval']:,} (+{c['enroll_utts']:,} parts)")
    t.add_row("eval test", f"{c['eval']:,}", f"{c['test_utts']:,}")
    t.add_row("musan noise / music / speech", "", f"{c['musan_noise']} / {c['musan_music']} / {c['musan_speech']}")
    t.add_row("simulated RIRs", "", f"{c['rirs']:,}")
    console.print(t)
    console.print(
        f"trials: {c['trials']:,} ({c['target_trials']:,} target); validation trials: {c['val_trials']:,}",
        highlight=False,
    )
    if "check" in result:
        ch = result["check"]
        console.print(
            Text.assemble(
                f"baseline ({ch['method']}): EER ", (f"{ch['eer']:.2f} %", "bold"), f" on {ch['trials']:,} trials"
            ),
            highlight=False,
        )
