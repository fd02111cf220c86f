"""`bench run`: train and evaluate one or more losses under one experiment name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.commands.common import console, handle_errors, not_built

Preset = Annotated[Optional[str], typer.Option("--preset", help="Preset name: demo | reference.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="Override: section.key=value (repeatable).")]


@handle_errors
def run(
    losses: Annotated[str, typer.Option("--losses", help="Comma-separated loss names.")] = "",
    preset: Preset = None,
    config: ConfigFile = None,
    sets: Sets = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
) -> None:
    """Train and evaluate each loss (and seed) of an experiment."""
    from bench.config import load_config, resolve, to_dict, to_toml

    overrides = list(sets or [])
    cfg = load_config(preset=preset, file=config, overrides=overrides)
    names = [n.strip() for n in losses.split(",") if n.strip()] or [cfg.loss.name]
    if print_config:
        import dataclasses

        for name in names:
            one = resolve(dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, name=name)))
            if len(names) > 1:
                console.print(f"# loss: {name}", highlight=False)
            console.print(to_toml(to_dict(one)), highlight=False, markup=False)
        return
    not_built("run", 8)
