"""Run a study: open (or join) it in its storage and start trials until it has ``trials`` finished.

Several workers (processes, machines) may run the same command against one storage. Each one,
before every trial, counts the study's finished (COMPLETE + PRUNED) and RUNNING trials:

- finished >= target: the study is done, the worker stops;
- finished + running >= target: the running trials of other workers would complete it, so the
  worker waits for them (a dead worker's trial turns FAIL after the heartbeat grace period and
  then this worker takes its place). Without a heartbeat (journal storage) it stops instead;
- otherwise it starts one trial.

So the workers together finish exactly ``trials`` trials, up to the few milliseconds between
counting and creating a trial. Optuna's ``MaxTrialsCallback`` alone stops a worker only after
its own trial ends, so N workers would overshoot by up to N-1 trials.

A worker that was killed (or a Ctrl-C, which Optuna records as FAIL) loses only its current
trial: rerunning the same command resumes the study from its storage.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import ExperimentConfig, config_diff, to_dict
from bench.errors import BenchError
from bench.runner.train import Reporter
from bench.tune.objective import Objective, TrainFn
from bench.tune.options import TuneConfig
from bench.tune.space import ParamSpec
from bench.tune.storage import default_storage, fail_stale, heartbeat_enabled, open_storage, redact

# Keys of the experiment config that may differ between the workers of one study (machine-specific).
MACHINE_KEYS = (
    "data.root",
    "data.eval_root",
    "data.musan",
    "data.rirs",
    "data.workers",
    "train.device",
    "eval.batch_size",
)


def _tpe_class() -> type:
    from optuna.samplers import TPESampler

    class TrialSeededTPE(TPESampler):
        """TPE whose random draws for trial k depend on (seed, k) only.

        With a plain seeded TPESampler every worker of a study would draw the same start-up
        parameters; seeding per trial number (unique across workers) keeps a single-worker study
        reproducible and gives parallel workers different trials.
        """

        def __init__(self, *, seed: int, **kwargs: Any):
            super().__init__(seed=seed, **kwargs)
            self._bench_seed = seed

        def before_trial(self, study: Any, trial: Any) -> None:
            s = int(np.random.SeedSequence([self._bench_seed, trial.number]).generate_state(1)[0])
            for holder in (self, getattr(self, "_random_sampler", None)):
                rng = getattr(getattr(holder, "_rng", None), "rng", None)
                if rng is not None:  # private in Optuna; without it, only reproducibility is lost
                    rng.seed(s)
            super().before_trial(study, trial)

    return TrialSeededTPE


def make_sampler(tune: TuneConfig) -> Any:
    import optuna

    with warnings.catch_warnings():
        # multivariate TPE models margin x temperature jointly; Optuna flags it experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _tpe_class()(seed=tune.seed, n_startup_trials=tune.startup_trials, multivariate=True, constant_liar=True)


def make_pruner(tune: TuneConfig, epochs: int) -> Any:
    import optuna

    if tune.pruner == "median":
        # Optuna prunes from step n_warmup_steps on and our steps are 1-based epochs: + 1 keeps the
        # first warmup_epochs epochs free of pruning
        return optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=tune.warmup_epochs + 1)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class StudyRun:
    """What one worker did; the study's state is in its storage (see :mod:`bench.tune.summary`)."""

    study: Any
    storage: str
    study_dir: Path
    started: int  # trials this worker started
    stopped: str  # done | waited-out | attempts


def definition(base: ExperimentConfig, tune: TuneConfig, space: list[ParamSpec], origin: dict[str, Any]) -> dict:
    """What every worker of a study must agree on, stored in the study's user attributes."""
    from bench.runner.experiment import run_config

    cfg = to_dict(run_config(base, tune.loss, base.train.seed))
    for name in (s.name for s in space):
        # a searched setting's base value is replaced in every trial: the workers need not agree on it
        section, _, key = name.rpartition(".")
        (cfg[section] if section else cfg["loss"]["params"]).pop(key, None)
    for key in MACHINE_KEYS:
        sec, k = key.split(".")
        cfg[sec].pop(k, None)
    # always {} once run_config applied it; left out so studies stored before the key existed still match
    cfg["optim"].pop("per_loss", None)
    return {
        "loss": tune.loss,
        "objective": tune.objective,
        "space": [s.text() for s in space],
        "experiment": base.experiment,
        "config": cfg,
        "origin": origin,  # preset / config file / --set list: rebuilds the `bench run` command
        "epochs": base.train.epochs,
    }


