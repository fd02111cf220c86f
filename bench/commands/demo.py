"""`bench demo`: the whole product on the embedded synthetic corpus, in one command.

Generate the demo corpus (skipped when one is there), train the preset's losses with 3 seeds each,
every run to its validation plateau within a maximum budget (GPU when present), score the evaluation
trials, build the report (tables with intervals, converged column, paired tests, DET curves, plots)
and print a summary. Two sizes (:data:`DEMO_PRESETS`): ``demo`` (100 training speakers, aam vs
aamsupcon, the default, aimed at 10 minutes on 2 CPU cores) and ``cpu`` (300 training speakers,
softmax, aam, supcon and aamsupcon, aimed at an hour).

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
from rich.text import Text

from bench.commands.common import at_least, console, err_console, fail, handle_errors, print_json
from bench.commands.run import Jobs, Threads

DEMO_SEEDS = (0, 1, 2)


from bench.data.prepare import DEMO_PRESETS, DemoPreset, corpus_config  # noqa: E402,F401

DEMO_LOSSES = DEMO_PRESETS["demo"].losses

DEFAULT_DATA = DEMO_PRESETS["demo"].data
DEFAULT_REPORT = DEMO_PRESETS["demo"].report
DEFAULT_REAL = Path("data/real-eval")  # bench data real; scored as "synthetic -> real" when present


@dataclass
class DemoResult:
    """What ``run_demo`` did, for the summary table and ``--json``."""

    preset: str
    seeds: list[int]
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


def ensure_corpus(
    root: Path, workers: int = 0, progress: Any = None, preset: str = "demo", check_size: bool = False
) -> str:
    """Generate the corpus of demo ``preset`` at ``root`` unless a finished corpus is there
    (:func:`bench.data.prepare.ensure_synthetic`)."""
    from bench.data.prepare import ensure_synthetic

    return ensure_synthetic(root, progress=progress, workers=workers, preset=preset, check_size=check_size)


def run_demo(
    out: Path = Path("runs"),
    *,
    preset: str = "demo",
    data: Path | None = None,
    report_dir: Path | None = None,
    losses: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] = DEMO_SEEDS,
    epochs: int | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
    n_boot: int = 1000,
    reporter: Any = None,
    synth_progress: Any = None,
    report_progress: Any = None,
    threads: int | None = None,
    real: Path | None = None,
    jobs: int | str = "auto",
) -> DemoResult:
    """Corpus -> training of each loss -> scores -> report; returns what was done and the summary.

    ``overrides`` are extra ``section.key=value`` config settings on top of the demo preset (tests
    use them to shrink the run); ``jobs`` runs train at once (:func:`bench.runner.pool.resolve_jobs`;
    ``auto``: one per CPU core on the CPU); ``epochs`` is the maximum budget; ``losses`` default to the preset's. ``data`` and ``report_dir``
    default to the preset's folders. A failed run does not stop the others; the caller decides.
    With ``real`` (a ``bench data real`` corpus), every finished run is also scored on it
    (``<run>/eval/real/``) and the MFCC baseline on both trial lists, so the report shows
    "synthetic -> real" beside the synthetic result and the baseline.
    """
    from bench.config import load_config
    from bench.errors import BenchError
    from bench.runner import ddp
    from bench.runner.experiment import plan_runs, run_experiment
    from reports.build import MARKER, Options, build, check_out_dir, is_report_within, report_is_current

    if preset not in DEMO_PRESETS:
        raise BenchError(f"unknown demo preset '{preset}'; choose one of {', '.join(DEMO_PRESETS)}")
    if not seeds:
        raise BenchError("--seeds is empty")
    spec = DEMO_PRESETS[preset]
    losses = losses or spec.losses
    data = data or spec.data
    report_dir = report_dir or spec.report
    # Everything the user typed is checked before the corpus is generated (tens of seconds to minutes).
    sets = [f"data.root={json.dumps(str(data))}", *(overrides or [])]
    if epochs is not None:
        sets.append(f"train.epochs={epochs}")
    cfg = load_config(preset=spec.config, overrides=sets)
    from bench.runner.progress import RichReporter

    if isinstance(reporter, RichReporter):
        reporter.label = cfg.experiment  # its header names the experiment (demo-cpu for --preset cpu)
    # the runner's own checks: a repeated loss or seed, an unknown loss, a --set key no chosen loss has
    plans = plan_runs(cfg, list(losses), list(seeds), out)
    # The report folder is replaced by each rebuild: it may hold this demo's report (or nothing),
    # never the runs, the corpus or another report (that one only with --force), as `bench report`.
    exp_dir = out / cfg.experiment
    for inner, what in ((exp_dir, "runs"), (data, "corpus")):
        if Path(inner).resolve().is_relative_to(Path(report_dir).resolve()):
            raise BenchError(f"--report must not hold the {what} ({inner}): each rebuild replaces it", path=report_dir)
    # a report of these runs, or of some of them (rebuilt from the runs that did not fail), is ours;
    # any other report, or a folder holding no report, is refused unless --force
    own = force or is_report_within(Path(report_dir), exp_dir)
    check_out_dir(Path(report_dir), own, option="--report")
    from bench.runner.pool import resolve_jobs

    # the device and torchrun's world size as ddp.setup will find them: --jobs 2 on a GPU is refused
    # before the corpus is generated
    world = int(os.environ.get("WORLD_SIZE", "1"))
    n_jobs = resolve_jobs(jobs, len(plans), ddp.pick_device(cfg.train.device).type, world)
    t0 = time.perf_counter()
    corpus_action = ensure_corpus(data, progress=synth_progress, preset=preset, check_size=data == spec.data)
    t_corpus = time.perf_counter() - t0
    from bench.threads import configure

    configure(cfg.data.workers, threads)
    info, device = ddp.setup(cfg.train.device)
    t1 = time.perf_counter()
    outcomes = run_experiment(cfg, list(losses), list(seeds), out, force=force, reporter=reporter,
                              info=info, device=device, jobs=n_jobs, threads=threads)  # fmt: skip
    t_train = time.perf_counter() - t1

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
    # a failed run's folder may hold part of a result (a finished run whose scores were removed):
    # the report is then built from the runs that did not fail, and the command ends naming the others
    sources = [exp_dir] if len(finished) == len(outcomes) else [Path(o.run_dir) for o in finished]
    if changed or force or not report_is_current(report_dir, sources):
        # The report is derived from the runs: once they changed (here, or by `bench eval` or a
        # removed result folder since the last demo), the old one is stale, so replace it.
        steps = cfg.train.epochs * cfg.train.steps_per_epoch
        title = (
            f"bench demo ({preset}): loss comparison on the synthetic corpus, {spec.summary}, <= {steps:,} steps a run"
        )
        build(sources, report_dir, Options(n_boot=n_boot, force=own, title=title),
              progress=report_progress)  # fmt: skip
        report_action = "built"
    else:
        report_action = "reused"
    t_report = time.perf_counter() - t2
    rep = json.loads(marker.read_text())
    return DemoResult(
        preset=preset,
        seeds=list(seeds),
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
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="demo: 100 training speakers, about 10 min on 2 CPU cores; cpu: 300 speakers, about an hour.",
        ),
    ] = "demo",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated training seeds.")] = ",".join(
        map(str, DEMO_SEEDS)
    ),
    epochs: Annotated[
        Optional[int],
        typer.Option(
            "--epochs",
            callback=at_least(1),
            help="Maximum epochs per run, >= 1 (default: the preset's; runs stop at their plateau).",
        ),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", help="Synthetic corpus folder (default: the preset's); generated when missing."),
    ] = None,
    report_dir: Annotated[
        Optional[Path], typer.Option("--report", help="Report folder (default: the preset's).")
    ] = None,
    losses: Annotated[
        Optional[str],
        typer.Option(
            "--losses",
            help="Comma-separated losses to compare (default: demo: "
            + ",".join(DEMO_PRESETS["demo"].losses)
            + "; cpu: "
            + ",".join(DEMO_PRESETS["cpu"].losses)
            + ").",
        ),
    ] = None,
    sets: Annotated[
        Optional[list[str]], typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Override a demo-preset setting.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout; no progress bars.")] = False,
    threads: Threads = None,
    jobs: Jobs = "auto",
    real: Annotated[
        Path, typer.Option("--real", help="Real-voice corpus (bench data real); every run is scored on it if present.")
    ] = DEFAULT_REAL,
) -> None:
    """Generate the demo corpus, train and compare losses, score the trials and write the report.

    Runs on the GPU when there is one, else the CPU (minutes on 2 cores). A second call reuses the
    corpus, the finished runs and the report; --force retrains.

    Example: bench demo && open reports/out/demo/report.html
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.runner.progress import RichReporter
    from bench.runner.train import NullReporter

    names = None  # the preset's losses
    if losses is not None:
        names = tuple(n.strip() for n in losses.split(",") if n.strip())
        if not names:
            fail("--losses is empty")
    try:
        seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
    except ValueError:
        fail(f"--seeds expects comma-separated integers, got '{seeds}'")
    if not seed_list:
        fail("--seeds is empty")
    if min(seed_list) < 0 or len(set(seed_list)) != len(seed_list):
        fail(f"--seeds expects distinct comma-separated integers >= 0, got '{seeds}'")
    from bench.commands.run import check_out

    check_out(out)
    if preset not in DEMO_PRESETS:
        fail(f"unknown demo preset '{preset}'; choose one of {', '.join(DEMO_PRESETS)}")
    data = data or DEMO_PRESETS[preset].data
    columns = (
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
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

        reporter = NullReporter() if json_out else RichReporter(console=err_console)
        try:
            res = run_demo(out, preset=preset, data=data, report_dir=report_dir, losses=names, seeds=seed_list,
                           epochs=epochs, force=force,
                           overrides=sets, reporter=reporter, synth_progress=synth_progress,
                           report_progress=report_progress, threads=threads, real=real, jobs=jobs)  # fmt: skip
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
    from collections import Counter

    from rich.table import Table

    def num(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    per_loss: dict[str, Counter] = {}
    for r in res.runs:
        per_loss.setdefault(r["loss"], Counter())[r["action"]] += 1
    actions = {loss: ", ".join(f"{n} {a}" for a, n in c.items()) for loss, c in per_loss.items()}
    conv = {1: "yes", 0: "no"}
    t = Table(title=f"bench demo --preset {res.preset} — {res.corpus}, seeds {','.join(map(str, res.seeds))} "
                    f"({res.device}, {res.seconds['total']:.0f} s)")  # fmt: skip
    for col in ("loss", "runs", "EER %", "95% CI", "minDCF 0.01", "converged", "budget"):
        t.add_column(col, justify="left" if col in ("loss", "runs", "converged", "budget") else "right")
    for row in sorted(res.table, key=lambda r: (r["eer"]["mean"] is None, r["eer"]["mean"])):
        eer, dcf = row["eer"], row.get("mindcf@0.01", {})
        ci = f"[{eer['low']:.2f}, {eer['high']:.2f}]" if eer.get("low") is not None else ""
        converged = row.get("converged_text") or (
            "unknown" if row.get("converged") is None else conv[int(row["converged"])]
        )
        t.add_row(row["system"], actions.get(row["loss"], ""), num(eer["mean"], ".2f"), ci,
                  num(dcf.get("mean"), ".3f"), converged, row.get("budget", ""))  # fmt: skip
    console.print(t)
    for p in res.pairwise:
        console.print(
            f"  {p['system_a']} vs {p['system_b']}: ΔEER {p['diff']:+.2f} pp, p={p['p_value']:.3g} → {p['verdict']}",
            highlight=False,
        )
    skipped = any(r["action"] == "skipped" for r in res.runs)
    reused = [k for k, v in (("corpus", res.corpus_action), ("report", res.report_action)) if v == "reused"]
    if reused or skipped:
        console.print("reused finished work (" + ", ".join(reused + ["skipped runs"] * skipped) + "); --force retrains",
                      highlight=False)  # fmt: skip
    for note in res.real.get("notes", []):
        console.print(f"real voices: {note}", highlight=False)
    console.print(f"runs: {res.experiment_dir}", highlight=False)
    console.print(Text.assemble("HTML report: ", (res.html, "bold")), highlight=False)
