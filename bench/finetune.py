"""Second-stage fine-tuning recipes (``bench run --finetune NAME``), starting from finished runs.

A fine-tuning run continues the *best* checkpoint (lowest validation EER) of a finished run
``runs/<experiment>/<loss>/seed<k>/`` with a recipe's changes to its config and trains into its own
folder ``runs/<experiment>/<loss>+<recipe>/seed<k>/``, recording the parent folder in its config
(``finetune.parent``), ``run.json`` and ``metrics.json`` (``parent``). Reports show it as the
system ``<loss>+<recipe>``.

Recipes are the :data:`FINETUNES` registry; each is built from its config dataclass and has
``check_loss(loss_name)`` (refuses losses it cannot fine-tune) and ``apply(cfg) -> cfg``.

``lm`` is large-margin fine-tuning (Thienpondt, Desplanques and Demuynck, "The IDLAB VoxSRC-20
submission: large margin fine-tuning and quality-aware score calibration in DNN based speaker
verification", ICASSP 2021): longer training crops make a larger margin trainable, for a few epochs
at a small learning rate and with the margin fixed from the first step. Defaults follow WeSpeaker's
CN-Celeb recipe (``conf/*_lm.yaml``): 6 s crops (600 frames), margin 0.2 -> 0.5 with no warm-up,
5 epochs, lr 1e-4 decaying exponentially to 2.5e-5 after a one-epoch warm-up.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import ExperimentConfig, read_toml, resolve, to_dict
from bench.errors import BenchError
from bench.registry import Registry

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


def system_name(cfg: ExperimentConfig) -> str:
    """The run's name in folders and reports: the loss, ``+<recipe>`` for a fine-tuning run."""
    return f"{cfg.loss.name}+{cfg.finetune.name}" if cfg.finetune.name else cfg.loss.name


def finetune_config(run_cfg: ExperimentConfig, parent: str | Path) -> ExperimentConfig:
    """The resolved config of the fine-tuning of a run whose config is ``run_cfg``.

    ``run_cfg.finetune.name`` is the recipe. Refuses (BenchError) a loss the recipe cannot
    fine-tune; reads no files.
    """
    ft = run_cfg.finetune
    recipe = FINETUNES.build(ft.name, ft.params)
    recipe.check_loss(run_cfg.loss.name)
    out = recipe.apply(run_cfg)
    out = dataclasses.replace(out, finetune=dataclasses.replace(ft, parent=str(parent)))
    return resolve(out)


def check_parent(parent: Path, run_cfg: ExperimentConfig) -> Path:
    """Check that ``parent`` is a finished run trained with ``run_cfg``; returns its best checkpoint.

    ``run_cfg`` is the config the parent run would have been started with (the ``finetune``
    section aside). Settings present in both configs must agree, so the fine-tuning starts from
    the model, loss and data it claims to; a missing, unfinished or different parent is a
    BenchError naming its folder.
    """
    from bench.runner.rundir import RunDir

    rd = RunDir(parent)
    if not rd.path.is_dir():
        raise BenchError(
            "no run to fine-tune here: train it first (the same bench run command without --finetune)", path=rd.path
        )
    status = rd.status()
    if not rd.is_finished():
        raise BenchError(
            f"the run to fine-tune is not finished (status '{status}'); finish it first (bench run --resume)",
            path=rd.path,
        )
    if not rd.best.exists():
        raise BenchError("the run to fine-tune has no best checkpoint", path=rd.best)
    if rd.config.exists():
        old = read_toml(rd.config)
        new = to_dict(run_cfg)
        old.pop("finetune", None)
        new.pop("finetune", None)
        diffs = _diff_common(old, new)
        if diffs:
            raise BenchError(
                f"the run to fine-tune was trained with other settings ({', '.join(diffs[:5])}); use the "
                "command that trained it, plus --finetune",
                path=rd.config,
            )
    return rd.best


def _diff_common(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Keys present in both nested dicts whose values differ (keys added to the config later are ignored)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) & set(b)):
            out += _diff_common(a[k], b[k], f"{prefix}{k}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
        return [prefix.rstrip(".")]
    return []


def load_initial_weights(model: Any, loss: Any, path: str | Path, ckpt: dict[str, Any]) -> None:
    """Load a parent checkpoint's model and loss (classifier) weights; a mismatch is a BenchError."""
    try:
        model.load_state_dict(ckpt["model"])
        loss.load_state_dict(ckpt["loss"])
    except (RuntimeError, KeyError) as e:
        raise BenchError(
            f"the parent checkpoint does not fit this run's model or loss: {str(e)[:200]}", path=path
        ) from None