def _check_definition(study: Any, want: dict[str, Any]) -> None:
    have = study.user_attrs
    if not have.get("space"):
        for k, v in want.items():
            study.set_user_attr(k, v)
        return
    diffs = [k for k in ("loss", "space", "experiment") if have.get(k) != want[k]]
    if have.get("objective", "eer") != want["objective"]:  # studies from before --objective minimised the EER
        diffs.append(f"--objective {have.get('objective', 'eer')}")
    diffs += config_diff(have.get("config", {}), want["config"])
    if diffs:
        raise BenchError(
            f"study '{study.study_name}' was created with different settings ({', '.join(diffs[:6])}); "
            "give the same --loss/--param/--preset/--set, or start a new --study"
        )


def run_study(
    base: ExperimentConfig,
    tune: TuneConfig,
    space: list[ParamSpec],
    train_fn: TrainFn,
    *,
    reporter: Reporter | None = None,
    origin: dict[str, Any] | None = None,
    corpus_name: str = "",
    device: str = "cpu",
    on_trial: Any = None,
) -> StudyRun:
    """Join or create the study and start trials until it holds ``tune.trials`` finished ones.

    ``on_trial(study, frozen_trial)`` is called after each trial this worker ran.
    """
    import optuna
    from optuna.trial import TrialState

    tune.validate()
    if base.train.validate_every < 1:
        raise BenchError("bench tune needs a validation EER per epoch: set train.validate_every >= 1")
    name = tune.study_name(base.experiment)
    url = tune.storage or default_storage(tune.out, name)
    storage = open_storage(url, tune.heartbeat_seconds, tune.grace_seconds)
    study_dir = tune.study_dir(base.experiment)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported by bench, not Optuna's logger
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="minimize",
            sampler=make_sampler(tune),
            pruner=make_pruner(tune, base.train.epochs),
            load_if_exists=True,
        )
    except Exception as e:  # storage errors surface here (e.g. a PostgreSQL server that went away)
        raise BenchError(f"--storage {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    _check_definition(study, definition(base, tune, space, origin or {}))
    if (
        not study.get_trials(deepcopy=False)
        and (study_dir / tune.loss).exists()
        and any((study_dir / tune.loss).glob("trial*"))
    ):
        raise BenchError(
            f"study '{name}' is new but {study_dir / tune.loss} holds trials of an earlier study; "
            "remove that folder or choose another --study",
        )
    study.set_user_attr("study_dir", str(study_dir))
    objective = Objective(
        base, tune.loss, space, study_dir, train_fn,
        reporter=reporter, keep_checkpoints=tune.keep_checkpoints, corpus_name=corpus_name, device=device,
        metric=tune.metric,
    )  # fmt: skip
    callbacks = [on_trial] if on_trial else []
    started, waited_since = 0, None
    while True:
        fail_stale(study, storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
        running = sum(s == TrialState.RUNNING for s in states)
        if done >= tune.trials:
            stopped = "done"
            break
        if started >= tune.trials:
            # every trial of this worker failed or others keep failing: do not loop forever
            stopped = "attempts"
            break
        if done + running >= tune.trials:
            if not heartbeat_enabled(storage):
                stopped = "waited-out"
                break
            if waited_since is None:
                waited_since = time.time()
                if reporter is not None:
                    reporter.message(f"waiting for {running} running trial(s) of other workers")
            time.sleep(tune.poll_seconds)
            continue
        waited_since = None
        started += 1
        # BenchError (e.g. NaN losses for an extreme temperature) fails one trial, not the study
        study.optimize(objective, n_trials=1, catch=(BenchError,), callbacks=callbacks)
    return StudyRun(study=study, storage=url, study_dir=study_dir, started=started, stopped=stopped)
