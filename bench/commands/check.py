"""`bench data check PATH`: validate a corpus and print a summary table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from bench.commands.common import console, err_console, handle_errors, print_json


@handle_errors
def check(
    path: Annotated[str, typer.Argument(help="Corpus folder (layout detected) or KIND:FOLDER.")],
    corpus: Annotated[
        Optional[str],
        typer.Option(
            "--corpus",
            help="Reader: cnceleb | cnceleb2 | cnceleb12 | voxceleb | kaldi | synthetic (default: detected).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Decode every file, not only headers (slow).")] = False,
    sample_rate: Annotated[int, typer.Option("--sample-rate", help="Expected sample rate.")] = 16000,
    eval_root: Annotated[str, typer.Option("--eval-root", help="Evaluation corpus root (default: PATH).")] = "",
    trials: Annotated[str, typer.Option("--trials", help="Trial list (default: the corpus' own).")] = "",
    val_speakers: Annotated[int, typer.Option("--val-speakers", help="Held-out validation speakers.")] = 0,
) -> None:
    """Validate a corpus (missing files, unreadable audio, sample rate, durations); exit 1 on problems."""
    from bench.config import DataConfig
    from bench.data.check import check_corpus
    from bench.data.layout import resolve

    choice = resolve(path, corpus)
    if choice.note:
        err_console.print(choice.note, highlight=False, markup=False, soft_wrap=True)
    cfg = DataConfig(
        corpus=choice.kind,
        root=str(choice.root),
        eval_root=eval_root,
        trials=trials,
        sample_rate=sample_rate,
        val_speakers=val_speakers,
    )
    report = check_corpus(cfg, deep=deep)
    if json_out:
        print_json(report.to_dict())
    else:
        _print(report)
    if report.problems:
        raise typer.Exit(1)


def _print(report) -> None:
    from rich.table import Table

    t = Table(title=f"{report.corpus} corpus at {report.root}")
    for col in ("split", "speakers", "utterances", "hours"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for split, d in report.splits.items():
        t.add_row(split, f"{d['speakers']:,}", f"{d['utterances']:,}", f"{d['hours']:.2f}")
    console.print(t)
    if report.genres:
        g = Table(title="per genre")
        for col in ("genre", "train utts", "train hours", "test utts", "test hours"):
            g.add_column(col, justify="left" if col == "genre" else "right")
        for genre, d in report.genres.items():
            g.add_row(
                genre,
                f"{d['train_utts']:,}",
                f"{d['train_hours']:.2f}",
                f"{d['test_utts']:,}",
                f"{d['test_hours']:.2f}",
            )
        console.print(g)
    for kind, d in report.trials.items():
        console.print(
            f"{kind} trials: {d['trials']:,} ({d['target']:,} target, {d['nontarget']:,} non-target)", highlight=False
        )
    if report.durations:
        d = report.durations
        console.print(
            f"training durations: min {d['min']:.2f} s, median {d['median']:.2f} s, max {d['max']:.2f} s",
            highlight=False,
        )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    if report.problems:
        err_console.print(Text(f"{len(report.problems)} problem(s):", style="bold red"))
        for p in report.problems:
            err_console.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(Text("no problems found", style="green"))
