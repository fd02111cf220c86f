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
