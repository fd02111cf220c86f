"""Fault-injection helpers and the reliability ledger of the ``test_reliability*`` suite.

Every test of the suite takes a ``fault_case`` and declares what it tries: ``case.bad_input(...)``
for each bad input fed to the toolkit, ``case.fault(...)`` for each injected fault (kill, disk full,
NaN loss, crash), and ``case.intact(path, before)`` for each result that must survive the fault
(a mismatch counts as a lost result and fails the test). The counts are summed over the session and,
when ``BENCH_RELIABILITY_OUT`` names a file, written there as JSON at the end of the session:

    BENCH_RELIABILITY_OUT=runs/reliability.json .venv/bin/python -m pytest -q tests/test_reliability*.py
    .venv/bin/python -m tests.faults runs/reliability.json     # the README table

The module also runs ``bench`` with a fault armed (``python -m tests.faults arm KIND -- ARGS``):
``KIND`` is ``kill-in-checkpoint:N`` (SIGKILL half-way through writing the N-th checkpoint) or
``kill-in-scores`` (SIGKILL half-way through writing scores.txt); the file about to be replaced is
first copied to ``<file>.before`` so the test can check it survived.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

LEDGER: dict[str, Counter] = {
    "bad_inputs": Counter(),
    "faults": Counter(),
    "results_checked": Counter(),
    "results_lost": Counter(),
}
CATEGORIES = ("bad audio", "bad lists and configs", "faults", "concurrency", "reproducibility")


class FaultCase:
    """What one test tried; counts go to the session ledger under ``category``."""

    def __init__(self, category: str):
        assert category in CATEGORIES, category
        self.category = category

    def bad_input(self, n: int = 1) -> None:
        LEDGER["bad_inputs"][self.category] += n

    def fault(self, n: int = 1) -> None:
        LEDGER["faults"][self.category] += n

    def intact(self, path: Path, before: bytes | None) -> bool:
        """Whether ``path`` still holds ``before`` (None: must not exist); a difference is a lost result."""
        LEDGER["results_checked"][self.category] += 1
        now = path.read_bytes() if path.exists() else None
        if now != before:
            LEDGER["results_lost"][self.category] += 1
            return False
        return True


@pytest.fixture
def fault_case():
    """``fault_case(category) -> FaultCase``; the ledger is written at session end (see module doc)."""
    return FaultCase


def summary() -> dict[str, Any]:
    rows = {c: {k: LEDGER[k][c] for k in LEDGER} for c in CATEGORIES}
    total = {k: sum(LEDGER[k].values()) for k in LEDGER}
    return {"categories": rows, "total": total}


def pytest_sessionfinish(session: Any) -> None:
    write_ledger()


def write_ledger() -> None:
    out = os.environ.get("BENCH_RELIABILITY_OUT")
    if out and any(sum(c.values()) for c in LEDGER.values()):
        from bench.io import atomic_write_json

        atomic_write_json(out, summary())


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| category | bad inputs tried | faults injected | results checked | results lost |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in [*data["categories"].items(), ("**total**", data["total"])]:
        lines.append(f"| {name} | {r['bad_inputs']} | {r['faults']} | {r['results_checked']} | {r['results_lost']} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- injected faults


class FailingWriter:
    """A file wrapper that raises ``OSError(err)`` once ``limit`` bytes have been written (disk full)."""

    def __init__(self, fh: Any, limit: int, err: int = errno.ENOSPC):
        self.fh, self.limit, self.err, self.written = fh, limit, err, 0

    def write(self, data: Any) -> int:
        room = self.limit - self.written
        if len(data) > room:
            self.fh.write(data[: max(room, 0)])
            self.written = self.limit
            raise OSError(self.err, os.strerror(self.err))
        self.written += len(data)
        return self.fh.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def full_disk_after(limit: int):
    """A replacement for ``bench.io.atomic_open`` whose files hit ENOSPC after ``limit`` bytes."""
    import contextlib

    import bench.io

    real = bench.io.atomic_open.__wrapped__  # the generator function under @contextmanager

    @contextlib.contextmanager
    def atomic_open(path: Any, mode: str = "w", **kwargs: Any):
        gen = real(path, mode, **kwargs)
        fh = next(gen)
        try:
            yield FailingWriter(fh, limit)
        except BaseException as e:
            gen.throw(e)  # the real cleanup (temp file removed) runs, then re-raises
            raise
        else:
            with contextlib.suppress(StopIteration):
                next(gen)

    return atomic_open


def arm(kind: str) -> None:
    """Install a SIGKILL at ``kind`` in this process (see the module doc)."""
    import bench.io

    real = bench.io.atomic_open
    name, _, arg = kind.partition(":")
    target = {"kill-in-checkpoint": "last.pt", "kill-in-scores": "scores.txt"}[name]
    nth = int(arg or 1)
    seen = [0]

    import contextlib

    @contextlib.contextmanager
    def atomic_open(path: Any, mode: str = "w", **kwargs: Any):
        with real(path, mode, **kwargs) as fh:
            if Path(path).name == target:
                seen[0] += 1
                if seen[0] == nth:
                    if Path(path).exists():  # what the fault must not destroy, for the test to compare
                        Path(f"{path}.before").write_bytes(Path(path).read_bytes())
                    yield _KillingWriter(fh)
                    return
            yield fh

    import bench.scorefile  # where score files are written

    bench.io.atomic_open = bench.scorefile.atomic_open = atomic_open


class _KillingWriter:
    """Writes a little, flushes it to the temp file, then SIGKILLs the process mid-write."""

    def __init__(self, fh: Any):
        self.fh = fh

    def write(self, data: Any) -> int:
        self.fh.write(data[: max(1, len(data) // 2)])
        self.fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        return 0  # pragma: no cover

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "arm":
        arm(argv[1])
        import torch

        torch.set_num_threads(1)
        from bench.cli import app

        app(argv[3:], prog_name="bench")  # argv[2] is "--"
    else:
        sys.stdout.write(markdown(json.loads(Path(argv[0]).read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
