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


def benchmark(name: str) -> Callable:
    def deco(fn: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
        BENCHMARKS[name] = fn
        return fn

    return deco
