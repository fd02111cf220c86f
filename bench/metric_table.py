"""The type of the metric table (:data:`bench.metrics.METRIC_TABLE`) and its key lookup.

One :class:`Metric` row says everything the toolkit needs about a metric: its key in
``metrics.json``, how reports and ``bench score`` show it, which way is better, whether the
bootstrap engine can resample it, and the function that defines it.  The rows themselves live in
:mod:`bench.metrics`, next to the formulas; ``compute_metrics``, ``reports.stats``,
``reports.render`` and ``bench score`` all read them.  This module holds no numbers (numpy-free,
torch-free) so that it sits below :mod:`bench.metrics` in the import graph.

Keys: a plain row's key is its ``name`` (``eer``); a per-prior row's keys are
``f"{name}@{p:g}"`` (``mindcf@0.01``); ``cal_<key>`` is the same metric on a run's calibrated
scores (``metrics.json`` ``calibration.overall``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

#: ``cal_<key>`` = metric ``<key>`` of the calibrated scores (``metrics.json`` ``calibration.overall``)
CALIBRATED_PREFIX = "cal_"

When = Literal["always", "llr", "on_request"]


@dataclass(frozen=True)
class Metric:
    """One row of the metric table.

    ``point(scores[N], labels[N] bool[, p_target]) -> float`` is the metric's definition on one
    score list (the per-prior form takes the target prior); ``compute_metrics`` uses it unless
    ``on_curve(curve[, p_target])`` gives the same value from the sorted counts that every metric
    of one call shares (``bench.metrics.Curve``: one sort for all metrics).
    ``when``: ``always`` computed by ``compute_metrics``; ``llr`` only with ``llr=True`` (the
    scores are calibrated log-likelihood ratios); ``on_request`` only when asked
    (``bench score``), never written to ``metrics.json``.
    ``bootstrap``: :mod:`bench.bootstrap` can resample it (its counting engine,
    ``bench.bootstrap_counts``, has the metric's refinement); reports then give it an interval.
    ``llr_only``: meaningful only on calibrated LLR scores; its raw-score label says so.
    ``report``: the report columns of this row (keys, ``cal_`` ones for the calibrated scores).
    ``cli_label`` / ``cli_digits``: its row in the ``bench score`` table (None = not shown).
    """

    name: str
    label: str  # report column label; "{p}" stands for the prior of a per-prior row
    digits: int  # decimals in reports
    point: Callable[..., float]
    lower_is_better: bool = True
    per_prior: bool = False
    when: When = "always"
    bootstrap: bool = False
    llr_only: bool = False
    on_curve: Callable[..., float] | None = None
    companions: Callable[..., dict[str, float]] | None = None  # extra keys recorded right after it
    report: tuple[str, ...] = ()
    cli_label: str | None = None
    cli_digits: int = 4

    def key(self, p: float | None = None) -> str:
        """Its key in ``metrics.json`` (``p`` is the target prior of a per-prior row)."""
        if self.per_prior:
            if p is None:
                raise ValueError(f"metric '{self.name}' needs a target prior: '{self.name}@<p>'")
            return f"{self.name}@{p:g}"
        return self.name

    def keys(self, p_targets: Iterable[float]) -> list[str]:
        return [self.key(p) for p in p_targets] if self.per_prior else [self.name]

    def text(self, template: str, p: float | None) -> str:
        return template.replace("{p}", f"{p:g}") if p is not None else template


@dataclass(frozen=True)
class MetricKey:
    """A key resolved against the table: its row, prior (per-prior rows) and score side."""

    key: str
    metric: Metric
    p: float | None
    calibrated: bool

    @property
    def label(self) -> str:
        base = self.metric.text(self.metric.label, self.p)
        if self.calibrated:
            return f"{base} (cal.)"
        return f"{base} (raw scores)" if self.metric.llr_only else base

    @property
    def digits(self) -> int:
        return self.metric.digits

    @property
    def lower_is_better(self) -> bool:
        return self.metric.lower_is_better

    @property
    def bootstrappable(self) -> bool:
        """The bootstrap engine resamples it: a bootstrap row, on the raw scores."""
        return self.metric.bootstrap and not self.calibrated


class MetricTable:
    """Ordered rows; :meth:`resolve` turns any key (``eer``, ``mindcf@0.02``, ``cal_cllr``) into its row."""

    def __init__(self, rows: Iterable[Metric]):
        self._rows: list[Metric] = []
        self._by_name: dict[str, Metric] = {}
        for row in rows:
            self.add(row)

    def add(self, row: Metric) -> Metric:
        """Append a row (the table is built from its rows; tests add a row this way)."""
        if row.name in self._by_name or "@" in row.name or row.name.startswith(CALIBRATED_PREFIX):
            raise ValueError(f"metric table: bad or repeated name '{row.name}'")
        self._rows.append(row)
        self._by_name[row.name] = row
        return row

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def names(self) -> list[str]:
        return [row.name for row in self._rows]

    def get(self, name: str) -> Metric:
        if name not in self._by_name:
            raise KeyError(f"unknown metric '{name}'; known: {', '.join(self._by_name)}")
        return self._by_name[name]

    def resolve(self, key: str) -> MetricKey:
        """The row of ``key``; ``KeyError`` for a key no row makes (e.g. ``eer@0.1``, ``mindcf``)."""
        calibrated = key.startswith(CALIBRATED_PREFIX)
        bare = key[len(CALIBRATED_PREFIX) :] if calibrated else key
        name, at, prior = bare.partition("@")
        row = self.get(name)
        if row.per_prior != bool(at):
            raise KeyError(
                f"metric key '{key}': '{name}' is {'per prior: ' + name + '@<p>' if row.per_prior else 'not per prior'}"
            )
        try:
            p = float(prior) if at else None
        except ValueError:
            raise KeyError(f"metric key '{key}': '{prior}' is not a target prior") from None
        return MetricKey(key, row, p, calibrated)

    def label(self, key: str) -> str:
        return self.resolve(key).label

    def digits(self, key: str) -> int:
        return self.resolve(key).digits

    def bootstrappable(self, key: str) -> bool:
        try:
            return self.resolve(key).bootstrappable
        except KeyError:
            return False

    def bootstrap_names(self) -> str:
        """The bootstrappable keys in words, for messages: ``'eer' or 'mindcf@<p>'``."""
        forms = [f"'{r.name}@<p>'" if r.per_prior else f"'{r.name}'" for r in self._rows if r.bootstrap]
        return " or ".join(forms)

    def report_columns(self) -> list[str]:
        """The report's default columns: raw-score metrics, then calibrated ones, each in table order."""
        cols = [k for row in self._rows for k in row.report]
        return [k for k in cols if not k.startswith(CALIBRATED_PREFIX)] + [
            k for k in cols if k.startswith(CALIBRATED_PREFIX)
        ]
