"""Commands of the product that are not built yet: they say so and exit non-zero."""

from __future__ import annotations

import typer

from bench.commands.common import not_built

data_app = typer.Typer(help="Corpora: generate the synthetic corpus, check a corpus.", no_args_is_help=True)


@data_app.command("synth", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def data_synth() -> None:
    """Generate the embedded synthetic corpus in the CN-Celeb layout."""
    not_built("data synth", 4)


@data_app.command("check", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def data_check() -> None:
    """Validate a corpus and print a summary table."""
    not_built("data check", 7)


EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def score() -> None:
    """Score trials from a score or embedding file: EER, minDCF, actDCF, Cllr."""
    not_built("score", 9)


def report() -> None:
    """Build comparison tables, paired tests and DET curves from run directories."""
    not_built("report", 10)


def tune() -> None:
    """Optuna search over margin, temperature, scale and loss weights."""
    not_built("tune", 11)


def demo() -> None:
    """Generate the demo corpus, train four losses, score and write the report."""
    not_built("demo", 12)


def perf() -> None:
    """Run the benchmark suite and write BENCHMARKS.md."""
    not_built("perf", 12)


def embed() -> None:
    """Embed every utterance of a corpus with a trained run's model."""
    not_built("embed", 14)


def evaluate() -> None:
    """Embed, score and record a trained run on any corpus."""
    not_built("eval", 14)
