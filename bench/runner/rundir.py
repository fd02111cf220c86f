"""Run-directory layout, the per-run lock, and the skip / resume / force decision.

Layout of ``runs/<experiment>/<loss>/seed<k>/``::

    config.toml        resolved config (reproduces the run on its own)
    run.json           provenance, status running|finished|failed, timings, samples/s
    train_log.csv      one row per logged step
    epochs.csv         one row per epoch (train loss/acc, lr, val_eer, val_mindcf)
    scores.txt         ``enroll test score label`` per trial
    scores_calibrated.txt  the same trials with calibrated LLR scores (eval.calibration)
    metrics.json       overall + per_genre metrics, trials path + sha256, enroll_mode, corpus
    checkpoints/last.pt, checkpoints/best.pt
    .lock              fcntl lock held while a process works on the run (its pid inside)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import results as R
from bench.errors import BenchError
from bench.io import atomic_write_json
from bench.procs import hold_fd, pid_alive, release_fd

# the files a --force rerun removes (the names live in bench.results)
RESULT_FILES = (
    R.RUN_FILE,
    R.TRAIN_LOG_FILE,
    R.EPOCHS_FILE,
    R.SCORES_FILE,
    R.CALIBRATED_SCORES_FILE,
    R.METRICS_FILE,
    R.CONFIG_FILE,
)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run; see the module docstring for the layout."""

    path: Path

    @classmethod
    def for_run(cls, out: str | Path, experiment: str, loss: str, seed: int) -> RunDir:
        return cls(Path(out) / experiment / loss / f"seed{seed}")

    config = property(lambda self: self.path / R.CONFIG_FILE)
    run_json = property(lambda self: self.path / R.RUN_FILE)
    train_log = property(lambda self: self.path / R.TRAIN_LOG_FILE)
    epochs_csv = property(lambda self: self.path / R.EPOCHS_FILE)
    scores = property(lambda self: self.path / R.SCORES_FILE)
    scores_calibrated = property(lambda self: self.path / R.CALIBRATED_SCORES_FILE)  # LLRs (eval.calibration)
    metrics = property(lambda self: self.path / R.METRICS_FILE)
    checkpoints = property(lambda self: self.path / R.CHECKPOINT_DIR)
    last = property(lambda self: self.path / R.CHECKPOINT_DIR / R.LAST_CHECKPOINT)
    best = property(lambda self: self.path / R.CHECKPOINT_DIR / R.BEST_CHECKPOINT)
    lock_file = property(lambda self: self.path / R.LOCK_FILE)

    def read_run_json(self) -> dict[str, Any]:
        if not self.run_json.exists():
            return {}
        try:
            return json.loads(self.run_json.read_text())
        except json.JSONDecodeError as e:
            raise BenchError(f"corrupt run record: {e.msg}", path=self.run_json, line=e.lineno) from None

    def status(self) -> str:
        """``new`` (nothing there), ``running``, ``finished`` or ``failed``."""
        return self.read_run_json().get("status", "new")

    def missing_results(self) -> list[str]:
        """The result files a finished run always has (``metrics.json``, ``scores.txt``) that are not here."""
        return [p.name for p in (self.metrics, self.scores) if not p.exists()]

    def is_finished(self) -> bool:
        return self.status() == "finished" and not self.missing_results()

    def update_run_json(self, **fields: Any) -> dict[str, Any]:
        data = self.read_run_json()
        data.update(fields)
        atomic_write_json(self.run_json, data)
        return data

    def clear(self) -> None:
        """Remove results and checkpoints of a previous attempt (``--force``); keeps the lock."""
        for name in RESULT_FILES:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.path / R.UNTRAINED_DIR, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive, non-blocking fcntl lock on ``.lock`` for the duration.

        The kernel drops the lock when the process dies (even by SIGKILL), and forked children
        (loader workers) close their copy of the descriptor at once (:mod:`bench.procs`), so a
        killed run can be resumed immediately. A live holder makes this raise a BenchError naming
        its pid; a lock still held although the pid recorded in it is dead (a child process left
        behind by a killed owner) is taken over with a warning.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = self._acquire()
        hold_fd(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            # only the lock holder writes here, so temp files are orphans of a killed writer
            for tmp in [*self.path.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]:
                tmp.unlink(missing_ok=True)
            yield
        finally:
            release_fd(fd)
            os.close(fd)  # closing the descriptor releases the flock

    def _acquire(self) -> int:
        """Open and flock ``.lock``; the descriptor returned holds the lock on the file now at the path."""
        for _ in range(10):
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self._same_file(fd):  # replaced meanwhile (a take-over): try the new file
                    os.close(fd)
                    continue
                holder = _holder(fd)
                if holder.isdigit() and not pid_alive(int(holder)):
                    # a live process that has just taken the lock writes its pid at once: look again
                    time.sleep(0.1)
                    holder = _holder(fd)
                if not (holder.isdigit() and not pid_alive(int(holder))):
                    os.close(fd)
                    raise BenchError(
                        f"run directory is in use by another bench process (pid {holder or 'unknown'}); "
                        "wait for it to finish or stop it",
                        path=self.path,
                    ) from None
                # the owner is dead but something it started still holds the lock: the old file is
                # unlinked (its holder keeps an orphan inode) and a fresh one is locked
                warnings.warn(
                    f"{self.lock_file}: taking over the lock of bench process {holder}, which is no "
                    "longer running (a process it left behind still held the lock)",
                    stacklevel=4,
                )
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock_file)
                os.close(fd)
                continue
            if self._same_file(fd):
                return fd
            os.close(fd)  # another process replaced the file between open and flock: lock the new one
        raise BenchError("could not lock the run directory (its lock file keeps changing)", path=self.path)

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.lock_file)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _holder(fd: int) -> str:
    return os.pread(fd, 64, 0).decode(errors="replace").strip()


def decide(rd: RunDir, *, force: bool, resume: bool) -> str:
    """What to do with a run directory: ``skip``, ``resume`` or ``fresh``.

    A finished run is skipped unless ``force`` (the caller checks first that its stored config is
    the one asked for). An unfinished run with a checkpoint continues with ``resume`` and is otherwise
    refused, so trained steps are never silently thrown away; one that stopped before its first
    checkpoint (e.g. a missing noise folder) holds nothing to lose and starts again.
    """
    if force:
        return "fresh"
    status = rd.status()
    if rd.is_finished():
        return "skip"
    if status == "finished":
        # trained and scored once, then a result file went (deleted by hand): train and score it again
        # only when asked, as any finished run
        gone = rd.missing_results()
        raise BenchError(
            f"a finished run whose {' and '.join(gone)} {'is' if len(gone) == 1 else 'are'} missing (removed?) is here; "
            "pass --force to train and score it again",
            path=rd.path,
        )
    if not rd.last.exists():
        return "fresh"
    if resume:
        return "resume"
    raise BenchError(
        f"an unfinished run (status '{status}') is already here; pass --resume to continue it "
        "or --force to start it again",
        path=rd.path,
    )
