"""Optimiser settings of one loss only: ``[optim.per_loss.<loss>]``, beside ``[loss.per_loss.<loss>]``.

A comparison trains several losses from one preset; ``bench tune --param optim.lr=...`` may find a
different learning rate for each, so a preset can give one loss its own optimiser values::

    [optim]
    lr = 0.005            # every loss

    [optim.per_loss.aam]
    lr = 0.0031           # aam only (e.g. chosen by bench tune)

Precedence mirrors the loss parameters (bench.runner.experiment.run_config): a loss's own value wins
over the shared one, except that a shared value the user typed with ``--set optim.KEY=...`` wins over
a preset's or config file's per-loss value (the user's own ``--set optim.per_loss.LOSS.KEY=...`` wins
over everything). Run configs (``config.toml``) carry the applied values and an empty ``per_loss``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.errors import BenchError


def drop_overridden(data: dict[str, Any], typed_keys: list[list[str]]) -> dict[str, Any]:
    """The preset/file mapping ``data`` without the per-loss optim values that a typed
    ``--set optim.KEY=...`` replaces for every loss (applied before the overrides themselves).

    ``typed_keys``: the key paths of the ``--set`` overrides (``["optim", "lr"]``).
    """
    typed = {parts[1] for parts in typed_keys if len(parts) == 2 and parts[0] == "optim"}
    tables = data.get("optim", {}).get("per_loss") if isinstance(data.get("optim"), dict) else None
    if not typed or not isinstance(tables, dict):
        return data
    kept = {
        n: ({k: v for k, v in t.items() if k not in typed} if isinstance(t, dict) else t) for n, t in tables.items()
    }
    return {**data, "optim": {**data["optim"], "per_loss": kept}}


# What each per-loss section holds, for its error message.
_PER_LOSS_SECTIONS = {"loss": "loss parameters", "optim": "optim settings"}


def check_table(section: str, name: str, own: Any) -> None:
    """Raise BenchError unless ``[<section>.per_loss.<name>]`` is a table (a ``[[...]]`` array of
    tables or a bare value is not)."""
    if not isinstance(own, dict):
        raise BenchError(
            f"config.{section}.per_loss.{name}: expected a table of {_PER_LOSS_SECTIONS[section]}, got {own!r}"
        )


def check_tables(cfg: Any) -> None:
    """:func:`check_table` for every per-loss section of ``cfg`` (loss and optim)."""
    for section in _PER_LOSS_SECTIONS:
        for name, own in getattr(cfg, section).per_loss.items():
            check_table(section, name, own)


def optim_for(cfg: Any, loss: str) -> Any:
    """``cfg`` (an ExperimentConfig) with ``optim.per_loss[loss]`` applied and ``per_loss`` emptied.

    Every table is checked (any loss of the experiment), as ``[loss.per_loss.*]`` is.

    Raises:
        BenchError: an unknown loss or key, or a value that ``--set optim.KEY=VALUE`` would refuse,
            naming ``optim.per_loss.<loss>.<key>``.
    """
    import typing

    from bench.config_checks import check_config, check_effect, check_value
    from bench.registry import coerce, suggest
    from losses import LOSSES

    if not cfg.optim.per_loss:
        return cfg
    hints = typing.get_type_hints(type(cfg.optim))
    keys = [f.name for f in dataclasses.fields(cfg.optim) if f.name != "per_loss"]
    tables: dict[str, dict[str, Any]] = {}
    for name, own in cfg.optim.per_loss.items():
        LOSSES.get(name)  # an unknown loss name is an error with a suggestion
        check_table("optim", name, own)
        for k, v in own.items():
            if k not in keys:
                raise BenchError(
                    f"optim.per_loss.{name}: unknown key '{k}'{suggest(k, keys)}; valid: {', '.join(keys)}"
                )
            v = coerce(v, hints[k], f"optim.per_loss.{name}.{k}")  # 1 -> 1.0 for lr, as --set does
            try:
                check_value(f"optim.{k}", v)
            except BenchError as e:
                raise BenchError(e.message.replace(f"optim.{k}", f"optim.per_loss.{name}.{k}", 1)) from None
            tables.setdefault(name, {})[k] = v

    def applied(name: str) -> Any:
        return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **tables.get(name, {}), per_loss={}))

    for name in tables:  # relations such as optim.min_lr <= optim.lr, in each loss's resulting config
        try:
            check_config(applied(name))
            own = tables[name]
            check_effect(applied(name), lambda key, own=own: key.startswith("optim.") and key[6:] in own)
        except BenchError as e:
            raise BenchError(f"optim.per_loss.{name}: {e.message}") from None
    return applied(loss)
