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
)

data_app = typer.Typer(help="Corpora: generate the synthetic corpus, check a corpus.", no_args_is_help=True)
data_app.command("synth")(synth.synth)
data_app.command("check", context_settings=LOOSE)(check.check)
data_app.command("real")(real.real)

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
