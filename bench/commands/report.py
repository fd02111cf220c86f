"""`bench report`: comparison tables with uncertainty, paired tests, DET curves and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from bench.commands.common import at_least, console, err_console, handle_errors, print_json


@handle_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Experiment or run directories (searched for metrics.json).")],
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output folder (default: reports/out/<experiment>/).")
    ] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: md,html,csv,tex.")] = "md,html,csv,tex",
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for intervals and paired tests.")] = 1000,
    unit: Annotated[
        str, typer.Option("--unit", help="Bootstrap unit: speaker (enrolment speaker) or trial.")
    ] = "speaker",
    seed: Annotated[int, typer.Option("--seed", callback=at_least(0), help="Random seed of the bootstrap, >= 0.")] = 0,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Tables only (faster).")] = False,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace a finished report in the output folder.")] = False,
    equal_budget: Annotated[
        bool,
        typer.Option(
            "--equal-budget",
            help="Give verdicts between systems that did not converge too: an equal-budget comparison "
            "(each system's budget is stated). Default: such pairs read 'not converged'.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison table as JSON on stdout.")] = False,
) -> None:
    """Build comparison tables, paired tests and DET curves from run directories.

    Runs are grouped into systems by loss, backbone, training corpus and evaluation corpus; the seeds of a system are aggregated as mean ± std. Systems are compared per evaluation corpus, only on identical trial lists. Intervals and paired tests resample the seeds and the enrolment speakers (a two-stage bootstrap; --unit trial resamples single trials instead of speakers); with one seed they cannot include seed-to-seed variation, and the report marks them with a warning.

    A report of the same run folders is regenerated in place; another report in --out is kept
    unless --force.

    \b
    Examples:
      bench report runs/demo
      bench report runs/demo --out reports/out/demo --format md,html --n-boot 2000
      bench report runs/exp-a runs/exp-b --title "AAM vs AAM-SupCon"
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.errors import BenchError
    from reports.build import Options, build, parse_formats, summary

    if unit not in ("speaker", "trial"):
        raise BenchError(f"--unit must be speaker or trial, got '{unit}'")
    if n_boot < 0:
        raise BenchError(f"--n-boot must be >= 0, got {n_boot}")
    opts = Options(
        formats=parse_formats(formats),
        n_boot=n_boot,
        seed=seed,
        unit=unit,
        figures=not no_figures,
        title=title,
        force=force,
        equal_budget=equal_budget,
    )
    # Progress goes to stderr so that --json output on stdout stays machine-readable.
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:

        def tick(desc: str, total: int):
            task = bar.add_task(desc, total=max(total, 1))
            return lambda: bar.advance(task)

        out_dir, rep = build(list(runs), out, opts, progress=tick)
    if as_json:
        print_json(summary(rep))
        return
    for sec in rep.sections:
        best = sec.table.loc[sec.table["eer_mean"].idxmin(), "system"]
        console.print(
            Text.assemble((str(sec.corpus), "bold"), f": {len(sec.table)} systems, best EER: {best}"), highlight=False
        )
        for row in sec.table.itertuples():
            console.print(f"  {row.system}: converged {row.converged_text}; {row.budget}".rstrip("; "), highlight=False)
        for p in sec.pairwise.itertuples():
            console.print(
                f"  {p.system_a} vs {p.system_b}: ΔEER {p.diff:+.2f} [{p.low:+.2f}, {p.high:+.2f}] "
                f"p={p.p_value:.3g} → {p.verdict}",
                highlight=False,
            )
    console.print(f"report written to {out_dir}", highlight=False)
