"""`bench tune`: Optuna search over loss hyper-parameters; `bench tune --show STUDY` summarises one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from bench.commands.common import console, handle_errors, print_json
from bench.commands.run import ConfigFile, Preset, Sets, Threads

if TYPE_CHECKING:
    from bench.tune.options import Metric


@handle_errors
def tune(
    loss: Annotated[
        Optional[str], typer.Option("--loss", help="Loss to tune (default: the config's loss.name).")
    ] = None,
    params: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            metavar="NAME=RANGE",
            help="NAME=LOW:HIGH[:log|:STEP] or NAME=A,B,... (repeatable); NAME from bench list losses, "
            "or a recipe key: optim.lr, optim.weight_decay, optim.gamma, optim.warmup_epochs, optim.momentum.",
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", help="Finished trials the study should hold (all workers together).")
    ] = 20,
    preset: Preset = None,
    config: ConfigFile = None,
    sets: Sets = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="Experiment name.")] = None,
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="Backbone name.")] = None,
    corpus: Annotated[Optional[str], typer.Option("--corpus", help="Corpus kind, folder, or KIND:FOLDER.")] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(
            "--storage",
            help="Optuna storage: sqlite:///f.db, postgresql://..., journal:FILE (default: OUT/tune/STUDY.db).",
        ),
    ] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name (default: EXPERIMENT-LOSS).")] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="median | hyperband | none.")] = "median",
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="Validation metric to minimise: eer, or mindcf (minDCF at the first eval.p_targets, 0.01).",
        ),
    ] = "eer",
    seed: Annotated[int, typer.Option("--seed", help="Sampler seed (the training seed is train.seed).")] = 0,
    startup: Annotated[
        int, typer.Option("--startup-trials", help="Random trials before TPE, and trials before median pruning.")
    ] = 5,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup-epochs",
            help="Epochs no trial is pruned in (median pruner): minDCF stays near 1 in the first epochs, "
            "where the median says little.",
        ),
    ] = 0,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="Keep each trial's checkpoints.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Root of the run directories.")] = Path("runs"),
    show: Annotated[Optional[str], typer.Option("--show", help="Summarise study STUDY and exit (no training).")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the study's figures.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary; no progress bars.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    threads: Threads = None,
) -> None:
    """Search loss hyper-parameters and optim.lr & co. with Optuna (seeded TPE, pruning on the validation metric).

    Each trial is a run directory OUT/EXPERIMENT-tune-STUDY/LOSS/trialNNNN/. Start the same command on
    several machines with one --storage postgresql://... URL to share the work; rerun it to resume a
    killed study. The objective is the validation EER (or with --objective mindcf the minDCF) on
    held-out training speakers of the weights bench run scores (the best validated epoch by EER under
    train.early_stop, else the last); the evaluation trials are never scored.

    \b
    Examples:
      bench tune --preset demo --loss aamsupcon --param margin=0.0:0.5 --param temperature=0.02:0.3:log --trials 50
      bench tune --preset demo --loss aam --param margin=0.1:0.4 --storage postgresql://user@host/db --study aam-m
      bench tune --preset demo --loss aam --param scale=4:32:log --param optim.lr=1e-3:2e-2:log
      bench tune --preset demo --loss aam --param margin=0.05:0.4 --objective mindcf --study aam-dcf
      bench tune --show aam-m
    """
    from bench.tune.storage import default_storage

    if show:
        _show(show, storage or default_storage(out, show), json_out, plots)
        return
    from bench.commands.run import check_out, shortcut_overrides
    from bench.config import load_config, to_dict
    from bench.tune import TuneConfig, parse_space

    check_out(out)
    overrides = shortcut_overrides(sets, backbone=backbone, corpus=corpus, experiment=experiment)
    from bench.config_origin import Origins

    origins = Origins()
    cfg = load_config(preset=preset, file=config, overrides=overrides, origins=origins)
    from bench.threads import configure

    configure(cfg.data.workers, threads)
    name = loss or cfg.loss.name
    tcfg = TuneConfig(
        loss=name, params=list(params or []), trials=trials, study=study or "", storage=storage or "",
        pruner=pruner, objective=objective, seed=seed, out=str(out), startup_trials=startup, warmup_epochs=warmup,
        keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    tcfg.validate()
    from bench.config import parse_override
    from losses import LOSSES

    known = {p[0] for p in LOSSES.get(name).parameters()}
    # Fixed = set on the command line for this loss; a preset's values are defaults the search replaces
    # (the demo presets set scale = 8, which a study of the AAM scale must be free to move).
    paths = [parse_override(o)[0] for o in overrides]
    from_cli = {p[-1] for p in paths if p[:2] == ["loss", "params"] or p[:3] == ["loss", "per_loss", name]}
    from bench.config import value_at
    from bench.per_loss import check_tables
    from bench.runner.experiment import run_config

    with origins.located(name):  # a per-loss rule that is no table is named here, not a traceback below
        check_tables(cfg)
    own = {**cfg.loss.params, **cfg.loss.per_loss.get(name, {})}
    fixed = {k: v for k, v in own.items() if k in known and k in from_cli}
    from bench.tune.keys import CONFIG_KEYS

    # recipe keys typed with --set, shared (optim.lr) or for this loss (optim.per_loss.<loss>.lr)
    for p in paths:
        key = ".".join(p[:1] + p[3:]) if p[1:3] == ["per_loss", name] else ".".join(p)
        if key in CONFIG_KEYS:
            fixed[key] = value_at(to_dict(cfg), ".".join(p))
    # a searched recipe key's per-loss preset value is replaced by every trial: left out of the base,
    # so that it is not checked against settings the user typed (--set optim.min_lr above it)
    searched = {p.split("=", 1)[0].strip() for p in tcfg.params}
    own_optim = {k: v for k, v in cfg.optim.per_loss.get(name, {}).items() if f"optim.{k}" not in searched}
    per_loss = {**cfg.optim.per_loss, name: own_optim} if name in cfg.optim.per_loss else cfg.optim.per_loss
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, per_loss=per_loss))
    with origins.located(name):
        base = run_config(cfg, name, cfg.train.seed)  # the trial configs' base: per-loss values applied
    space = parse_space(tcfg.params, name, fixed, base)
    origin = {"preset": preset or "", "config": str(config) if config else "", "sets": overrides, "out": str(out)}
    _tune(cfg, tcfg, space, origin, json_out, quiet, plots)


def _tune(cfg: Any, tcfg: Any, space: list, origin: dict, json_out: bool, quiet: bool, plots: bool) -> None:
    import os

    from bench.data.corpus import load_corpus
    from bench.errors import BenchError
    from bench.runner import ddp
    from bench.tune.objective import runner_train_fn
    from bench.tune.study import run_study

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BenchError(
            "bench tune trains one process per trial; start several bench tune workers instead of torchrun"
        )
    from bench.data.prepare import prepare_corpus

    device = ddp.pick_device(cfg.train.device)
    prepare_corpus(cfg.data, quiet=json_out or quiet)
    corpus = load_corpus(cfg.data)
    if getattr(corpus, "val_trials", None) is None or len(corpus.val_trials) == 0:
        raise BenchError(
            f"corpus '{corpus.name}' has no validation trials to tune on; set data.val_speakers > 0 "
            "(held-out training speakers)"
        )
    progress = None if (json_out or quiet) else TuneProgress(tcfg.trials, metric=tcfg.metric)
    try:
        result = run_study(
            cfg, tcfg, space, runner_train_fn(corpus, device),
            reporter=progress, origin=origin, corpus_name=corpus.name, device=str(device),
            on_trial=progress.trial_done if progress else None,
        )  # fmt: skip
    finally:
        if progress:
            progress.close()
    summary = _finish(result.study, result.storage, result.study_dir, plots)
    summary["worker"] = {"started": result.started, "stopped": result.stopped}
    if json_out:
        print_json(summary)
    else:
        _print(summary)


def _finish(study: Any, storage: str, study_dir: Path | None, plots: bool = True) -> dict[str, Any]:
    """Summary + plots written to the study folder (``study.json``, ``plots/``)."""
    from bench.io import atomic_write_json
    from bench.tune.plots import save_plots
    from bench.tune.summary import summarize

    summary = summarize(study, storage)
    summary["plots"] = []
    if study_dir is not None:
        if plots:
            summary["plots"] = [str(p) for p in save_plots(study, Path(study_dir) / "plots")]
        atomic_write_json(Path(study_dir) / "study.json", summary)
    return summary


def _show(name: str, url: str, json_out: bool, plots: bool) -> None:
    from bench.tune.storage import load_study

    study = load_study(name, url)
    folder = study.user_attrs.get("study_dir")
    summary = _finish(study, url, Path(folder) if folder else None, plots)
    if json_out:
        print_json(summary)
    else:
        _print(summary)


def _print(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from bench.tune.options import metric_of

    metric = metric_of(summary.get("metric"))

    t = Table(title=f"study {summary['study']}  ({summary['finished']} finished; {summary['objective']})")
    names = [s.split("=", 1)[0] for s in summary["space"]]
    for col in ("trial", "state", metric.axis, *names, "epochs"):
        t.add_column(col, justify="left" if col == "state" else "right")
    rows = sorted(summary["trials"], key=lambda r: (r["value"] is None, r["value"] or 0.0, r["number"]))
    for r in rows:
        t.add_row(
            str(r["number"]),
            r["state"],
            "" if r["value"] is None else f"{r['value']:.{metric.digits}f}",
            *[_fmt(r["params"].get(n)) for n in names],
            str(len(r["epochs"])),
        )
    console.print(t)
    best = summary["best"]
    if best is None:
        console.print("no complete trial yet", highlight=False)
        return
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
    console.print(
        f"best: trial {best['number']}, {metric.label} {metric.show(best['value'])}: {shown}", highlight=False
    )
    console.print("train the final model with:", highlight=False)
    console.print(f"  {best['command']}", highlight=False, markup=False, soft_wrap=True)
    if best.get("preset"):
        console.print("or put these values in the preset (for this loss only):", highlight=False)
        for line in best["preset"].splitlines():
            console.print(f"  {line}".rstrip(), highlight=False, markup=False, soft_wrap=True)
    if summary.get("plots"):
        console.print(f"plots: {Path(summary['plots'][0]).parent}", highlight=False)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class TuneProgress:
    """Progress of a worker, like ``bench run``'s :class:`bench.runner.progress.RichReporter`.

    On a terminal: a study bar (finished / target, best so far) and an epoch bar. Elsewhere (a batch
    scheduler's log file, a pipe): no bars, one plain line per trial epoch (``trial 3 epoch 2/12:
    loss 1.234 val EER 12.34%``) and per trial, each flushed as it is printed.
    """

    def __init__(self, target: int, console: Any = None, metric: Metric | None = None):
        from rich.console import Console
        from rich.progress import Progress

        from bench.runner.progress import stats_columns
        from bench.tune.options import OBJECTIVES

        self.metric = metric or OBJECTIVES["eer"]

        self.console = console or Console(stderr=True, markup=False)
        self.live = self.console.is_terminal
        self.trial = ""
        self._epoch = ""
        self.progress: Any = None
        self.epoch_task: Any = None
        if self.live:
            self.progress = Progress(*stats_columns(), console=self.console)
            self.progress.start()
            self.study_task = self.progress.add_task("trials", total=target, stats="")

    def start_trial(self, number: int) -> None:
        self.trial = f"trial {number}"

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        desc = f"epoch {epoch + 1}/{epochs}"
        self._epoch = f"{self.trial} {desc}".lstrip()
        if self.progress is None:
            return
        if self.epoch_task is None:
            self.epoch_task = self.progress.add_task(desc, total=steps, completed=done, stats="")
        else:
            self.progress.reset(self.epoch_task, total=steps, completed=done, description=desc, stats="")

    def step(self, values: dict[str, Any]) -> None:
        if self.progress is not None and self.epoch_task is not None:
            self.progress.update(self.epoch_task, advance=1, stats=f"loss {values['loss']:.3f}")

    def end_epoch(self, row: dict[str, Any]) -> None:
        from bench.runner.progress import epoch_line

        if not self.live:
            self.message(epoch_line(self._epoch or self.trial, row))
            return
        val = row.get(self.metric.key)
        if self.epoch_task is not None and val is not None:
            self.progress.update(self.epoch_task, stats=f"{self.metric.label} {self.metric.show(val)}")

    def message(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(
            text, highlight=False, markup=False, soft_wrap=True
        )
        if not self.live:
            self.console.file.flush()

    def trial_done(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        state = trial.state.name.lower()
        what = f"{self.metric.label} {self.metric.show(trial.value)}" if trial.value is not None else ""
        if trial.state == TrialState.FAIL:
            what = str(trial.user_attrs.get("error", "failed (see run.json)"))
        self.message(f"trial {trial.number}: {state} {what}".rstrip())
        if self.progress is not None:
            best = f"best {self.metric.show(min(values))}" if values else ""
            self.progress.update(self.study_task, completed=finished, stats=best)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
