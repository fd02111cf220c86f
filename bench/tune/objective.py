"""The objective of a study: train one trial as a normal run directory, report a validation metric.

Objective value: a validation metric (``--objective``, :data:`bench.tune.options.OBJECTIVES`: the
EER in percent, or minDCF at ``eval.p_targets[0]``; lower is better) on the validation trials of
held-out training speakers (``corpus.val_trials``), of the weights ``bench run`` scores: the last
epoch's, or under ``train.early_stop`` the best-validation-EER epoch's (the plateau rule and the
checkpoint choice stay on the EER whatever the objective, as in ``bench run``). Every validated
epoch is reported with ``trial.report(value, epoch)`` so the pruner can stop trials that are
clearly worse than the others at the same epoch.

The evaluation trials are never scored here: a trial runs :func:`bench.runner.train.train`
alone (no final scoring, no untrained baseline), so its run directory holds ``config.toml``,
``run.json``, ``train_log.csv`` and ``epochs.csv`` but no ``scores.txt``/``metrics.json``, and
``bench report`` does not mistake trials for results.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import ExperimentConfig, to_dict, to_toml
from bench.errors import BenchError
from bench.runner.rundir import RunDir
from bench.runner.train import NullReporter, Reporter
from bench.tune.options import OBJECTIVES, Metric
from bench.tune.space import ParamSpec

#: ``train_fn(cfg, run_dir, reporter)`` trains one trial and calls ``reporter.end_epoch(row)`` with
#: ``row["epoch"]`` (1-based) and ``row["val_eer"]`` after each epoch. Tests pass a stand-in.
TrainFn = Callable[[ExperimentConfig, RunDir, Reporter], None]


def trial_dir(study_dir: str | Path, loss: str, number: int) -> RunDir:
    """``<study_dir>/<loss>/trial<NNNN>``: a run directory per trial, numbered as in the study."""
    return RunDir(Path(study_dir) / loss / f"trial{number:04d}")


def trial_config(base: ExperimentConfig, loss: str, values: dict[str, Any], experiment: str) -> ExperimentConfig:
    """The resolved config of one trial: ``base`` with the trial's values filled in.

    ``values`` holds loss parameters (bare names, into ``loss.params``) and dotted config keys
    (``optim.lr``, set in that section after the preset's per-loss values, so the trial's win).
    """
    from bench.runner.experiment import run_config
    from bench.tune.keys import with_values
    from bench.tune.space import split_values

    params, keys = split_values(values)
    cfg = dataclasses.replace(
        base,
        experiment=experiment,
        # the trial's values win over the preset's own for this loss ([loss.per_loss.<loss>])
        loss=dataclasses.replace(
            base.loss, name=loss, params={**base.loss.params, **base.loss.per_loss.get(loss, {}), **params}, per_loss={}
        ),
    )
    return with_values(run_config(cfg, loss, base.train.seed), keys)


def runner_train_fn(corpus: Any, device: Any) -> TrainFn:
    """The real trainer: :func:`bench.runner.train.train` on ``corpus`` without evaluation scoring."""
    from bench.runner.train import train

    def fn(cfg: ExperimentConfig, rd: RunDir, reporter: Reporter) -> None:
        train(cfg, corpus, rd, device=device, reporter=reporter)

    return fn


class TrialReporter:
    """Forwards progress to ``inner`` and turns each epoch's objective metric into ``trial.report``.

    ``values`` holds ``(epoch, metric)`` per validated epoch, ``eers`` ``(epoch, validation EER)``
    (which epoch ``bench run`` scores under early stopping). Raises ``optuna.TrialPruned`` from
    ``end_epoch`` when the pruner says so; the train loop has written that epoch's logs and
    checkpoint by then, so a pruned trial's files are consistent.
    """

    def __init__(self, trial: Any, inner: Reporter | None = None, metric: Metric = OBJECTIVES["eer"]):
        self.trial = trial
        self.inner = inner or NullReporter()
        self.metric = metric
        self.values: list[tuple[int, float]] = []
        self.eers: list[tuple[int, float]] = []

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.inner.start_epoch(epoch, epochs, steps, done)

    def step(self, values: dict[str, Any]) -> None:
        self.inner.step(values)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def end_epoch(self, row: dict[str, Any]) -> None:
        import optuna

        self.inner.end_epoch(row)
        val, eer = row.get(self.metric.key), row.get("val_eer")
        if val is None or eer is None:
            return  # an epoch without validation (train.validate_every > 1)
        epoch = int(row["epoch"])
        self.trial.report(float(val), epoch)
        self.values.append((epoch, float(val)))
        self.eers.append((epoch, float(eer)))
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned after epoch {epoch}: validation {self.metric.name} {self.metric.show(val)}"
            )


class Objective:
    """``objective(trial) -> validation metric of the scored weights``; one run directory per trial under ``study_dir``."""

    def __init__(
        self,
        base: ExperimentConfig,
        loss: str,
        space: list[ParamSpec],
        study_dir: str | Path,
        train_fn: TrainFn,
        *,
        reporter: Reporter | None = None,
        keep_checkpoints: bool = False,
        corpus_name: str = "",
        device: str = "cpu",
        metric: Metric = OBJECTIVES["eer"],
    ):
        self.base, self.loss, self.space = base, loss, space
        self.metric = metric
        self.study_dir = Path(study_dir)
        self.train_fn = train_fn
        self.reporter = reporter
        self.keep_checkpoints = keep_checkpoints
        self.corpus_name = corpus_name or base.data.corpus
        self.device = device

    def __call__(self, trial: Any) -> float:
        import optuna

        from bench.io import atomic_write, provenance

        params = {s.name: s.suggest(trial) for s in self.space}
        cfg = trial_config(self.base, self.loss, params, self.study_dir.name)
        rd = trial_dir(self.study_dir, self.loss, trial.number)
        trial.set_user_attr("run_dir", str(rd.path))
        rep = TrialReporter(trial, self.reporter, self.metric)
        if self.reporter is not None:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            self.reporter.message(f"trial {trial.number}: {shown}")
            if hasattr(self.reporter, "start_trial"):  # labels the epoch lines of bench tune's progress
                self.reporter.start_trial(trial.number)
        with rd.lock():
            if rd.status() != "new":
                # Optuna never reuses a trial number within a study; leftovers mean a study of the same
                # name was deleted and created again, and finished runs are never silently replaced.
                raise BenchError("trial folder already holds a run; remove it or use another --study", path=rd.path)
            atomic_write(rd.config, to_toml(to_dict(cfg)))
            t0 = time.time()
            rd.update_run_json(
                **provenance(),
                status="running",
                loss=self.loss,
                seed=cfg.train.seed,
                experiment=cfg.experiment,
                corpus=self.corpus_name,
                training_device=self.device,
                started=_now(),
                tune={"study": trial.study.study_name, "trial": trial.number, "params": params},
            )
            try:
                self.train_fn(cfg, rd, rep)
            except optuna.TrialPruned as e:
                rd.update_run_json(
                    status="pruned", finished=_now(), wall_seconds=time.time() - t0, error=str(e), val_eers=rep.eers
                )
                self._drop_checkpoints(rd)
                raise
            except BaseException as e:
                msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
                rd.update_run_json(status="failed", finished=_now(), wall_seconds=time.time() - t0, error=msg)
                trial.set_user_attr("error", msg[:500])
                self._drop_checkpoints(rd)
                raise
            if not rep.values:
                rd.update_run_json(status="failed", finished=_now(), error=f"no {self.metric.text}")
                raise BenchError(
                    f"the trial reported no {self.metric.text}: the corpus needs validation trials "
                    "(data.val_speakers > 0 or dev/val_trials.lst) and train.validate_every > 0"
                )
            best_eer = min(v for _, v in rep.eers)
            # the weights bench run will score: the first epoch of the best validation EER (as the train
            # loop keeps them: only a strictly lower EER replaces them) under early stopping, else the last
            scored = next(i for i, (_, v) in enumerate(rep.eers) if v == best_eer) if cfg.train.early_stop else -1
            value = rep.values[scored][1]
            trial.set_user_attr("best_val_eer", best_eer)
            trial.set_user_attr("scored_epoch", rep.eers[scored][0])
            rd.update_run_json(
                status="finished",
                finished=_now(),
                wall_seconds=time.time() - t0,
                objective=self.metric.key,
                objective_value=value,
                val_eer=rep.eers[scored][1],
                best_val_eer=best_eer,
                val_eers=rep.eers,
                **({f"{self.metric.key}s": rep.values} if self.metric.key != "val_eer" else {}),
            )
            self._drop_checkpoints(rd)
        return value

    def _drop_checkpoints(self, rd: RunDir) -> None:
        # A trial is never resumed (a killed trial is re-run as a new one) and the final model is
        # trained by `bench run`, so checkpoints only cost disk (two ECAPA copies per trial).
        if not self.keep_checkpoints:
            shutil.rmtree(rd.checkpoints, ignore_errors=True)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
