"""Rich progress bar for training: one bar per epoch with loss / accuracy / lr / samples per second."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def run_label(name: str, seed: int) -> str:
    """How progress lines name a run: ``aam seed0`` (its folder ``<name>/seed<k>``, ``name`` = loss or
    ``loss+recipe``), the same in epoch, scoring and skip lines so one grep follows a run."""
    return f"{name} seed{seed}"


def epoch_line(label: str, row: dict[str, Any]) -> str:
    """The plain line of one finished epoch off a terminal:
    ``<label>: loss 1.234 acc 0.5 val EER 12.34% minDCF 0.812 321 utt/s``."""
    acc, val, sps = row.get("train_acc"), row.get("val_eer"), row.get("samples_per_s")
    dcf = row.get("val_mindcf")
    line = f"{label}: loss {row['train_loss']:.3f}" if isinstance(row.get("train_loss"), (int, float)) else f"{label}:"
    line += f" acc {acc:.3f}" if isinstance(acc, (int, float)) else ""
    line += f" val EER {val:.2f}%" if isinstance(val, (int, float)) else ""
    line += f" minDCF {dcf:.3f}" if isinstance(dcf, (int, float)) else ""
    return line + (f" {sps:.0f} utt/s" if isinstance(sps, (int, float)) else "")


def stats_columns() -> list[Any]:
    """Columns of a counted bar with a free ``stats`` field: description, bar, n/total, stats, elapsed."""
    return [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}", markup=False),
        TimeElapsedColumn(),
    ]


class RichReporter:
    """Implements :class:`bench.runner.train.Reporter` on a Rich console (stderr by default).

    On a terminal: one bar per epoch labelled ``<loss> seed<k> epoch i/N`` (the experiment is in a
    header line). Elsewhere (a batch scheduler's log file): no bars, one plain line per epoch, printed
    and flushed as the epoch ends, so the log follows the run.
    """

    def __init__(self, console: Console | None = None, label: str = ""):
        self.console = console or Console(stderr=True, markup=False)
        self.label = label
        self.run = ""
        self.progress: Progress | None = None
        self.task: Any = None
        self.live = self.console.is_terminal
        self._epoch = ""
        self._header_done = False

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

    def start_run(self, loss: str, seed: int) -> None:
        if not self._header_done and self.label:
            self.message(f"experiment {self.label}")
            self._header_done = True
        self.run = run_label(loss, seed)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._epoch = f"{self.run or self.label} epoch {epoch + 1}/{epochs}"
        if not self.live:
            return
        p = self._ensure()
        self.task = p.add_task(self._epoch, total=steps, completed=done, stats="")

    def step(self, values: dict[str, Any]) -> None:
        if self.progress is None or self.task is None:
            return
        acc = values.get("accuracy")
        stats = f"loss {values['loss']:.3f}" + (f" acc {acc:.3f}" if acc is not None else "")
        stats += f" lr {values['lr']:.2e} {values['samples_per_s']:.0f} utt/s"
        self.progress.update(self.task, advance=1, stats=stats)

    def end_epoch(self, row: dict[str, Any]) -> None:
        val = row.get("val_eer")
        extra = f" val EER {val:.2f}%" if val is not None else ""
        if not self.live:
            self.message(epoch_line(self._epoch, row))
            return
        if self.progress is None or self.task is None:
            return
        self.progress.update(self.task, stats=f"loss {row['train_loss']:.3f}{extra}")

    def message(self, text: str) -> None:
        if self.run and not text.startswith(self.run):
            text = f"{self.run}: {text}"  # runs side by side (bench.runner.pool) interleave their lines
        (self.progress.console if self.progress else self.console).print(
            text, highlight=False, markup=False, soft_wrap=True
        )
        if not self.live:
            self.console.file.flush()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
