"""`bench list losses|backbones`: print the registries with each entry's parameters and defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bench.commands.common import console, print_json
from bench.registry import Registry

app = typer.Typer(help="List registered losses and backbones with their parameters.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _describe(reg: Registry, extra: dict[str, str] | None = None) -> list[dict]:
    rows = []
    for e in reg:
        rows.append(
            {
                "name": e.name,
                "summary": e.summary,
                **({"family": e.family} if e.family else {}),
                **({"paper": e.paper} if e.paper else {}),
                "parameters": [{"name": n, "type": t, "default": d} for n, t, d in e.parameters()],
                **({"info": extra[e.name]} if extra and e.name in extra else {}),
            }
        )
    return rows


def _show(title: str, rows: list[dict], json_out: bool, info_label: str | None = None) -> None:
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print(f"no {title} registered")
        return
    table = Table(title=title, show_lines=True)
    table.add_column("name", style="bold cyan")
    has_family = any(r.get("family") for r in rows)
    if has_family:
        table.add_column("family")
    if info_label:
        table.add_column(info_label, justify="right")
    table.add_column("summary")
    table.add_column("parameters (default)")
    for r in rows:
        params = "\n".join(f"{p['name']}: {p['type']} = {p['default']!r}" for p in r["parameters"]) or "-"
        summary = r["summary"] + (f"\n[dim]{escape(r['paper'])}[/dim]" if r.get("paper") else "")
        cells = (
            [r["name"]]
            + ([r.get("family", "")] if has_family else [])
            + ([r.get("info", "")] if info_label else [])
            + [summary, params]
        )
        table.add_row(*cells)
    console.print(table)


@app.command("losses")
def list_losses(json_out: JsonOpt = False) -> None:
    """Losses in the registry (name, family, summary with source paper, parameters with defaults)."""
    from losses import LOSSES

    _show("losses", _describe(LOSSES), json_out)


@app.command("backbones")
def list_backbones(json_out: JsonOpt = False) -> None:
    """Backbones in the registry with their default parameter counts."""
    from models import BACKBONES

    counts = {}
    for e in BACKBONES:
        count_fn = getattr(e.cls, "count_parameters", None)
        if callable(count_fn):
            counts[e.name] = f"{count_fn(e.config_cls()) / 1e6:.2f} M"
    _show("backbones", _describe(BACKBONES, counts), json_out, info_label="params" if counts else None)
