"""The fine-tuning recipe registry (:data:`FINETUNES`) and its recipes; the runner side (parent
runs, initial weights) is :mod:`bench.finetune`, which re-exports these names.

Kept apart from :mod:`bench.finetune` so that the experiment config can check a recipe name and
fill its defaults (``bench.config.resolve``) without importing the module that imports the config.
See :mod:`bench.finetune` for the ``lm`` recipe's source and defaults.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.errors import BenchError
from bench.registry import Registry

if TYPE_CHECKING:  # annotations only: the config imports this module
    from bench.config import ExperimentConfig

FINETUNES = Registry("fine-tuning recipe")


def margin_params(loss_name: str) -> list[str]:
    """Float parameters of a loss that are margins: ``margin`` or ``<something>_margin``.

    ``am``/``aam`` -> ``[margin]``, ``aamsupcon`` -> ``[margin]``, ``marginsupcon`` -> ``[margin,
    aam_margin]``, ``softmax``/``supcon`` -> ``[]`` (no margin: nothing to enlarge).
    """
    from losses import LOSSES

    cls = LOSSES.get(loss_name).config_cls
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if (f.name == "margin" or f.name.endswith("_margin")) and hints.get(f.name) is float
    ]


def margin_losses() -> list[str]:
    from losses import LOSSES

    return [n for n in LOSSES.names() if margin_params(n)]


@dataclass
class LargeMarginConfig:
    crop_seconds: float = 6.0  # training crops (WeSpeaker: num_frms 600)
    margin: float = 0.5  # every margin of the loss is set to this, with no warm-up
    epochs: int = 5
    lr: float = 1e-4  # peak learning rate after the warm-up
    final_lr: float = 2.5e-5  # exponential decay from lr to this over the epochs
    warmup_epochs: float = 1.0

    def validate(self) -> None:
        if self.crop_seconds <= 0:
            raise BenchError(f"finetune lm: crop_seconds must be > 0, got {self.crop_seconds}")
        if not 0.0 <= self.margin < math.pi / 2:
            raise BenchError(f"finetune lm: margin must be in [0, pi/2), got {self.margin}")
        if self.epochs < 1:
            raise BenchError(f"finetune lm: epochs must be >= 1, got {self.epochs}")
        if not 0 < self.final_lr <= self.lr:
            raise BenchError(f"finetune lm: need 0 < final_lr <= lr, got lr={self.lr}, final_lr={self.final_lr}")
        if self.warmup_epochs < 0:
            raise BenchError(f"finetune lm: warmup_epochs must be >= 0, got {self.warmup_epochs}")


@FINETUNES.register("lm", LargeMarginConfig, "large-margin fine-tuning: longer crops, larger fixed margin, small lr")
class LargeMargin:
    """Large-margin fine-tuning of a margin-based loss (see the module docstring)."""

    def __init__(self, cfg: LargeMarginConfig):
        self.cfg = cfg

    def check_loss(self, loss_name: str) -> None:
        if not margin_params(loss_name):
            raise BenchError(
                f"--finetune lm needs a margin-based loss; '{loss_name}' has no margin to enlarge "
                f"(margin losses: {', '.join(margin_losses())})"
            )

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        c = self.cfg
        params = dict(cfg.loss.params)
        for name in margin_params(cfg.loss.name):
            params[name] = c.margin
        # exponential decay per epoch from lr to final_lr over the fine-tuning epochs
        gamma = (c.final_lr / c.lr) ** (1.0 / c.epochs)
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, crop_seconds=c.crop_seconds),
            loss=dataclasses.replace(cfg.loss, params=params, margin_warmup_epochs=0),
            optim=dataclasses.replace(
                cfg.optim,
                lr=c.lr,
                scheduler="exponential",
                gamma=gamma,
                min_lr=c.final_lr,
                warmup_epochs=c.warmup_epochs,
            ),
            train=dataclasses.replace(cfg.train, epochs=c.epochs),
        )
