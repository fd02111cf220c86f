"""The training loop: one (loss, seed) run, resumable bit-for-bit from its last checkpoint.

Determinism: the torch generator is re-seeded from (seed, epoch, batch, rank) before every step,
so the random draws of a step (SpecAugment, dropout) do not depend on what ran before it in the
process (evaluation, a data-loader iterator, a resume). Together with the loader being a function
of (seed, epoch, start_batch) and the checkpointed optimizer/scheduler/scaler/margin states, a
resumed run repeats exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.config import ExperimentConfig, to_dict
from bench.data.ondevice import views_on_device
from bench.errors import BenchError
from bench.runner import ddp
from bench.runner.checkpoint import load_checkpoint, rng_state, save_checkpoint, scored_weights, set_rng_state
from bench.runner.convergence import Plateau
from bench.runner.evaluate import Embeddings, embed_utterances, validation_metrics
from bench.runner.optim import (
    amp_mode,
    autocast,
    build_optimizer,
    build_scheduler,
    make_scaler,
    max_reductions,
    set_reductions,
)
from bench.runner.rundir import RunDir
from models.speed import prepare_for_training

LOG_COLUMNS = ["epoch", "batch", "global_step", "loss", "accuracy", "lr", "samples_per_s", "bad_steps"]
EPOCH_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "lr",
    "val_eer",
    "val_mindcf",
    "bad_steps",
    "train_seconds",
    "samples_per_s",
]


class Reporter(Protocol):
    """Progress sink (Rich bars in the CLI, nothing in ``--json``/quiet mode and tests)."""

    def start_run(self, loss: str, seed: int) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...
    def step(self, values: dict[str, Any]) -> None: ...
    def end_epoch(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class NullReporter:
    def start_run(self, loss: str, seed: int) -> None:
        pass

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        pass

    def step(self, values: dict[str, Any]) -> None:
        pass

    def end_epoch(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class TrainState:
    """Position and counters; saved in every checkpoint (``batch`` = sampler position in ``epoch``)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    bad_steps: int = 0
    loss_sum: float = 0.0
    acc_sum: float = 0.0
    acc_n: int = 0
    n_steps: int = 0
    samples: int = 0
    epoch_samples: int = 0
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0
    best_val_eer: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    untrained: dict[str, Any] | None = None
    plateau: dict[str, Any] | None = None  # bench.runner.convergence.Plateau counters (early stopping)


@dataclass
class TrainResult:
    model: torch.nn.Module  # unwrapped, on the training device, in eval mode
    loss: torch.nn.Module
    state: TrainState
    checkpoint: str = "last"  # which weights ``model`` holds: last | best (early stopping restores the best)

    @property
    def samples_per_s(self) -> float:
        return self.state.samples / self.state.train_seconds if self.state.train_seconds > 0 else 0.0


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """A distinct 63-bit seed per (seed, epoch, batch, rank), stable across processes and resumes."""
    x = (seed * 1_000_003 + epoch) * 1_000_033 + batch
    return (x * 7919 + rank) % (2**63 - 1)


