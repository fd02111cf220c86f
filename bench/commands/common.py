"""Helpers shared by the CLI commands: consoles, error handling, JSON output."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from bench.errors import BenchError


class FitConsole(Console):
    """A Console that, off a terminal (a pipe, a log file), prints each table at its natural width
    and each message on one line.

    Rich lays out for 80 columns when it finds no terminal and squeezes a wider table by cutting its
    headers ('minD…', 'conv…'), and breaks a longer message (a path, a hint, a TOML line) in two; a
    log file has no right edge, so there the table gets the columns its content needs and a message
    is soft-wrapped (left whole for the reader's viewer). On a terminal nothing changes: the
    terminal's width rules.
    """

    _fit = 0  # width of the table being printed off a terminal; 0 = the console's own width

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size._replace(width=max(size.width, self._fit))

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def print(self, *objects: Any, **kwargs: Any) -> None:
        from rich.measure import Measurement
        from rich.table import Table

        if self.is_terminal:
            super().print(*objects, **kwargs)
            return
        if not any(isinstance(o, Table) for o in objects):
            kwargs.setdefault("soft_wrap", True)
            super().print(*objects, **kwargs)
            return
        wide = self.options.update_width(10_000)
        self._fit = max(Measurement.get(self, wide, o).maximum for o in objects if isinstance(o, Table))
        try:
            super().print(*objects, **kwargs)
        finally:
            self._fit = 0


# Markup off: user text (paths, ids, 'enroll test score [label]') is printed as given; styling is
# applied with Text objects where wanted.
console = FitConsole(markup=False)
err_console = FitConsole(stderr=True, markup=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code`` (under torchrun: rank 0 prints it)."""
    import os

    if os.environ.get("RANK", "0") != "0":
        # Bad input fails every rank alike; let rank 0 print it and end the job first.
        import time

        time.sleep(5)
        raise typer.Exit(code)
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def at_least(low: int) -> Callable[..., Any]:
    """Typer callback of an integer option: a value below ``low`` is one ``error:`` line, exit 2.

    Typer's own ``min=`` prints a usage block; bench's other option checks (--seeds, --p-target) are
    one line, and so is this one.
    """

    def check(param: typer.CallbackParam, value: int | None) -> int | None:
        if value is not None and value < low:
            fail(f"{max(param.opts, key=len)} must be an integer >= {low}, got {value}")
        return value

    return check


def not_built(command: str, issue: int) -> NoReturn:
    """Exit non-zero for a command that is part of the product but not implemented yet."""
    fail(f"'bench {command}' is not built yet (tracked in issue {issue}); nothing was done.", code=3)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BenchError (bad user input) into a clean message and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as e:
            fail(str(e))
        except OSError as e:
            # a full disk or a read-only folder is the user's environment, not a bug: no traceback
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                where = f" writing {e.filename}" if e.filename else ""
                fail(f"{e.strerror or e}{where}; finished results were left intact")
            # an output path that is a folder, or in a folder that does not exist: the user's to fix
            if e.errno in (errno.EISDIR, errno.ENOTDIR, errno.ENOENT) and (e.filename2 or e.filename):
                fail(f"{e.filename2 or e.filename}: {e.strerror or e}")
            raise
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper


def print_json(obj: Any) -> None:
    """``--json`` output: strict JSON (non-finite numbers as null, :func:`bench.io.to_json`)."""
    from bench.io import to_json

    sys.stdout.write(to_json(obj, default=str) + "\n")
