"""`bench demo`: the whole product on the embedded synthetic corpus, in one command.

Generate the demo corpus (skipped when one is there), train softmax, aam, supcon and aamsupcon with
the ``demo`` preset (tiny backbone, a few epochs, GPU when present), score the evaluation trials,
build the report (tables with intervals, paired tests, DET curves, plots) and print a summary.

Every stage reuses what a previous call finished: finished runs are skipped unless ``--force``, and
the report is rebuilt only when a run changed (or the report is missing).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bench.commands.common import console, err_console, fail, handle_errors, print_json

DEMO_LOSSES = ("softmax", "aam", "supcon", "aamsupcon")
DEFAULT_DATA = Path("data/synth-demo")
DEFAULT_REPORT = Path("reports/out/demo")
DEFAULT_REAL = Path("data/real-eval")  # bench data real; scored as "synthetic -> real" when present


@dataclass
class DemoResult:
    """What ``run_demo`` did, for the summary table and ``--json``."""

    corpus: str
    corpus_action: str  # generated | reused
    experiment_dir: str
    report_dir: str
    report_action: str  # built | reused
    runs: list[dict[str, Any]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    pairwise: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    seconds: dict[str, float] = field(default_factory=dict)
    real: dict[str, Any] = field(default_factory=dict)  # real-voice evaluation: what was done, notes

    @property
    def html(self) -> str:
        return str(Path(self.report_dir) / "report.html")


def ensure_corpus(root: Path, workers: int = 0, progress: Any = None) -> str:
    """Generate the demo corpus at ``root`` unless a finished corpus (``corpus.json``) is there."""
    if (root / "corpus.json").exists():
        return "reused"
    from bench.synth import generate, make_config

    generate(make_config("demo"), root, workers=workers or os.cpu_count() or 1, progress=progress)
    return "generated"


def run_demo(
    out: Path = Path("runs"),
    *,
    data: Path = DEFAULT_DATA,
    report_dir: Path = DEFAULT_REPORT,
    losses: tuple[str, ...] = DEMO_LOSSES,
    epochs: int | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
    n_boot: int = 1000,
    reporter: Any = None,
    synth_progress: Any = None,
    report_progress: Any = None,
    real: Path | None = None,
) -> DemoResult:
    """Corpus -> training of each loss -> scores -> report; returns what was done and the summary.

    ``overrides`` are extra ``section.key=value`` config settings on top of the demo preset (tests
    use them to shrink the run). A failed run does not stop the others; the caller decides.
    With ``real`` (a ``bench data real`` corpus), every finished run is also scored on it
    (``<run>/eval/real/``) and the MFCC baseline on both trial lists, so the report shows
    "synthetic -> real" beside the synthetic result and the baseline.
    """
    from bench.config import load_config
    from bench.errors import BenchError
    from bench.runner import ddp
    from bench.runner.experiment import run_experiment
    from reports.build import MARKER, Options, build

    t0 = time.perf_counter()
    corpus_action = ensure_corpus(data, progress=synth_progress)
    t_corpus = time.perf_counter() - t0

    sets = [f'data.root="{data}"', *(overrides or [])]
    if epochs is not None:
        sets.append(f"train.epochs={epochs}")
    cfg = load_config(preset="demo", overrides=sets)
    info, device = ddp.setup(cfg.train.device)
    t1 = time.perf_counter()
    outcomes = run_experiment(cfg, list(losses), [cfg.train.seed], out, force=force, reporter=reporter,
                              info=info, device=device)  # fmt: skip
    t_train = time.perf_counter() - t1

    exp_dir = out / cfg.experiment
    finished = [o for o in outcomes if o.action != "failed"]
    if not finished:
        raise BenchError("every demo run failed: " + "; ".join(f"{o.loss}: {o.error}" for o in outcomes))
    changed = any(o.action in ("trained", "resumed") for o in outcomes)
    real_info: dict[str, Any] = {}
    if real is not None:
        from bench.realvoices.demo import score_on_real

        real_info = score_on_real(finished, real, data, exp_dir, force=force)
        changed = changed or bool(real_info.get("scored"))
    t2 = time.perf_counter()
    marker = report_dir / MARKER
    if changed or force or not marker.exists():
        # The report is derived from the runs: once they changed, the old one is stale, so replace it.
        build([exp_dir], report_dir, Options(n_boot=n_boot, force=True, title="bench demo: loss comparison on "
                                              "the synthetic corpus"), progress=report_progress)  # fmt: skip
        report_action = "built"
    else:
        report_action = "reused"
    t_report = time.perf_counter() - t2
    rep = json.loads(marker.read_text())
    return DemoResult(
        corpus=str(data),
        corpus_action=corpus_action,
        experiment_dir=str(exp_dir),
        report_dir=str(report_dir),
        report_action=report_action,
        runs=[asdict(o) for o in outcomes],
        table=rep.get("table", []),
        pairwise=rep.get("pairwise", []),
        device=str(device),
        real=real_info,
        seconds={
            "corpus": t_corpus,
            "train_and_score": t_train,
            "report": t_report,
            "total": time.perf_counter() - t0,
        },
    )


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Root of the run directories.")] = Path("runs"),
    force: Annotated[bool, typer.Option("--force", help="Retrain finished runs (their results are replaced).")] = False,
    epochs: Annotated[
        Optional[int], typer.Option("--epochs", min=1, help="Training epochs per loss (default: the demo preset's, 4).")
    ] = None,
    data: Annotated[
        Path, typer.Option("--data", help="Synthetic corpus folder; generated there when missing.")
    ] = DEFAULT_DATA,
    report_dir: Annotated[Path, typer.Option("--report", help="Report folder.")] = DEFAULT_REPORT,
    losses: Annotated[str, typer.Option("--losses", help="Comma-separated losses to compare.")] = ",".join(DEMO_LOSSES),
    sets: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a demo-preset setting: section.key=value.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout; no progress bars.")] = False,
    real: Annotated[
        Path, typer.Option("--real", help="Real-voice corpus (bench data real); every run is scored on it if present.")
    ] = DEFAULT_REAL,
) -> None:
    """Generate the demo corpus, train four losses, score the trials and write the report.

    Runs on the GPU when there is one, else the CPU (minutes on 2 cores). A second call reuses the
    corpus, the finished runs and the report; --force retrains.

    Example: bench demo && open reports/out/demo/report.html
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.runner.progress import RichReporter
    from bench.runner.train import NullReporter

    names = tuple(n.strip() for n in losses.split(",") if n.strip())
    if not names:
        fail("--losses is empty")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # All progress goes to stderr (and none under --json), so stdout carries only the summary.
    with Progress(*columns, console=err_console, transient=True, disable=json_out) as bar:
        synth_task = None

        def synth_progress(done: int, total: int) -> None:
            nonlocal synth_task
            if synth_task is None:
                synth_task = bar.add_task(f"generating {data}", total=total)
            bar.update(synth_task, completed=done, total=total)

        def report_progress(desc: str, total: int):
            task = bar.add_task(desc, total=max(total, 1))
            return lambda: bar.advance(task)

        reporter = NullReporter() if json_out else RichReporter(console=err_console, label="demo")
        try:
            res = run_demo(out, data=data, report_dir=report_dir, losses=names, epochs=epochs, force=force,
                           overrides=sets, reporter=reporter, synth_progress=synth_progress,
                           report_progress=report_progress, real=real)  # fmt: skip
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
    failed = [r for r in res.runs if r["action"] == "failed"]
    if json_out:
        print_json({**asdict(res), "html": res.html})
    else:
        _print_summary(res)
    if failed:
        fail(f"{len(failed)} of {len(res.runs)} demo runs failed: "
             + "; ".join(f"{r['loss']}: {r['error']}" for r in failed), code=1)  # fmt: skip