def build_components(cfg: ExperimentConfig, num_classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Model and loss module, initialised from ``train.seed`` (identical for every loss of a seed)."""
    from losses import LOSSES
    from models import build_model

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    loss = LOSSES.build(cfg.loss.name, cfg.loss.params, model.embed_dim, num_classes)
    return model, loss


def default_loader(corpus: Any, cfg: ExperimentConfig, *, epoch: int, info: ddp.DistInfo, start_batch: int):
    from bench.data.loader import make_train_loader

    return make_train_loader(
        corpus,
        cfg.data,
        seed=cfg.train.seed,
        epoch=epoch,
        rank=info.rank,
        world_size=info.world_size,
        start_batch=start_batch,
        num_batches=cfg.train.steps_per_epoch or None,
    )


LoaderFn = Callable[..., Any]


def steps_per_epoch(cfg: ExperimentConfig, corpus: Any, loader_fn: LoaderFn, info: ddp.DistInfo) -> int:
    """``train.steps_per_epoch``, or the loader's length (one pass over the training utterances)."""
    if cfg.train.steps_per_epoch > 0:
        return cfg.train.steps_per_epoch
    loader = loader_fn(corpus, cfg, epoch=0, info=info, start_batch=0)
    try:
        n = getattr(loader, "num_batches", None) or len(loader)
    except TypeError:
        batch = cfg.data.speakers_per_batch * cfg.data.utts_per_speaker
        n = len(corpus.train) // batch
    if n < 1:
        raise BenchError(
            f"the training set ({len(corpus.train)} utterances) is smaller than one batch "
            f"({cfg.data.speakers_per_batch} speakers x {cfg.data.utts_per_speaker} utterances)"
        )
    return int(n)


class _Logs:
    """``train_log.csv`` (appended per logged step) and ``epochs.csv`` (rewritten atomically per epoch)."""

    def __init__(self, rd: RunDir | None, resume_step: int | None):
        self.rd = rd
        self.header: list[str] | None = None
        if rd is None:
            return
        rd.path.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            rd.train_log.unlink(missing_ok=True)
        elif rd.train_log.exists():
            # rows written after the checkpoint will be written again by the resumed run
            with rd.train_log.open(newline="") as fh:
                rows = list(csv.reader(fh))
            if rows:
                self.header = rows[0]
                col = self.header.index("global_step")
                keep = [r for r in rows[1:] if len(r) == len(self.header) and int(r[col]) <= resume_step]
                from bench.io import atomic_open

                with atomic_open(rd.train_log, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerows([self.header, *keep])

    def step(self, row: dict[str, Any]) -> None:
        if self.rd is None:
            return
        new = self.header is None
        if self.header is None:
            self.header = LOG_COLUMNS + sorted(k for k in row if k not in LOG_COLUMNS)
        with self.rd.train_log.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.header)
            w.writerow([_fmt(row.get(k)) for k in self.header])

    def epochs(self, history: list[dict[str, Any]]) -> None:
        if self.rd is None:
            return
        from bench.io import atomic_open

        with atomic_open(self.rd.epochs_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(EPOCH_COLUMNS)
            for r in history:
                w.writerow([_fmt(r.get(k)) for k in EPOCH_COLUMNS])


def _fmt(v: Any) -> str:
    if v is None:
        return ""  # e.g. accuracy of a loss without a classifier
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def embedder(model: torch.nn.Module, cfg: ExperimentConfig, device: torch.device) -> Callable[[Any], Embeddings]:
    """``index -> Embeddings`` of ``model`` under the run's eval settings, audio rules and AMP mode."""
    amp = amp_mode(cfg.train.amp, device)
    return lambda index: embed_utterances(
        model,
        index,
        cfg.eval,
        device=device,
        sample_rate=cfg.data.sample_rate,
        resample=cfg.data.resample,
        autocast=lambda: autocast(amp, device),
    )


@dataclass
class _Run:
    """Everything one training run carries from step to step (see :func:`train`)."""

    cfg: ExperimentConfig
    corpus: Any
    info: ddp.DistInfo
    device: torch.device
    rep: Reporter
    loader_fn: LoaderFn
    model: torch.nn.Module  # unwrapped: checkpoints, validation and the result use it
    loss_mod: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp: Any
    margin: Any  # losses.schedule.MarginScheduler
    steps: int  # batches per epoch
    state: TrainState
    main: RunDir | None  # the run folder on rank 0, None on the other ranks (they write nothing)
    best_weights: dict[str, torch.Tensor] | None = None  # early stopping scores these (best validation EER)
    logs: Any = None  # _Logs, opened once the state is known (after a resume)
    train_model: torch.nn.Module | None = None  # model as trained: compiled / DDP-wrapped
    train_loss: torch.nn.Module | None = None
    plateau: Plateau | None = None
    ema: Any = None  # torch.optim.swa_utils.AveragedModel of ``model`` under train.ema_decay > 0

    @property
    def scored_model(self) -> torch.nn.Module:
        """The weights validation and scoring use: the weight average when kept, else the trained ones."""
        return self.model if self.ema is None else self.ema.module

    def embed_fn(self, m: torch.nn.Module) -> Callable[[Any], Embeddings]:
        return embedder(m, self.cfg, self.device)

    def checkpoint(self, best: bool = False) -> None:
        """``last.pt`` (and ``best.pt``) on rank 0: weights, optimiser, schedules, RNG, state, config."""
        if self.main is None:
            return
        data = {
            "model": self.model.state_dict(),
            "loss": self.loss_mod.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "margin": self.margin.state_dict(),
            "rng": rng_state(),
            "state": dataclasses.asdict(self.state),
            "config": to_dict(self.cfg),
        }
        if self.ema is not None:
            data["ema"] = self.ema.module.state_dict()
            data["ema_updates"] = int(self.ema.n_averaged)
        save_checkpoint(self.main.last, data)
        if best:
            save_checkpoint(self.main.best, data)


def train(
    cfg: ExperimentConfig,
    corpus: Any,
    rd: RunDir | None,
    *,
    info: ddp.DistInfo = ddp.DistInfo(),
    device: torch.device = torch.device("cpu"),
    resume: bool = False,
    reporter: Reporter | None = None,
    loader_fn: LoaderFn = default_loader,
    untrained_eval: Callable[[Callable[[Any], Embeddings]], dict[str, Any]] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train ``cfg.loss.name`` on ``corpus``; checkpoints and logs go to ``rd`` (rank 0 only).

    ``resume`` continues from ``rd.last``. ``untrained_eval(embed)``, when given, is called once
    before the first step of a fresh run and its result kept in the checkpointed state (so that a
    resumed run still reports it). ``init_from`` (a checkpoint, e.g. the parent of a fine-tuning
    run) gives a fresh run its model and loss weights. Raises BenchError when more than
    ``train.max_bad_steps`` steps had a non-finite loss. With ``train.early_stop`` the run ends at its
    validation plateau (:mod:`bench.runner.convergence`) and the returned model holds the
    best-validation weights (``TrainResult.checkpoint == "best"``).

    The steps: :func:`_setup` (components, optimiser, schedules; a resume restores them),
    :func:`_start` (the untrained baseline, the model prepared for training), then per epoch
    :func:`_train_epoch` (the optimisation steps) and :func:`_end_epoch` (validation, best weights,
    plateau, checkpoint, logs), and :func:`_finish` (the weights to score).
    """
    run = _setup(cfg, corpus, rd, info, device, reporter or NullReporter(), loader_fn, resume, init_from)
    _start(run, untrained_eval, resume)
    tc, plateau = cfg.train, run.plateau
    assert plateau is not None
    for epoch in range(run.state.epoch, tc.epochs):
        if tc.early_stop and plateau.plateaued:
            break  # a resumed run that had already stopped early
        lr = _train_epoch(run, epoch)
        if _end_epoch(run, epoch, lr):
            break
    return _finish(run)


def _setup(
    cfg: ExperimentConfig,
    corpus: Any,
    rd: RunDir | None,
    info: ddp.DistInfo,
    device: torch.device,
    rep: Reporter,
    loader_fn: LoaderFn,
    resume: bool,
    init_from: str | Path | None,
) -> _Run:
    """Model and loss (initial weights from ``init_from``), optimiser, lr schedule, AMP scaler and
    margin schedule; with ``resume`` all of them, the RNG and the counters from ``rd.last``."""
    tc = cfg.train
    amp = amp_mode(tc.amp, device)
    model, loss_mod = build_components(cfg, len(corpus.speakers))
    if init_from is not None and not resume:
        from bench.finetune import load_initial_weights

        init = load_checkpoint(init_from, map_location="cpu") if info.is_main else None
        load_initial_weights(model, loss_mod, init_from, ddp.broadcast_object(init, info))
    model.to(device)
    loss_mod.to(device)
    ema = weight_average(model, tc.ema_decay)
    params = [p for m in (model, loss_mod) for p in m.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim)
    steps = steps_per_epoch(cfg, corpus, loader_fn, info)
    scheduler = build_scheduler(optimizer, cfg.optim, tc.epochs, steps)
    scaler = make_scaler(amp, device)
    from losses.schedule import MarginScheduler

    lc = cfg.loss
    margin = MarginScheduler(loss_mod, lc.margin_warmup_epochs, lc.margin_start_epoch, lc.margin_shape)
    run = _Run(
        cfg, corpus, info, device, rep, loader_fn, model, loss_mod, optimizer, scheduler, scaler, amp, margin,
        steps, TrainState(), rd if info.is_main else None, ema=ema,
    )  # fmt: skip
    if resume:
        _restore(run, rd)
    run.logs = _Logs(run.main, run.state.global_step if resume else None)
    return run


def _restore(run: _Run, rd: RunDir | None) -> None:
    """Every state of ``rd.last`` (read on rank 0, broadcast); under early stopping also the best weights."""
    ckpt = load_checkpoint(rd.last, map_location="cpu") if (rd is not None and run.info.is_main) else None
    ckpt = ddp.broadcast_object(ckpt, run.info)
    run.model.load_state_dict(ckpt["model"])
    run.loss_mod.load_state_dict(ckpt["loss"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.margin.load_state_dict(ckpt["margin"])
    if run.ema is not None:
        if ckpt.get("ema") is None:
            raise BenchError(
                "train.ema_decay > 0 but the checkpoint holds no weight average: it was written without one",
                path=rd.last if rd is not None else None,
            )
        run.ema.module.load_state_dict(ckpt["ema"])
        run.ema.n_averaged.fill_(int(ckpt["ema_updates"]))
    set_rng_state(ckpt["rng"])
    run.state = TrainState(**ckpt["state"])
    if run.cfg.train.early_stop and run.main is not None and run.main.best.exists():
        run.best_weights = scored_weights(load_checkpoint(run.main.best, map_location="cpu"))
    st = run.state
    run.rep.message(f"resumed at epoch {st.epoch + 1}, batch {st.batch} (step {st.global_step})")


def _start(
    run: _Run, untrained_eval: Callable[[Callable[[Any], Embeddings]], dict[str, Any]] | None, resume: bool
) -> None:
    """The untrained baseline (fresh runs, rank 0), then the model prepared for training and wrapped
    for DDP, both modules in train mode, and the plateau counters of the state."""
    cfg, info, device = run.cfg, run.info, run.device
    if untrained_eval is not None and not resume and info.is_main:
        run.state.untrained = untrained_eval(run.embed_fn(run.model))
    ddp.barrier(info)

    # channels-last / torch.compile where measured to help on this device (models/speed.py)
    tc = cfg.train
    train_model = prepare_for_training(
        run.model, cfg.model.backbone, device, steps=tc.epochs * run.steps, compile=tc.compile
    )
    run.train_model = ddp.wrap(train_model, info, device)
    run.train_loss = ddp.wrap(run.loss_mod, info, device)
    run.train_model.train()
    run.train_loss.train()
    run.plateau = Plateau.from_state(run.state.plateau, tc.patience, tc.min_delta, max_reductions(cfg.optim))


def _train_epoch(run: _Run, epoch: int) -> float:
    """The optimisation steps of ``epoch`` from the state's batch position (mid-epoch on a resume);
    returns the lr of its last step (the epoch's row reports it)."""
    cfg, tc, state, steps = run.cfg, run.cfg.train, run.state, run.steps
    start = state.batch if epoch == state.epoch else 0
    if start == 0:
        state.loss_sum = state.acc_sum = 0.0
        state.acc_n = state.n_steps = state.epoch_samples = 0
        state.epoch_seconds = 0.0
    run.rep.start_epoch(epoch, tc.epochs, steps, start)
    it = iter(run.loader_fn(run.corpus, cfg, epoch=epoch, info=run.info, start_batch=start))
    t_last = time.perf_counter()
    lr: float = run.optimizer.param_groups[0]["lr"]
    for b in range(start, steps):
        try:
            waves, labels = next(it)
        except StopIteration:
            break
        waves = views_on_device(waves, run.device)  # data.augment_on="device": the views are made here
        torch.manual_seed(step_seed(tc.seed, epoch, b, run.info.rank))
        run.margin.step(epoch + b / steps)
        lr = run.optimizer.param_groups[0]["lr"]  # the lr this step uses (the scheduler moves it after)
        assert run.train_model is not None and run.train_loss is not None
        values = _train_step(
            run.train_model, run.train_loss, run.optimizer, run.scaler, run.amp, run.device, run.info, waves, labels,
            cfg.optim.grad_clip,
        )  # fmt: skip
        with warnings.catch_warnings():
            # a skipped (NaN) first step trips torch's "scheduler before optimizer" warning; the lr
            # is a function of the batch position by design, so the order does not matter here
            warnings.simplefilter("ignore", UserWarning)
            run.scheduler.step()
        state.batch = b + 1
        state.global_step += 1
        now = time.perf_counter()
        dt, t_last = now - t_last, now
        state.epoch_seconds += dt
        state.train_seconds += dt
        if values is None:
            _skipped_step(run, epoch, b)
            continue
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        _record_step(run, epoch, b, lr, values)
        if tc.checkpoint_every > 0 and state.global_step % tc.checkpoint_every == 0 and state.batch < steps:
            run.checkpoint()
    return lr


def _skipped_step(run: _Run, epoch: int, b: int) -> None:
    """A step whose loss was not finite: counted, and the run stops past ``train.max_bad_steps``."""
    state, tc = run.state, run.cfg.train
    state.bad_steps += 1
    run.rep.message(f"non-finite loss at epoch {epoch + 1} batch {b}: step skipped ({state.bad_steps} so far)")
    if state.bad_steps > tc.max_bad_steps:
        raise BenchError(
            f"training stopped: {state.bad_steps} steps had a NaN/inf loss "
            f"(train.max_bad_steps={tc.max_bad_steps}); lower optim.lr, enable optim.grad_clip "
            "or check the data"
        )


def _record_step(run: _Run, epoch: int, b: int, lr: float, values: dict[str, Any]) -> None:
    """Counters of a finished step, its row to the reporter and (every ``train.log_every``) the log."""
    state, tc = run.state, run.cfg.train
    n_utts = int(values.pop("batch"))
    state.samples += n_utts
    state.epoch_samples += n_utts
    state.n_steps += 1
    state.loss_sum += values["loss"]
    if values.get("accuracy") is not None:
        state.acc_sum += values["accuracy"]
        state.acc_n += 1
    sps = state.epoch_samples / state.epoch_seconds if state.epoch_seconds > 0 else 0.0
    row = {
        "epoch": epoch + 1,
        "batch": b + 1,
        "global_step": state.global_step,
        "lr": lr,
        "samples_per_s": sps,
        "bad_steps": state.bad_steps,
        **values,
    }
    run.rep.step(row)
    if tc.log_every > 0 and (b + 1) % tc.log_every == 0:
        run.logs.step(row)


def _end_epoch(run: _Run, epoch: int, lr: float) -> bool:
    """Validation EER (every ``train.validate_every`` epochs and the last), the epoch's row, the best
    weights, the plateau counters, the checkpoint and the logs; True when early stopping ends the run."""
    cfg, tc, state, info, plateau = run.cfg, run.cfg.train, run.state, run.info, run.plateau
    assert plateau is not None
    measured: dict[str, float] | None = None
    if tc.validate_every > 0 and ((epoch + 1) % tc.validate_every == 0 or epoch + 1 == tc.epochs):
        measured = (
            validation_metrics(run.embed_fn(run.scored_model), run.corpus, cfg.eval.p_targets) if info.is_main else None
        )
        measured = ddp.broadcast_object(measured, info)
    val = None if measured is None else measured["eer"]
    row = {
        "epoch": epoch + 1,
        "train_loss": state.loss_sum / state.n_steps if state.n_steps else math.nan,
        "train_acc": state.acc_sum / state.acc_n if state.acc_n else None,
        "lr": lr,
        "val_eer": val,
        # at eval.p_targets[0]; bench tune --objective mindcf optimises it, the plateau rule stays on the EER
        "val_mindcf": None if measured is None else measured["mindcf"],
        "bad_steps": state.bad_steps,
        "train_seconds": state.epoch_seconds,
        "samples_per_s": state.epoch_samples / state.epoch_seconds if state.epoch_seconds > 0 else 0.0,
    }
    state.history.append(row)
    state.epoch, state.batch = epoch + 1, 0
    improved = val is not None and (state.best_val_eer is None or val < state.best_val_eer)
    if improved:
        state.best_val_eer = val
        if tc.early_stop:
            weights = run.scored_model.state_dict()
            run.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
    cuts = plateau.reductions
    plateau.update(epoch + 1, val)
    state.plateau = plateau.state_dict()
    if plateau.reductions > cuts:
        set_reductions(run.scheduler, plateau.reductions)
    # without validation, "best" is simply the latest epoch
    run.checkpoint(best=improved or tc.validate_every <= 0)
    run.logs.epochs(state.history)
    run.rep.end_epoch(row)
    if plateau.reductions > cuts:
        run.rep.message(
            f"validation EER plateaued (best {plateau.best:.2f} %): lr x {cfg.optim.gamma:g} = "
            f"{run.optimizer.param_groups[0]['lr']:.3g} from the next step (cut {plateau.reductions} of "
            f"{plateau.max_reductions}{'; optim.min_lr is its floor' if cfg.optim.min_lr > 0 else ''})"
        )
    ddp.barrier(info)
    if tc.early_stop and plateau.plateaued:
        run.rep.message(f"validation EER plateaued (best {plateau.best:.2f} % at epoch {plateau.best_epoch}): stopped")
        return True
    return False


def _finish(run: _Run) -> TrainResult:
    """The weights to score: under early stopping the best validation epoch's, else the last (the
    weight average of either under train.ema_decay > 0); eval mode."""
    used = "last"
    plateau = run.plateau
    assert plateau is not None
    if run.cfg.train.early_stop and run.best_weights is not None:
        if plateau.best_epoch != run.state.epoch or run.ema is not None:
            run.model.load_state_dict(run.best_weights)
        used = "best"
    elif run.ema is not None:
        run.model.load_state_dict(run.ema.module.state_dict())
    run.model.eval()
    return TrainResult(run.model, run.loss_mod, run.state, checkpoint=used)


def weight_average(model: torch.nn.Module, decay: float) -> Any:
    """An exponential moving average of ``model``'s weights and buffers (BatchNorm statistics too),
    ``w_avg <- decay w_avg + (1 - decay) w`` after each step, the first step copied; None when
    ``decay`` is 0. torch's ``AveragedModel`` with ``get_ema_multi_avg_fn`` (the weight EMA of Polyak
    & Juditsky 1992, "Acceleration of stochastic approximation by averaging"; the mean teacher of
    Tarvainen & Valpola 2017 uses the same update). Its time constant is about 1 / (1 - decay) steps.
    """
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _train_step(
    model: torch.nn.Module,
    loss_mod: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp: Any,
    device: torch.device,
    info: ddp.DistInfo,
    waves: torch.Tensor,
    labels: torch.Tensor,
    grad_clip: float,
) -> dict[str, Any] | None:
    """One optimisation step on ``waves[b, V, T]``, ``labels[b]``; None when the loss was not finite.

    The loss is the same on every rank (computed on the gathered global batch), so all ranks skip
    the same steps and no rank waits on a gradient all-reduce that never comes.
    """
    b, v, t = waves.shape
    labels = labels.to(device, non_blocking=True)
    # A non-finite batch also poisons BatchNorm running statistics during the forward pass, so
    # skipping the update is not enough: the buffers are put back as they were before the step.
    buffers = [(buf, buf.detach().clone()) for m in (model, loss_mod) for buf in m.buffers()]
    with autocast(amp, device):
        emb = model(waves.to(device, non_blocking=True).reshape(b * v, t), None).reshape(b, v, -1)
    emb, labels = ddp.gather_batch(emb.float(), labels, info)
    with autocast(amp, device):
        out = loss_mod(emb, labels)
    loss = out.loss.float()
    optimizer.zero_grad(set_to_none=True)
    if not bool(torch.isfinite(loss)):
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        return None
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    values: dict[str, Any] = {"loss": float(loss.detach()), "batch": labels.shape[0]}
    values["accuracy"] = float(out.accuracy) if out.accuracy is not None else None
    for k, p in out.parts.items():
        values[f"part_{k}"] = float(p)
    return values


def load_for_eval(
    path: str | Path, device: torch.device = torch.device("cpu")
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a run checkpoint, in eval mode, and the config dict it was trained with."""
    from bench.config import ExperimentConfig
    from bench.registry import config_from_mapping
    from models import build_model

    ckpt = load_checkpoint(path)
    cfg = config_from_mapping(ExperimentConfig, ckpt["config"], where=str(path))
    model = build_model(cfg.model)
    try:
        model.load_state_dict(scored_weights(ckpt))
    except RuntimeError as e:
        raise BenchError(
            f"checkpoint does not fit backbone '{cfg.model.backbone}': {str(e)[:200]}", path=path
        ) from None
    return model.to(device).eval(), ckpt["config"]
