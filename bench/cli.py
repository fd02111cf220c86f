"""The `bench` command line: a Typer app whose commands live in ``bench.commands``."""

from __future__ import annotations

import typer

from bench.commands import listing, run, stubs

app = typer.Typer(
    name="bench",
    help="Benchmark speaker-verification training objectives: train, score, compare, tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(stubs.data_app, name="data")
app.command("run")(run.run)
app.command("score", context_settings=stubs.EXTRA)(stubs.score)
app.command("report", context_settings=stubs.EXTRA)(stubs.report)
app.command("tune", context_settings=stubs.EXTRA)(stubs.tune)
app.command("demo", context_settings=stubs.EXTRA)(stubs.demo)
app.command("perf", context_settings=stubs.EXTRA)(stubs.perf)
app.command("embed", context_settings=stubs.EXTRA)(stubs.embed)
app.command("eval", context_settings=stubs.EXTRA)(stubs.evaluate)
app.add_typer(listing.app, name="list")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
