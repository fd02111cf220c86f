"""Independent runs of one experiment side by side on the CPU (``bench run --jobs``, ``bench demo``).

The runs of a comparison (losses x seeds) share nothing while they train, so on a CPU host they can
run in separate processes, each with its share of the cores. That is not data parallelism (one run on
several devices is torchrun's job, :mod:`bench.runner.ddp`): it is a process pool from the standard
library (:class:`concurrent.futures.ProcessPoolExecutor`, spawned workers) over whole runs. It pays off
because a small model scales poorly over intra-op threads: on the 2-core machine this project is
measured on, one demo run trained at 226 training utterances/s with 2 threads and 163 with 1
(2026-12-07, ``bench run --preset demo --threads 1|2``), so two runs with 1 thread each do about 1.4 x
the work of one with 2; BENCHMARKS.md's "concurrency" table measures the same effect.

Progress from the workers reaches the parent's reporter through a queue, tagged with the run, so the
bars and epoch lines name the run they belong to. Each worker process keeps its own decoded-audio cache
(:mod:`bench.data.cache`) and untrained-model evaluations for the runs it takes.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.errors import BenchError
from bench.threads import available_cpus

_QUEUE: Any = None  # the worker's end of the progress queue
_UNTRAINED: dict[str, Any] = {}  # the worker's untrained-model evaluations, shared by the runs it takes


def resolve_jobs(jobs: int | str, runs: int, device_type: str, world_size: int = 1) -> int:
    """How many runs train at once: ``jobs`` (an int >= 1, or ``"auto"``) within what the host allows.

    ``auto``: on the CPU, one run per core (at most ``runs``); on a GPU, or under torchrun, 1 (the runs
    would share the one device). An explicit number above 1 on a GPU or under torchrun is refused.

    Example:
        >>> resolve_jobs("auto", 6, "cuda"), resolve_jobs(3, 2, "cpu")
        (1, 2)
    """
    if jobs == "auto":
        if device_type != "cpu" or world_size > 1:
            return 1
        return max(1, min(runs, available_cpus()))
    try:
        n = int(jobs)
    except (TypeError, ValueError):
        raise BenchError(f"--jobs expects a number >= 1 or 'auto', got {jobs!r}") from None
    if n < 1:
        raise BenchError(f"--jobs expects a number >= 1 or 'auto', got {jobs!r}")
    if n > 1 and world_size > 1:
        raise BenchError("--jobs above 1 cannot be combined with torchrun (each run already uses every rank)")
    if n > 1 and device_type != "cpu":
        raise BenchError(f"--jobs above 1 runs several trainings on one {device_type} device; use --jobs 1")
    return max(1, min(n, runs))


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Intra-op threads of each worker: ``--threads`` when given, else the CPUs split evenly."""
    if threads is not None:
        return max(1, threads)
    return max(1, available_cpus() // max(1, jobs))


class _QueueReporter:
    """A worker's :class:`bench.runner.train.Reporter`: every call goes to the parent, tagged with ``key``."""

    def __init__(self, key: int):
        self.key = key

    def _send(self, method: str, *args: Any) -> None:
        _QUEUE.put((self.key, method, args))

    def start_run(self, loss: str, seed: int) -> None:
        self._send("start_run", loss, seed)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._send("start_epoch", epoch, epochs, steps, done)

    def step(self, values: dict[str, Any]) -> None:
        self._send("step", {k: v for k, v in values.items() if isinstance(v, (int, float, str)) or v is None})

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._send("end_epoch", {k: v for k, v in row.items() if isinstance(v, (int, float, str)) or v is None})

    def message(self, text: str) -> None:
        self._send("message", text)


def _init_worker(progress: Any, threads: int, workers: int) -> None:
    global _QUEUE
    _QUEUE = progress
    from bench.threads import configure

    configure(workers, threads)


def _run_task(key: int, run: Any, plan: Any, corpus: Any, force: bool, resume: bool, report: bool) -> Any:
    reporter = _QueueReporter(key) if report else None
    return run(plan, corpus, force=force, resume=resume, reporter=reporter, untrained_cache=_UNTRAINED)


class _Fanout:
    """The parent's end: one reporter per worker-side run (sharing the parent's console and bars)."""

    def __init__(self, reporter: Any):
        self.reporter = reporter
        self.per_run: dict[int, Any] = {}

    def __call__(self, key: int, method: str, args: tuple[Any, ...]) -> None:
        target = self.per_run.get(key)
        if target is None:
            target = self.per_run[key] = _twin(self.reporter)
        getattr(target, method)(*args)


def _twin(reporter: Any) -> Any:
    """A reporter of its own for one concurrent run; a Rich one shares the parent's bars and header."""
    from bench.runner.progress import RichReporter

    if not isinstance(reporter, RichReporter):
        return reporter
    twin = RichReporter(console=reporter.console, label=reporter.label)
    twin.live = reporter.live
    twin._header_done = True
    if reporter.live:
        twin.progress = reporter._ensure()  # closed by the parent's reporter, not by the twin
    return twin


def run_parallel(
    run: Any,
    plans: list[Any],
    corpus: Any,
    jobs: int,
    *,
    force: bool = False,
    resume: bool = False,
    reporter: Any = None,
    threads: int | None = None,
) -> list[Any]:
    """``run(plan, corpus, force=, resume=, reporter=, untrained_cache=)`` (a module-level function,
    :func:`bench.runner.experiment.run_planned`) for every plan, ``jobs`` at a time in worker
    processes; outcomes in the order of ``plans``. Errors ``run`` raises propagate."""
    ctx = mp.get_context("spawn")  # not fork: the parent's OpenMP thread pool does not survive a fork
    progress: Any = ctx.Queue()
    fanout = _Fanout(reporter) if reporter is not None else None
    label = str(getattr(reporter, "label", "") or "")
    if reporter is not None and label and not getattr(reporter, "_header_done", True):
        reporter.message(f"experiment {label}")  # the header a serial run prints at its first start_run
        reporter._header_done = True
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set() or not progress.empty():
            try:
                key, method, args = progress.get(timeout=0.1)
            except queue.Empty:
                continue
            if fanout is not None:
                fanout(key, method, args)

    drain = threading.Thread(target=pump, name="bench-progress", daemon=True)
    drain.start()
    workers = plans[0].cfg.data.workers if plans else 0
    try:
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_worker,
            initargs=(progress, threads_per_job(jobs, threads), workers),
        ) as pool:  # fmt: skip
            futures = [
                pool.submit(_run_task, k, run, p, corpus, force, resume, reporter is not None)
                for k, p in enumerate(plans)
            ]
            return [f.result() for f in futures]
    finally:
        stop.set()
        drain.join()
