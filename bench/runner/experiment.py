"""Run an experiment: every (loss, seed) pair trained, evaluated and recorded in its run directory.

``run_experiment`` loads the corpus once, then for each pair: takes the run-directory lock,
decides skip / resume / fresh (:func:`bench.runner.rundir.decide`), writes the resolved config and
``run.json`` (status ``running``), trains, scores the evaluation trials with the final model and
writes ``scores.txt`` and ``metrics.json`` before marking the run ``finished``. Under torchrun only
rank 0 touches the run directory; the other ranks follow its decisions.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.config import ExperimentConfig, config_diff, resolve, to_dict, to_toml, value_at
from bench.data.corpus import Corpus, bad_file_counts
from bench.errors import BenchError
from bench.io import atomic_write, provenance
from bench.results import BUDGET_KEYS, MetricsRecord, Training
from bench.runner import ddp
from bench.runner.convergence import budget_of
from bench.runner.evaluate import Embeddings, TrialScores, evaluate_corpus, write_scores
from bench.runner.optim import max_reductions
from bench.runner.rundir import RunDir, decide
from bench.runner.train import LoaderFn, Reporter, default_loader, train


@dataclass
class RunOutcome:
    """What happened to one (loss, seed) run; the CLI prints a table or JSON of these."""

    loss: str
    seed: int
    run_dir: str
    action: str  # trained | resumed | skipped | failed
    eer: float | None = None
    mindcf: float | None = None
    untrained_eer: float | None = None
    best_val_eer: float | None = None
    wall_seconds: float | None = None
    samples_per_s: float | None = None
    converged: bool | None = None
    budget: dict[str, Any] | None = None  # bench.runner.convergence.Budget: epochs, steps, samples_seen, ...
    error: str | None = None


def run_config(cfg: ExperimentConfig, loss: str, seed: int, losses: list[str] | None = None) -> ExperimentConfig:
    """The resolved config of one run: ``cfg`` with its loss name and seed set, params filled in.

    ``loss.params`` go to every loss of the experiment that has such a parameter, so ``--losses
    softmax,aam`` with a margin changes only ``aam``. A key that no loss of ``losses`` has is an error
    when the user typed it (``cfg.loss.set_params``, from ``--set``) or when no registered loss has it
    at all (a typo in a preset or config file); otherwise (a preset's ``scale`` under ``--losses
    supcon``) it is left out of that run.
    """
    from bench.per_loss import check_table, optim_for
    from losses import LOSSES

    cfg = optim_for(cfg, loss)  # [optim.per_loss.<loss>]: that loss's own optimiser values

    def fields_of(name: str) -> set[str]:
        return {f.name for f in dataclasses.fields(LOSSES.get(name).config_cls)}

    for name, own in cfg.loss.per_loss.items():
        LOSSES.get(name)  # an unknown loss name in [loss.per_loss.<name>] is an error with a suggestion
        check_table("loss", name, own)
        LOSSES.make_config(name, own)  # so is a parameter that loss does not have
    params = dict(cfg.loss.params)
    if params:
        known = fields_of(loss)
        anywhere = set().union(*(fields_of(n) for n in LOSSES.names()))
        for key in params:
            users = [n for n in (losses or [loss]) if key in fields_of(n)]
            if not users and (key in cfg.loss.set_params or key not in anywhere):
                LOSSES.make_config(loss, {key: params[key]})  # raises the registry's "unknown parameter" error
        params = {k: v for k, v in params.items() if k in known}
    # per-loss values win over shared ones, except a preset's per-loss value over a shared one the user
    # typed with --set (the user's own per-loss value wins over everything)
    typed = set(cfg.loss.set_params)
    params.update(
        {k: v for k, v in cfg.loss.per_loss.get(loss, {}).items() if k not in typed or f"{loss}.{k}" in typed}
    )
    one = dataclasses.replace(
        cfg,
        loss=dataclasses.replace(cfg.loss, name=loss, params=params, set_params=[], per_loss={}),
        train=dataclasses.replace(cfg.train, seed=seed),
    )
    return resolve(one)


@dataclass
class PlannedRun:
    """One run to do: its resolved config, its folder and (fine-tuning) the checkpoint it starts from."""

    cfg: ExperimentConfig
    rd: RunDir
    init_from: Path | None = None


def check_repeats(losses: list[str], seeds: list[int]) -> None:
    """Raise BenchError when a loss or seed is named twice (it would train one run folder twice)."""
    for option, items in (("--losses", list(losses)), ("--seeds", list(seeds))):
        repeated = list(dict.fromkeys(str(x) for x in items if items.count(x) > 1))
        if repeated:
            raise BenchError(f"{option} names {', '.join(repeated)} more than once")


def plan_runs(cfg: ExperimentConfig, losses: list[str], seeds: list[int], out: str | Path) -> list[PlannedRun]:
    """Every (loss, seed) run of the experiment, checked before anything trains.

    With ``finetune.name`` set each run fine-tunes ``<out>/<experiment>/<loss>/seed<k>/`` into
    ``<loss>+<recipe>/seed<k>/``: losses the recipe refuses fail first, then any parent that is
    missing, unfinished or trained with other settings (``bench.finetune``). A loss or seed named
    twice is a ``BenchError`` before anything else: it would train the same run folder twice.
    """
    check_repeats(losses, seeds)
    configs = [run_config(cfg, loss, seed, losses) for loss in losses for seed in seeds]
    if not cfg.finetune.name:
        return [PlannedRun(c, RunDir.for_run(out, cfg.experiment, c.loss.name, c.train.seed)) for c in configs]
    from bench.finetune import check_parent, finetune_config, system_name

    parents = [RunDir.for_run(out, cfg.experiment, c.loss.name, c.train.seed).path for c in configs]
    tuned = [finetune_config(c, p) for c, p in zip(configs, parents)]  # refuses losses before reading runs
    return [
        PlannedRun(t, RunDir.for_run(out, cfg.experiment, system_name(t), t.train.seed), check_parent(p, c))
        for c, t, p in zip(configs, tuned, parents)
    ]


def _check_validation(plans: list[Any], corpus: Corpus) -> None:
    """Early stopping and the plateau schedule act on the validation EER: refused before any
    training when the corpus has no validation trials (they would silently do nothing)."""
    if corpus.val_trials is not None and len(corpus.val_trials) > 0:
        return
    for plan in plans:
        uses = []
        if plan.cfg.train.early_stop:
            uses.append("train.early_stop")
        if plan.cfg.optim.scheduler == "plateau":
            uses.append("optim.scheduler='plateau'")
        if uses:
            raise BenchError(
                f"{' and '.join(uses)} act on the validation EER, but corpus {corpus.root} has no validation "
                "trials: set data.val_speakers (held-out training speakers) or choose another schedule "
                "(--set optim.scheduler=cosine --set train.early_stop=false)"
            )


def run_experiment(
    cfg: ExperimentConfig,
    losses: list[str],
    seeds: list[int],
    out: str | Path = "runs",
    *,
    force: bool = False,
    resume: bool = False,
    reporter: Reporter | None = None,
    info: ddp.DistInfo = ddp.DistInfo(),
    device: torch.device = torch.device("cpu"),
    corpus: Corpus | None = None,
    loader_fn: LoaderFn = default_loader,
    jobs: int = 1,
    threads: int | None = None,
) -> list[RunOutcome]:
    """Train and evaluate each loss x seed; returns one outcome per run (failed runs included).

    Configs are all resolved before anything trains, so a typo in a loss name fails at once, and
    so does a fine-tuning run without a finished parent (:func:`plan_runs`). ``jobs`` > 1 trains
    that many runs at once in worker processes with ``threads`` (default: the CPUs split evenly)
    intra-op threads each (:mod:`bench.runner.pool`; CPU only, default loader only).
    """
    plans = plan_runs(cfg, losses, seeds, out)
    if corpus is None:
        from bench.data.corpus import load_corpus

        corpus = load_corpus(cfg.data)
    _check_validation(plans, corpus)
    if jobs > 1 and len(plans) > 1:
        if device.type != "cpu" or info.world_size > 1 or loader_fn is not default_loader:
            raise BenchError("jobs > 1 trains runs side by side on the CPU only (no GPU, torchrun or custom loader)")
        from bench.runner.pool import run_parallel

        return run_parallel(run_planned, plans, corpus, jobs, force=force, resume=resume, reporter=reporter,
                            threads=threads)  # fmt: skip
    untrained_cache: dict[str, Any] = {}
    return [
        run_planned(
            plan,
            corpus,
            force=force,
            resume=resume,
            reporter=reporter,
            info=info,
            device=device,
            loader_fn=loader_fn,
            untrained_cache=untrained_cache,
        )  # fmt: skip
        for plan in plans
    ]


def run_planned(
    plan: PlannedRun,
    corpus: Corpus,
    *,
    reporter: Reporter | None = None,
    info: ddp.DistInfo = ddp.DistInfo(),
    device: torch.device = torch.device("cpu"),
    loader_fn: LoaderFn = default_loader,
    untrained_cache: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RunOutcome:
    """:func:`run_one` of a planned run; a BenchError makes it ``failed`` (reported), not the experiment."""
    try:
        return run_one(plan.cfg, plan.rd, corpus, reporter=reporter, info=info, device=device, loader_fn=loader_fn,
                       untrained_cache=untrained_cache, init_from=plan.init_from, **kwargs)  # fmt: skip
    except BenchError as e:
        # one bad run (NaN loss, a locked directory) should not cost the other runs their results
        if reporter:
            reporter.message(f"{_label(plan.cfg)}: FAILED: {e}")
        return RunOutcome(_name(plan.cfg), plan.cfg.train.seed, str(plan.rd.path), "failed", error=str(e))


def run_one(
    cfg: ExperimentConfig,
    rd: RunDir,
    corpus: Corpus,
    *,
    force: bool = False,
    resume: bool = False,
    reporter: Reporter | None = None,
    info: ddp.DistInfo = ddp.DistInfo(),
    device: torch.device = torch.device("cpu"),
    loader_fn: LoaderFn = default_loader,
    untrained_cache: dict[str, Any] | None = None,
    init_from: Path | None = None,
) -> RunOutcome:
    """One run in ``rd`` (see the module docstring); BenchErrors in training mark it ``failed``.

    ``init_from``: the parent checkpoint a fine-tuning run starts from.
    """
    outcome = RunOutcome(_name(cfg), cfg.train.seed, str(rd.path), "skipped")
    args = (reporter, info, device, loader_fn, untrained_cache, init_from)
    if not info.is_main:
        action = ddp.broadcast_object(None, info)
        if action != "skip":
            _train_and_evaluate(cfg, rd, corpus, action, outcome, *args)
        return outcome
    with rd.lock():
        try:
            action = decide(rd, force=force, resume=resume)
            if action in ("resume", "skip"):
                _check_same_config(cfg, rd, action)
        except BenchError:
            ddp.broadcast_object("skip", info)
            raise
        ddp.broadcast_object(action, info)
        if action == "skip":
            _fill_from_metrics(outcome, rd)
            if reporter:
                reporter.message(f"{_label(cfg)}: finished run in {rd.path}, skipped (--force reruns it)")
            return outcome
        if action == "fresh":
            rd.clear()
            atomic_write(rd.config, to_toml(to_dict(cfg)))
        t0 = time.time()
        prev = rd.read_run_json() if action == "resume" else {}
        rd.update_run_json(
            **provenance(),
            status="running",
            loss=cfg.loss.name,
            seed=cfg.train.seed,
            experiment=cfg.experiment,
            corpus=getattr(corpus, "name", cfg.data.corpus),
            bad_files=bad_file_counts(getattr(corpus, "bad_files", [])),  # left out by data.skip_bad, by kind
            world_size=info.world_size,
            training_device=str(device),
            started=prev.get("started", _now()),
            resumed=prev.get("resumed", 0) + (action == "resume"),
            error=None,
            **_finetune_fields(cfg),
        )
        try:
            _train_and_evaluate(cfg, rd, corpus, action, outcome, *args)
        except BaseException as e:
            msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            rd.update_run_json(status="failed", error=msg, finished=_now(), traceback=traceback.format_exc()[-4000:])
            raise
        rd.update_run_json(
            status="finished",
            finished=_now(),
            wall_seconds=(prev.get("wall_seconds") or 0.0) + time.time() - t0,
            train_seconds=outcome.wall_seconds,
            samples_per_s=outcome.samples_per_s,
            **{**(outcome.budget or {}), "best_val_eer": outcome.best_val_eer},
        )
    return outcome


def _train_and_evaluate(
    cfg: ExperimentConfig,
    rd: RunDir,
    corpus: Corpus,
    action: str,
    outcome: RunOutcome,
    reporter: Reporter | None,
    info: ddp.DistInfo,
    device: torch.device,
    loader_fn: LoaderFn,
    untrained_cache: dict[str, Any] | None = None,
    init_from: Path | None = None,
) -> None:
    # The untrained model depends on the seed, backbone and eval settings only (model weights are
    # drawn before the loss's), so the losses of one seed share one untrained evaluation.
    key = repr((cfg.train.seed, to_dict(cfg.model), to_dict(cfg.eval), to_dict(cfg.data)))
    cache = untrained_cache if untrained_cache is not None else {}
    if reporter is not None and hasattr(reporter, "start_run"):
        reporter.start_run(_name(cfg), cfg.train.seed)

    def untrained(embed: Callable[[pd.DataFrame], Embeddings]) -> dict[str, Any]:
        if key not in cache:
            if reporter:
                reporter.message(f"{_label(cfg)}: scoring the untrained model")
            cache[key] = evaluate_corpus(embed, corpus, cfg.eval)[1].overall
        return cache[key]

    result = train(
        cfg,
        corpus,
        rd,
        info=info,
        device=device,
        resume=action == "resume",
        reporter=reporter,
        loader_fn=loader_fn,
        # a fine-tuning run starts from its parent, whose own folder has the earlier numbers
        untrained_eval=untrained if cfg.eval.untrained and not cfg.finetune.name else None,
        init_from=init_from,
    )
    outcome.action = "resumed" if action == "resume" else "trained"
    outcome.samples_per_s = result.samples_per_s
    outcome.wall_seconds = result.state.train_seconds
    outcome.best_val_eer = result.state.best_val_eer
    budget = budget_of(
        result.state.history,
        steps=result.state.global_step,
        samples=result.state.samples,
        max_epochs=cfg.train.epochs,
        patience=cfg.train.patience,
        min_delta=cfg.train.min_delta,
        max_reductions=max_reductions(cfg.optim),
    ).to_dict()
    outcome.budget, outcome.converged = budget, budget["converged"]
    if not info.is_main:
        return
    from bench.runner.train import embedder

    embed = embedder(result.model, cfg, device)

    if reporter:
        reporter.message(f"{_label(cfg)}: scoring {len(corpus.trials)} evaluation trials")
    scores, record = evaluate_corpus(embed, corpus, cfg.eval)
    record.loss, record.seed = cfg.loss.name, cfg.train.seed
    finetune = cfg.finetune.name
    record.training = Training(
        untrained=result.state.untrained,
        checkpoint=result.checkpoint,
        budget=budget,  # converged, epochs, steps, samples_seen, best_epoch, ... (what the report gates on)
        parent=cfg.finetune.parent if finetune else None,
        finetune={"recipe": finetune, "params": dict(cfg.finetune.params), "init": "best"} if finetune else None,
    )
    llr = _calibrate(embed, corpus, cfg, scores, record.training)
    write_scores(rd.scores, scores, cfg.eval.label_style)
    if llr is not None:
        write_scores(rd.scores_calibrated, dataclasses.replace(scores, scores=llr), cfg.eval.label_style)
    record.write(rd.metrics)
    outcome.eer = record.overall["eer"]
    outcome.mindcf = record.overall.get("mindcf@0.01")
    outcome.untrained_eer = (result.state.untrained or {}).get("eer")


def _calibrate(
    embed: Callable[[pd.DataFrame], Embeddings],
    corpus: Corpus,
    cfg: ExperimentConfig,
    scores: TrialScores,
    training: Training,
) -> np.ndarray | None:
    """Fit ``eval.calibration`` on the validation trials, set ``training.calibration``; the LLRs or None.

    The fit sees only the validation trials; the evaluation labels are read afterwards, to score
    the calibrated LLRs (``actdcf@<p>`` and ``cllr`` are meaningful on these, not on raw cosines).
    """
    from bench.metrics import compute_metrics
    from bench.runner.calibrate import calibrate_eval

    llr, record = calibrate_eval(embed, corpus, cfg.eval, scores)
    if llr is not None:
        overall = compute_metrics(llr, scores.labels, p_targets=tuple(cfg.eval.p_targets), llr=True)
        record["overall"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in overall.items()}
    training.calibration = record
    return llr


def _name(cfg: ExperimentConfig) -> str:
    from bench.finetune import system_name

    return system_name(cfg)


def _label(cfg: ExperimentConfig) -> str:
    """The run as progress lines name it (``aam seed0``, :func:`bench.runner.progress.run_label`)."""
    from bench.runner.progress import run_label

    return run_label(_name(cfg), cfg.train.seed)


def _finetune_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """``parent`` (the run folder a fine-tuning run started from) and ``finetune`` (its recipe)."""
    if not cfg.finetune.name:
        return {}
    return {"parent": cfg.finetune.parent, "finetune": cfg.finetune.name}


def _fill_from_metrics(outcome: RunOutcome, rd: RunDir) -> None:
    record = MetricsRecord.from_json(rd.metrics)
    flat = record.to_json()
    run = rd.read_run_json()
    outcome.eer = record.overall["eer"]
    outcome.mindcf = record.overall.get("mindcf@0.01")
    outcome.untrained_eer = (flat.get("untrained") or {}).get("eer")
    outcome.best_val_eer = flat.get("best_val_eer")
    outcome.converged = flat.get("converged")
    outcome.budget = {k: flat[k] for k in BUDGET_KEYS if k in flat} or None
    outcome.wall_seconds = run.get("train_seconds")
    outcome.samples_per_s = run.get("samples_per_s")


# Settings that say where and how fast a run goes, not what it computes: a finished run is still
# the same result when only these differ.
EXECUTION_KEYS = (
    "data.workers",
    "data.cache_mb",
    "train.device",
    "eval.batch_size",
    "train.log_every",
    "train.checkpoint_every",
)


def _check_same_config(cfg: ExperimentConfig, rd: RunDir, action: str = "resume") -> None:
    """A resumed run must continue, and a skipped run must stand for, the config asked for."""
    if not rd.config.exists():
        return
    from bench.config import read_toml
    from bench.registry import config_from_mapping

    old = read_toml(rd.config)
    try:
        # settings added since the run started (e.g. train.early_stop) take their defaults, not "changed"
        old = to_dict(config_from_mapping(ExperimentConfig, old, where=str(rd.config)))
    except BenchError:
        pass  # a key that no longer exists: compare the file as written
    new = to_dict(cfg)
    diffs = [d for d in sorted(config_diff(old, new, empty_equal=True, missing_ok=True)) if d not in EXECUTION_KEYS]
    if not diffs:
        return
    shown = ", ".join(f"{k}: {value_at(old, k)!r} -> {value_at(new, k)!r}" for k in diffs[:6])
    more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    what = "--resume of a run started" if action == "resume" else "a finished run is here"
    raise BenchError(
        f"{what} with another config ({shown}{more}); pass --force to replace it, or keep both with another "
        "experiment name (bench run --experiment NAME) or runs folder (--out DIR)",
        path=rd.config,
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
