"""User-facing errors: one exception type the CLI turns into a clean message and exit code 2."""

from __future__ import annotations

from pathlib import Path


class BenchError(Exception):
    """An error caused by the user's input, reported without a traceback.

    ``path`` and ``line`` (1-based) locate the offending input where there is one, and are
    prefixed to the message as ``path:line: message``.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.message
