"""What every benchmark of ``bench perf`` shares: the run context, the table row, the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    """Settings of one suite run, and measurements shared between benchmarks (the ECAPA step)."""

    quick: bool = False
    repeats: int = 3
    cache: dict[str, Any] = field(default_factory=dict)


def row(
    measure: str,
    ours: float | None,
    unit: str,
    peer_name: str = "",
    peer: float | None | str = None,
    ratio: float | None = None,
    ratio_label: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One table row. ``peer`` may be a string (e.g. :data:`PEER_MISSING`) when there is no number."""
    return {
        "measure": measure,
        "ours": ours,
        "unit": unit,
        "peer_name": peer_name,
        "peer": peer,
        "ratio": ratio,
        "ratio_label": ratio_label,
        "note": note,
    }


BENCHMARKS: dict[str, Callable[[Context], dict[str, Any]]] = {}
# Benchmarks too long for a routine suite run (an hour): run only when named with --only.
OPT_IN: set[str] = set()


def benchmark(name: str, *, opt_in: bool = False) -> Callable:
    def deco(fn: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
        BENCHMARKS[name] = fn
        if opt_in:
            OPT_IN.add(name)
        return fn

    return deco


def default_names() -> list[str]:
    """What ``bench perf`` runs without --only: every benchmark but the opt-in ones, in suite order."""
    return [n for n in BENCHMARKS if n not in OPT_IN]
