"""Rich progress bar for training: one bar per epoch with loss / accuracy / lr / samples per second."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def stats_columns() -> list[Any]:
    """Columns of a counted bar with a free ``stats`` field: description, bar, n/total, stats, elapsed."""
    return [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    ]


class RichReporter:
    """Implements :class:`bench.runner.train.Reporter` on a Rich console (stderr by default)."""

    def __init__(self, console: Console | None = None, label: str = ""):
        self.console = console or Console(stderr=True)
        self.label = label
        self.progress: Progress | None = None
        self.task: Any = None

    def _ensure(self) -> Progress:
        if self.progress is None:
            self.progress = Progress(
                *stats_columns(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        return self.progress

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        p = self._ensure()
        self.task = p.add_task(f"{self.label} epoch {epoch + 1}/{epochs}", total=steps, completed=done, stats="")

    def step(self, values: dict[str, Any]) -> None:
        if self.progress is None or self.task is None:
            return
        acc = values.get("accuracy")
        stats = f"loss {values['loss']:.3f}" + (f" acc {acc:.3f}" if acc is not None else "")
        stats += f" lr {values['lr']:.2e} {values['samples_per_s']:.0f} utt/s"
        self.progress.update(self.task, advance=1, stats=stats)

    def end_epoch(self, row: dict[str, Any]) -> None:
        if self.progress is None or self.task is None:
            return
        val = row.get("val_eer")
        extra = f" val EER {val:.2f}%" if val is not None else ""
        self.progress.update(self.task, stats=f"loss {row['train_loss']:.3f}{extra}")

    def message(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(text, highlight=False, markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
