"""Training-recipe settings ``bench tune --param`` may search besides loss parameters (dotted names).

A bare ``--param NAME`` is a parameter of the tuned loss (:mod:`bench.tune.space`); a dotted one
(``--param optim.lr=1e-3:2e-2:log``) is an experiment-config key from :data:`CONFIG_KEYS`, a short
allow-list of the recipe settings whose best value depends on the loss (a margin loss with a large
scale wants another learning rate than SupCon). Anything else in the config (data, model, budget)
defines the benchmark and is not searched.

A searched value must pass the same checks as ``--set KEY=VALUE`` (bench/config_checks.py, the
setting's range and the relations such as ``optim.min_lr <= optim.lr``), applied by
:func:`with_values` to the trial's config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.errors import BenchError
from bench.registry import suggest

#: dotted key -> value type (the type of that field in bench.config; tests/test_tune.py checks they agree)
CONFIG_KEYS: dict[str, type] = {
    "optim.lr": float,
    "optim.weight_decay": float,
    "optim.gamma": float,  # exponential / step decay factor, or each cut of the plateau schedule
    "optim.warmup_epochs": float,
    "optim.momentum": float,  # sgd only
}


def is_config_key(name: str) -> bool:
    """Loss parameter names never hold a dot, config keys always do."""
    return "." in name


def key_type(name: str, where: str) -> type:
    """The value type of searchable key ``name``; BenchError listing the searchable keys otherwise."""
    if name not in CONFIG_KEYS:
        keys = list(CONFIG_KEYS)
        raise BenchError(
            f"{where}: '{name}' is not a searchable config key{suggest(name, keys)}; searchable: {', '.join(keys)} "
            "(bare names are loss parameters)"
        )
    return CONFIG_KEYS[name]


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """``cfg`` (an ExperimentConfig) with the dotted ``values`` set, checked as ``--set`` values are.

    Raises:
        BenchError: a value out of its range or breaking a relation (message starts with the key).
    """
    from bench.config_checks import check_config, check_effect

    if not values:
        return cfg
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        sections.setdefault(section, {})[name] = value
    out = dataclasses.replace(
        cfg, **{s: dataclasses.replace(getattr(cfg, s), **fields) for s, fields in sections.items()}
    )
    check_config(out)
    check_effect(out, lambda key: key in values)  # a searched key the recipe ignores (momentum under Adam)
    return out