def _print_summary(res: DemoResult) -> None:
    from rich.table import Table

    def num(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    actions = {r["loss"]: r["action"] for r in res.runs}
    t = Table(title=f"bench demo — {res.corpus} ({res.device}, {res.seconds['total']:.0f} s)")
    for col in ("loss", "run", "EER %", "95% CI", "minDCF 0.01"):
        t.add_column(col, justify="left" if col in ("loss", "run") else "right")
    for row in sorted(res.table, key=lambda r: (r["eer"]["mean"] is None, r["eer"]["mean"])):
        eer, dcf = row["eer"], row.get("mindcf@0.01", {})
        ci = f"[{eer['low']:.2f}, {eer['high']:.2f}]" if eer.get("low") is not None else ""
        t.add_row(row["system"], actions.get(row["loss"], ""), num(eer["mean"], ".2f"), ci, num(dcf.get("mean"), ".3f"))
    console.print(t)
    for p in res.pairwise:
        console.print(
            f"  {p['system_a']} vs {p['system_b']}: ΔEER {p['diff']:+.2f} pp, p={p['p_value']:.3g} → {p['verdict']}",
            highlight=False,
        )
    reused = [k for k, v in (("corpus", res.corpus_action), ("report", res.report_action)) if v == "reused"]
    if reused or any(a == "skipped" for a in actions.values()):
        console.print("reused finished work (" + ", ".join(reused + ["skipped runs"] * any(
            a == "skipped" for a in actions.values())) + "); --force retrains", highlight=False)  # fmt: skip
    for note in res.real.get("notes", []):
        console.print(f"real voices: {note}", highlight=False)
    console.print(f"runs: {res.experiment_dir}", highlight=False)
    console.print(f"HTML report: [bold]{res.html}[/]", highlight=False)
