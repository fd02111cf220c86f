"""`bench embed` and `bench eval`: use a trained run's model on any corpus (logic in :mod:`bench.crosseval`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bench.commands.common import console, err_console, handle_errors, print_json

RunArg = Annotated[Path, typer.Argument(help="Run directory (runs/<experiment>/<loss>/seed<k>).", show_default=False)]
CorpusType = Annotated[
    Optional[str],
    typer.Option("--corpus-type", help="Corpus layout, same as --corpus KIND:FOLDER (default: detected)."),
]
Checkpoint = Annotated[
    Optional[str],
    typer.Option(
        "--checkpoint", help="best | last | a checkpoint file (default: the one the run scored, else best, else last)."
    ),
]
Crops = Annotated[
    Optional[int], typer.Option("--crops", help="0: full utterances; N: mean of N crops (default: the run's).")
]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
Workers = Annotated[
    Optional[int], typer.Option("--workers", help="Audio decoding processes (default: the run's on GPU, 0 on CPU).")
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing result.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON; no progress bars.")]


@contextlib.contextmanager
def _bars(enabled: bool) -> Iterator[Any]:
    """A progress factory for :mod:`bench.crosseval` drawing Rich bars on stderr (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, markup=False),
    ) as progress:

        def factory(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda n: progress.update(task, advance=n)

        yield factory


def _check_type(corpus_type: str | None) -> None:
    from bench.data.layout import check_kind

    if corpus_type is not None:
        check_kind(corpus_type)


def _notes(notes: list[str]) -> None:
    for note in notes:
        err_console.print(note, highlight=False, markup=False, soft_wrap=True)


@handle_errors
def embed(
    run_dir: RunArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Embedding file to write: .npz, .npy (+ .ids.txt), Kaldi .ark or .scp."),
    ],
    corpus: Annotated[
        Optional[str],
        typer.Option(
            "--corpus", help="Corpus folder (layout detected) or KIND:FOLDER: its enrolment + test utterances."
        ),
    ] = None,
    corpus_type: CorpusType = None,
    list_file: Annotated[
        Optional[Path],
        typer.Option(
            "--list", help="Embed these utterances instead: lines 'path' or 'id path' (relative to --corpus)."
        ),
    ] = None,
    checkpoint: Checkpoint = None,
    crops: Crops = None,
    device: Device = "auto",
    workers: Workers = None,
    force: Force = False,
    as_json: JsonOut = False,
) -> None:
    """Embed every evaluation utterance of a corpus (or of a list) with a trained run's model.

    The .npz file (ids + float32 unit-norm embeddings) is what 'bench score --embeddings' reads.
    """
    from bench import crosseval

    _check_type(corpus_type)
    with _bars(not as_json) as bars:
        res = crosseval.embed_to_file(
            run_dir,
            out,
            corpus_root=corpus,
            corpus_type=corpus_type,
            list_file=list_file,
            checkpoint=checkpoint,
            crops=crops,
            device=device,
            workers=workers,
            force=force,
            progress=bars,
        )
    _notes([res.note] if res.note else [])
    info = {
        "out": str(res.out),
        "utterances": res.n,
        "dim": res.dim,
        "checkpoint": res.checkpoint,
        "source": res.corpus,
        "device": res.device,
        "seconds": round(res.seconds, 3),
    }
    if as_json:
        print_json(info)
    else:
        console.print(
            f"wrote {res.n} embeddings ({res.dim}-dim, checkpoint {res.checkpoint}, {res.device}) to {res.out}",
            highlight=False,
        )


@handle_errors
def evaluate(
    run_dir: RunArg,
    corpus: Annotated[
        str, typer.Option("--corpus", help="Corpus folder to evaluate on (layout detected) or KIND:FOLDER.")
    ],
    corpus_type: CorpusType = None,
    trials: Annotated[Optional[Path], typer.Option("--trials", help="Trial list (default: the corpus' own).")] = None,
    enroll_mode: Annotated[
        Optional[str], typer.Option("--enroll-mode", help="concat | mean (default: the run's).")
    ] = None,
    asnorm: Annotated[
        Optional[bool],
        typer.Option("--asnorm/--no-asnorm", help="AS-norm with a cohort from the corpus' training side."),
    ] = None,
    label_style: Annotated[
        Optional[str],
        typer.Option("--label-style", help="Labels in scores.txt: binary (1/0) | target (default: the run's)."),
    ] = None,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Result folder name under <run>/eval/ (default: the corpus type).")
    ] = None,
    checkpoint: Checkpoint = None,
    crops: Crops = None,
    device: Device = "auto",
    workers: Workers = None,
    force: Force = False,
    as_json: JsonOut = False,
) -> None:
    """Embed, score and record a finished run on another corpus in <run>/eval/<name>/.

    'bench report' compares these results like any other, labelled 'train corpus -> eval corpus'.
    """
    from bench import crosseval

    _check_type(corpus_type)
    with _bars(not as_json) as bars:
        res = crosseval.evaluate_run(
            run_dir,
            corpus,
            corpus_type=corpus_type,
            trials=trials,
            enroll_mode=enroll_mode,
            asnorm=asnorm,
            label_style=label_style,
            name=name,
            checkpoint=checkpoint,
            crops=crops,
            device=device,
            workers=workers,
            force=force,
            progress=bars,
        )
    _notes(res.notes)
    m = res.metrics.to_json()
    if as_json:
        print_json({"eval_dir": str(res.eval_dir), "replaced": res.replaced, "seconds": round(res.seconds, 3), **m})
        return
    _table(res)


def _table(res: Any) -> None:
    from rich.table import Table

    m = res.metrics.to_json()

    def fmt(v: Any, f: str) -> str:
        return "" if v is None else format(v, f)

    t = Table(title=f"{m['train_corpus']} -> {m['eval_corpus']}  ({res.eval_dir})")
    for col in ("genre", "EER %", "minDCF 0.01", "target", "non-target"):
        t.add_column(col, justify="left" if col == "genre" else "right")
    rows = [("all", m["overall"])] + sorted(m.get("per_genre", {}).items())
    for g, r in rows:
        t.add_row(
            g,
            fmt(r.get("eer"), ".3f"),
            fmt(r.get("mindcf@0.01"), ".4f"),
            str(r.get("n_target", "")),
            str(r.get("n_nontarget", "")),
        )
    console.print(t)
