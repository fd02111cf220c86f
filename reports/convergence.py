"""Convergence and training budget per system, and the rule that withholds verdicts between unfinished runs.

Every run records (``metrics.json``, written by ``bench.runner``) whether its validation EER had
reached a plateau (``converged``) and what it consumed (``epochs``, ``steps``, ``samples_seen``,
``max_epochs``). A comparison between systems that did not both converge measures how fast each
objective starts, not how good it is, so the report replaces its verdict by ``not converged``;
``bench report --equal-budget`` keeps the verdicts as an explicit equal-budget comparison and
states every system's budget beside them.

Runs written before these fields existed have ``converged`` unknown: their verdicts are kept and the
table says "unknown". A system that was not trained (the non-learned MFCC baseline) has nothing to
converge: the table says "not trained" and its comparisons are judged on the other system alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.results import NON_LEARNED
from reports.collect import System

NOT_CONVERGED = "not converged"
NOT_TRAINED = "not trained"


def system_convergence(system: System) -> dict[str, Any]:
    """``converged`` (True only when every seed converged, False when any did not, None when unknown),
    ``n_converged``/``n_known`` seeds, and the budget: per-seed ``epochs``, ``steps``, ``samples_seen``
    and the largest ``max_epochs``."""
    flags = [r.training.get("converged") for r in system.runs]
    known = [bool(f) for f in flags if isinstance(f, bool)]
    if len(known) < len(flags):
        converged = False if known and not all(known) else None
    else:
        converged = all(known)

    def values(key: str) -> list[int]:
        return [int(v) for v in (r.training.get(key) for r in system.runs) if isinstance(v, (int, float))]

    return {
        "converged": converged,
        "trained": system.train_corpus != NON_LEARNED,
        "n_converged": sum(known),
        "n_known": len(known),
        "epochs": values("epochs"),
        "steps": values("steps"),
        "samples_seen": values("samples_seen"),
        "lr_reductions": values("lr_reductions"),
        "max_epochs": max(values("max_epochs"), default=None),
    }


def converged_text(info: dict[str, Any], n_seeds: int) -> str:
    """``yes`` / ``no`` / ``k/n`` seeds / ``unknown`` / ``not trained`` for the comparison table."""
    if not info.get("trained", True):
        return NOT_TRAINED
    if info["n_known"] == 0:
        return "unknown"
    if info["n_converged"] == n_seeds:
        return "yes"
    if info["n_converged"] == 0 and info["n_known"] == n_seeds:
        return "no"
    return f"{info['n_converged']}/{n_seeds} seeds"


def _span(vals: list[int]) -> str:
    if not vals:
        return "?"
    lo, hi = min(vals), max(vals)
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def budget_text(info: dict[str, Any]) -> str:
    """``epochs 6–9 of 20, 90–135 steps, 2,880–4,320 samples`` (range over seeds), plus ``, 1–2 lr
    cuts`` where a plateau schedule cut the learning rate; empty when unrecorded."""
    if not info["epochs"]:
        return ""
    of = f" of {info['max_epochs']}" if info["max_epochs"] else ""
    text = f"epochs {_span(info['epochs'])}{of}, {_span(info['steps'])} steps, {_span(info['samples_seen'])} samples"
    cuts = info.get("lr_reductions") or []
    if not any(cuts):
        return text
    return text + f", {_span(cuts)} lr cut{'' if max(cuts) == 1 else 's'}"  # "1 lr cut", "1–2 lr cuts"


def add_columns(table: pd.DataFrame, systems: list[System]) -> pd.DataFrame:
    """``table`` (one row per system, in ``systems`` order) with ``converged``, ``converged_text``,
    ``budget`` and mean ``epochs``/``steps``/``samples_seen`` columns."""
    infos = [system_convergence(s) for s in systems]
    out = table.copy()
    out["converged"] = [i["converged"] for i in infos]
    out["converged_text"] = [converged_text(i, len(s.runs)) for i, s in zip(infos, systems)]
    out["budget"] = [budget_text(i) for i in infos]
    for key in ("epochs", "steps", "samples_seen"):
        out[f"{key}_mean"] = [float(np.mean(i[key])) if i[key] else float("nan") for i in infos]
    return out


def gate_verdicts(pairs: pd.DataFrame, table: pd.DataFrame, equal_budget: bool = False) -> pd.DataFrame:
    """Pairwise rows with the verdict replaced by ``not converged`` where either system did not converge.

    Under ``equal_budget`` the verdicts stay (the comparison is then of equal training budgets, stated in
    the table); the differences, intervals and p-values are kept either way.
    """
    out = pairs.copy()
    if out.empty or equal_budget:
        return out
    unconverged = {
        row["system"] for _, row in table.iterrows() if not pd.isna(row["converged"]) and not row["converged"]
    }
    hit = out["system_a"].isin(unconverged) | out["system_b"].isin(unconverged)
    out.loc[hit, "verdict"] = NOT_CONVERGED
    return out
