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
from bench.runner.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bench.runner.convergence import Plateau
from bench.runner.evaluate import Embeddings, embed_utterances, validation_eer
from bench.runner.optim import amp_mode, autocast, build_optimizer, build_scheduler, make_scaler
from bench.runner.rundir import RunDir
from models.speed import prepare_for_training

LOG_COLUMNS = ["epoch", "batch", "global_step", "loss", "accuracy", "lr", "samples_per_s", "bad_steps"]
EPOCH_COLUMNS = ["epoch", "train_loss", "train_acc", "lr", "val_eer", "bad_steps", "train_seconds", "samples_per_s"]


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
    """
    rep = reporter or NullReporter()
    tc = cfg.train
    amp = amp_mode(tc.amp, device)
    model, loss_mod = build_components(cfg, len(corpus.speakers))
    if init_from is not None and not resume:
        from bench.finetune import load_initial_weights

        init = load_checkpoint(init_from, map_location="cpu") if info.is_main else None
        load_initial_weights(model, loss_mod, init_from, ddp.broadcast_object(init, info))
    model.to(device)
    loss_mod.to(device)
    params = [p for m in (model, loss_mod) for p in m.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim)
    steps = steps_per_epoch(cfg, corpus, loader_fn, info)
    scheduler = build_scheduler(optimizer, cfg.optim, tc.epochs, steps)
    scaler = make_scaler(amp, device)
    from losses.schedule import MarginScheduler

    lc = cfg.loss
    margin = MarginScheduler(loss_mod, lc.margin_warmup_epochs, lc.margin_start_epoch, lc.margin_shape)
    state = TrainState()
    main = rd if info.is_main else None
    best_weights: dict[str, torch.Tensor] | None = None  # early stopping scores these (best validation EER)

    if resume:
        ckpt = load_checkpoint(rd.last, map_location="cpu") if (rd is not None and info.is_main) else None
        ckpt = ddp.broadcast_object(ckpt, info)
        model.load_state_dict(ckpt["model"])
        loss_mod.load_state_dict(ckpt["loss"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        margin.load_state_dict(ckpt["margin"])
        set_rng_state(ckpt["rng"])
        state = TrainState(**ckpt["state"])
        if tc.early_stop and main is not None and main.best.exists():
            best_weights = load_checkpoint(main.best, map_location="cpu")["model"]
        rep.message(f"resumed at epoch {state.epoch + 1}, batch {state.batch} (step {state.global_step})")
    logs = _Logs(main, state.global_step if resume else None)

    def embed_fn(m: torch.nn.Module) -> Callable[[Any], Embeddings]:
        return embedder(m, cfg, device)

    if untrained_eval is not None and not resume and info.is_main:
        state.untrained = untrained_eval(embed_fn(model))
    ddp.barrier(info)

    # channels-last / torch.compile where measured to help on this device (models/speed.py)
    train_model = prepare_for_training(model, cfg.model.backbone, device, steps=tc.epochs * steps, compile=tc.compile)
    train_model = ddp.wrap(train_model, info, device)
    train_loss = ddp.wrap(loss_mod, info, device)

    def payload() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "loss": loss_mod.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "margin": margin.state_dict(),
            "rng": rng_state(),
            "state": dataclasses.asdict(state),
            "config": to_dict(cfg),
        }

    def checkpoint(best: bool = False) -> None:
        if main is None:
            return
        data = payload()
        save_checkpoint(main.last, data)
        if best:
            save_checkpoint(main.best, data)

    train_model.train()
    train_loss.train()
    plateau = Plateau.from_state(state.plateau, tc.patience, tc.min_delta)
    for epoch in range(state.epoch, tc.epochs):
        if tc.early_stop and plateau.plateaued:
            break  # a resumed run that had already stopped early
        start = state.batch if epoch == state.epoch else 0
        if start == 0:
            state.loss_sum = state.acc_sum = 0.0
            state.acc_n = state.n_steps = state.epoch_samples = 0
            state.epoch_seconds = 0.0
        rep.start_epoch(epoch, tc.epochs, steps, start)
        it = iter(loader_fn(corpus, cfg, epoch=epoch, info=info, start_batch=start))
        t_last = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        for b in range(start, steps):
            try:
                waves, labels = next(it)
            except StopIteration:
                break
            waves = views_on_device(waves, device)  # data.augment_on="device": the views are made here
            torch.manual_seed(step_seed(tc.seed, epoch, b, info.rank))
            margin.step(epoch + b / steps)
            lr = optimizer.param_groups[0]["lr"]  # the lr this step uses (the scheduler moves it after)
            values = _train_step(
                train_model, train_loss, optimizer, scaler, amp, device, info, waves, labels, cfg.optim.grad_clip
            )
            with warnings.catch_warnings():
                # a skipped (NaN) first step trips torch's "scheduler before optimizer" warning; the lr
                # is a function of the batch position by design, so the order does not matter here
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()
            state.batch = b + 1
            state.global_step += 1
            now = time.perf_counter()
            dt, t_last = now - t_last, now
            state.epoch_seconds += dt
            state.train_seconds += dt
            if values is None:
                state.bad_steps += 1
                rep.message(f"non-finite loss at epoch {epoch + 1} batch {b}: step skipped ({state.bad_steps} so far)")
                if state.bad_steps > tc.max_bad_steps:
                    raise BenchError(
                        f"training stopped: {state.bad_steps} steps had a NaN/inf loss "
                        f"(train.max_bad_steps={tc.max_bad_steps}); lower optim.lr, enable optim.grad_clip "
                        "or check the data"
                    )
                continue
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
            rep.step(row)
            if tc.log_every > 0 and (b + 1) % tc.log_every == 0:
                logs.step(row)
            if tc.checkpoint_every > 0 and state.global_step % tc.checkpoint_every == 0 and state.batch < steps:
                checkpoint()
        val = None
        if tc.validate_every > 0 and ((epoch + 1) % tc.validate_every == 0 or epoch + 1 == tc.epochs):
            val = validation_eer(embed_fn(model), corpus, cfg.eval.p_targets) if info.is_main else None
            val = ddp.broadcast_object(val, info)
        row = {
            "epoch": epoch + 1,
            "train_loss": state.loss_sum / state.n_steps if state.n_steps else math.nan,
            "train_acc": state.acc_sum / state.acc_n if state.acc_n else None,
            "lr": lr,
            "val_eer": val,
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
                best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        plateau.update(epoch + 1, val)
        state.plateau = plateau.state_dict()
        # without validation, "best" is simply the latest epoch
        checkpoint(best=improved or tc.validate_every <= 0)
        logs.epochs(state.history)
        rep.end_epoch(row)
        ddp.barrier(info)
        if tc.early_stop and plateau.plateaued:
            rep.message(f"validation EER plateaued (best {plateau.best:.2f} % at epoch {plateau.best_epoch}): stopped")
            break
    used = "last"
    if tc.early_stop and best_weights is not None:
        if plateau.best_epoch != state.epoch:
            model.load_state_dict(best_weights)
        used = "best"
    model.eval()
    return TrainResult(model, loss_mod, state, checkpoint=used)


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
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise BenchError(
            f"checkpoint does not fit backbone '{cfg.model.backbone}': {str(e)[:200]}", path=path
        ) from None
    return model.to(device).eval(), ckpt["config"]
