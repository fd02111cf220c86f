"""Optimizer, learning-rate schedule and AMP registries.

Each is a small name -> builder mapping so that a new optimizer or schedule is one entry, not a
new branch in the train loop. The learning-rate schedule is a pure function of the batch index,
so resuming mid-epoch restores it exactly from the step counter alone.

Example:
    >>> from bench.config import OptimConfig
    >>> s = LRSchedule(OptimConfig(scheduler="step", gamma=0.5, step_size=2), epochs=4, steps_per_epoch=10)
    >>> [s(0), s(20), s(39)]
    [1.0, 0.5, 0.5]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from bench.errors import BenchError
from bench.registry import suggest

if TYPE_CHECKING:  # annotations only: the config's checks import this module for its names
    from bench.config import OptimConfig

OptimizerBuilder = Callable[[Iterable[torch.nn.Parameter], "OptimConfig"], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
}

# Each maps (epoch progress e in [0, epochs], config, total epochs) -> factor applied to optim.lr.
# "exponential" decays once per whole epoch, as the reference recipe's x0.97 per epoch does.
# "plateau" is constant here: its cuts (x optim.gamma each) come from the validation EER, counted
# by bench.runner.convergence.Plateau and passed in through LRSchedule.reductions.
SCHEDULES: dict[str, Callable[[float, OptimConfig, int], float]] = {
    "constant": lambda e, c, n: 1.0,
    "plateau": lambda e, c, n: 1.0,
    "exponential": lambda e, c, n: c.gamma ** math.floor(e),
    "step": lambda e, c, n: c.gamma ** math.floor(e / max(c.step_size, 1)),
    "cosine": lambda e, c, n: 0.5 * (1.0 + math.cos(math.pi * min(e / max(n, 1), 1.0))),
}


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    if name not in table:
        names = sorted(table)
        raise BenchError(f"unknown {kind} '{name}'{suggest(name, names)}; known: {', '.join(names)}")
    return table[name]


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` over ``params`` (model and loss parameters)."""
    return _lookup(OPTIMIZERS, cfg.optimizer, "optimizer")(params, cfg)


class LRSchedule:
    """Multiplicative lr factor as a function of the global batch index.

    Linear warm-up over ``warmup_epochs`` (reaching 1 at the end of warm-up, never exactly 0),
    then the named schedule, times ``optim.gamma ** reductions`` (the learning-rate cuts made at
    validation plateaus, scheduler "plateau" only); ``min_lr`` is a floor after warm-up. A callable
    object rather than a closure so that ``LambdaLR.state_dict()`` can serialise it (cuts included).
    """

    def __init__(self, cfg: OptimConfig, epochs: int, steps_per_epoch: int):
        _lookup(SCHEDULES, cfg.scheduler, "scheduler")
        self.cfg = cfg
        self.epochs = epochs
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.reductions = 0

    def __call__(self, step: int) -> float:
        e = step / self.steps_per_epoch
        factor = SCHEDULES[self.cfg.scheduler](e, self.cfg, self.epochs) * self.cfg.gamma**self.reductions
        warm = self.cfg.warmup_epochs
        if warm > 0 and e < warm:
            return factor * min(1.0, (step + 1) / (warm * self.steps_per_epoch))
        return max(factor, self.cfg.min_lr / self.cfg.lr)


def max_reductions(cfg: OptimConfig) -> int:
    """Learning-rate cuts allowed at validation plateaus: ``optim.max_reductions`` under the
    "plateau" scheduler, none under a fixed schedule."""
    return cfg.max_reductions if cfg.scheduler == "plateau" else 0


def set_reductions(scheduler: torch.optim.lr_scheduler.LambdaLR, reductions: int) -> None:
    """Apply ``reductions`` plateau cuts from the next step on (the lr of a ``LambdaLR`` is recomputed
    from its schedule at every step)."""
    for fn in scheduler.lr_lambdas:
        fn.reductions = reductions
    # the optimiser already holds the lr of the next step (set by the last scheduler.step()): recompute it
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int, steps_per_epoch: int):
    """A ``LambdaLR`` stepped once per batch (skipped NaN steps included, so lr depends on position only)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(cfg, epochs, steps_per_epoch))


@dataclass(frozen=True)
class AmpMode:
    """Autocast dtype (None: full precision) and whether fp16 loss scaling is needed."""

    dtype: torch.dtype | None
    scaler: bool


AMP_MODES: dict[str, AmpMode] = {
    "none": AmpMode(None, False),
    "bf16": AmpMode(torch.bfloat16, False),
    "fp16": AmpMode(torch.float16, True),
}


def amp_mode(name: str, device: torch.device) -> AmpMode:
    """Check ``train.amp`` against the device: mixed precision is GPU only here."""
    mode = _lookup(AMP_MODES, name, "AMP mode")
    if mode.dtype is not None and device.type != "cuda":
        raise BenchError(f"train.amp='{name}' needs a CUDA device (running on {device.type}); use train.amp=none")
    return mode


def autocast(mode: AmpMode, device: torch.device) -> contextlib.AbstractContextManager:
    if mode.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=mode.dtype)


def make_scaler(mode: AmpMode, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is a no-op (``enabled=False``) unless fp16 needs it."""
    return torch.amp.GradScaler(device.type, enabled=mode.scaler)
