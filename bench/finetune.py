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
from pathlib import Path
from typing import Any

from bench.config import ExperimentConfig, read_toml, resolve, to_dict
from bench.errors import BenchError
from bench.finetune_recipes import FINETUNES, LargeMargin, LargeMarginConfig, margin_losses, margin_params

__all__ = ["FINETUNES", "LargeMargin", "LargeMarginConfig", "margin_losses", "margin_params"]


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
    if status == "finished" and rd.missing_results():
        raise BenchError(
            f"the run to fine-tune lacks its {' and '.join(rd.missing_results())} (removed?); "
            "run it again with --force first",
            path=rd.path,
        )
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
    """Load a parent checkpoint's model weights (the scored ones: its weight average when it kept
    one) and loss (classifier) weights; a mismatch is a BenchError."""
    from bench.runner.checkpoint import scored_weights

    try:
        model.load_state_dict(scored_weights(ckpt))
        loss.load_state_dict(ckpt["loss"])
    except (RuntimeError, KeyError) as e:
        raise BenchError(
            f"the parent checkpoint does not fit this run's model or loss: {str(e)[:200]}", path=path
        ) from None
