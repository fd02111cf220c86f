"""Child processes never outlive their parent nor hold its locks.

Two mechanisms, both needed after a SIGKILL of the main process (a preempted job that a scheduler
requeues at once):

* :func:`hold_fd` / the at-fork hook: a forked child (DataLoader worker, multiprocessing pool)
  inherits every descriptor, and an ``flock`` belongs to the open file description, so an orphaned
  worker kept the run's lock for seconds after its parent died. Descriptors registered with
  :func:`hold_fd` are closed in every child right after ``fork``; the parent's lock is unaffected
  (closing one copy does not unlock a description that another copy still references).
* :func:`die_with_parent`: a worker asks the kernel for SIGKILL when its parent dies
  (Linux ``prctl(PR_SET_PDEATHSIG)``), and exits at once if the parent is already gone.

:func:`pid_alive` is the liveness check behind taking over a lock whose owner is dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

_HELD: set[int] = set()
PR_SET_PDEATHSIG = 1


def hold_fd(fd: int) -> None:
    """Mark ``fd`` as the parent's own (a lock): forked children close their copy at once."""
    _HELD.add(fd)


def release_fd(fd: int) -> None:
    _HELD.discard(fd)


def _close_held_in_child() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be SIGKILLed when the parent dies; exit now if it already has (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # the parent may have died between fork and prctl: then we were re-parented already
    if os.getppid() != parent_pid:
        os._exit(0)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed, not yet reaped process is dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        # the state follows the parenthesised command name, which may itself contain spaces
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block ends, then raise it as usual.

    For native code that calls back into Python (eSpeak's audio callback through ctypes,
    libsndfile's virtual IO through cffi): a KeyboardInterrupt raised inside such a callback is
    printed and swallowed, the native code goes on without the data that callback was passing, and
    a damaged utterance was written as if finished. Blocks held this way are short (one utterance),
    so Ctrl-C still stops at once. Outside the main thread, or where SIGINT is ignored (pool workers),
    the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
        else:
            raise KeyboardInterrupt


def ignore_interrupt() -> None:
    """In a pool worker: leave Ctrl-C to the parent, which cancels the pool. A worker that took it
    died at a random point, sometimes holding the pool's queue lock, and the parent then waited
    forever for its pool to shut down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
