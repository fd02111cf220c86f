"""The `bench` command line: a Typer app whose commands each live in a ``bench.commands`` module.

Command modules import heavy libraries (torch, pandas) inside their functions so that
``bench --help`` stays fast.
"""

from __future__ import annotations

import typer

from bench.commands import check, demo, evaluate, listing, perf, real, report, run, score, synth, tune

# Stub commands accept any arguments so that "not built yet" is what the user sees.
LOOSE = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(
    name="bench",
    help="Benchmark speaker-verification training objectives: train, score, compare, tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: square brackets in help texts ('enroll test score [label]') are text, not markup.
    rich_markup_mode=None,
)

data_app = typer.Typer(
    help="Corpora: generate the synthetic corpus, check a corpus.", no_args_is_help=True, rich_markup_mode=None
)
data_app.command("synth")(synth.synth)
data_app.command("check", context_settings=LOOSE)(check.check)
data_app.command("real")(real.real)


def _version(value: bool) -> None:
    if value:
        from bench.versions import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print bench, torch, torchaudio, CUDA, numpy versions.",
    ),
) -> None:
    """Benchmark speaker-verification training objectives: train, score, compare, tune."""
    from bench.commands.common import fail
    from bench.errors import BenchError
    from bench.versions import check_torch_pair

    try:
        check_torch_pair()
    except BenchError as e:
        fail(str(e))


app.add_typer(data_app, name="data")
app.command("run")(run.run)
app.command("score")(score.score)
app.command("report")(report.report)
app.command("tune")(tune.tune)
app.command("demo")(demo.demo)
app.command("perf")(perf.perf)
app.command("embed")(evaluate.embed)
app.command("eval")(evaluate.evaluate)
app.add_typer(listing.app, name="list")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
