"""Where each config setting came from, so that an out-of-range value is reported at its file and line.

``load_config`` merges a preset, a config file and ``--set`` overrides; a range check sees only the
merged value (``train.patience must be >= 1, got -1``). :class:`Origins` remembers, for every dotted
key, the last source that set it, and :meth:`Origins.locate` turns such an error into
``my.toml:12: train.patience must be >= 1, got -1`` (a ``--set`` value is named by its key).

The key-to-line map is read from the TOML text itself (:func:`key_lines`): table headers and
``key = value`` lines, dotted keys included. Inline tables and multi-line arrays give the line of
their first key, which is where a reader looks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _dotted(text: str) -> str:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return ".".join(next(p for p in groups if p) for groups in parts)


def key_lines(text: str) -> dict[str, int]:
    """``dotted key -> 1-based line`` of every table header and key assignment in TOML ``text``."""
    return _scan(text)[0]


def _scan(text: str) -> tuple[dict[str, int], set[str]]:
    out: dict[str, int] = {}
    headers: set[str] = set()
    table = ""
    in_string = False
    for n, line in enumerate(text.splitlines(), start=1):
        opens = bool(line.count('"""') % 2 or line.count("'''") % 2)
        if in_string:  # inside a multi-line string nothing is a key
            in_string = not opens
            continue
        in_string = opens
        if m := _HEADER.match(line):
            table = _dotted(m.group(1))
            out.setdefault(table, n)
            headers.add(table)
        elif m := _KEY.match(line):
            key = _dotted(m.group(1))
            out[f"{table}.{key}" if table else key] = n
            headers.discard(f"{table}.{key}" if table else key)
    return out, headers


# "train.patience must ...", "config.train.patience: expected ...", "config.train: unknown parameter 'x'",
# "aamsupcon: scale must ...", "optim.per_loss.aam.lr must ..."
_UNKNOWN = re.compile(r"^config(?:\.([\w.]+))?: unknown parameter '([\w-]+)'")
_LEADING = re.compile(r"^(?:config\.)?([A-Za-z_][\w-]*(?:\.[\w-]+)*)(?::| must\b| needs\b| has\b)")


@dataclass
class Origins:
    """The sources of one merged config, in merge order: ``(label, path or None, key -> line)``."""

    sources: list[tuple[str, Path | None, dict[str, int], set[str]]] = field(default_factory=list)

    def add_file(self, path: Path, text: str) -> None:
        self.sources.append((str(path), path, *_scan(text)))

    def add_overrides(self, keys: list[list[str]]) -> None:
        self.sources.append(("--set", None, {".".join(k): 0 for k in keys}, set()))

    def where(self, key: str) -> tuple[str, Path | None, int | None] | None:
        """The last source that set ``key``, else the last that assigned a table holding it (an inline
        table): (label, path, line); None when no source names it (a default)."""
        for keys in ([key], _enclosing(key)[1:]):
            for label, path, lines, headers in reversed(self.sources):
                for k in keys:
                    if k in lines and (k == key or k not in headers):
                        return label, path, lines[k] or None
        return None

    def user_set(self, key: str, preset: Path | None) -> bool:
        """Whether ``key`` was set by the user (a config file or ``--set``), not by the preset."""
        hit = self.where(key)
        return hit is not None and (hit[1] is None or hit[1] != preset)

    def locate(self, err: BenchError, loss: str | None = None) -> BenchError:
        """``err`` with the file and line of the setting its message names, when that is known."""
        if err.path is not None:
            return err
        for key in _keys_in(err.message, loss):
            hit = self.where(key)
            if hit is None:
                continue
            label, path, line = hit
            if path is None:  # typed on the command line: the message already names the key
                return err if err.message.startswith(key) else BenchError(f"{label} {key}: {err.message}")
            return BenchError(err.message, path=path, line=line)
        return err

    @contextmanager
    def located(self, loss: str | None = None) -> Iterator[None]:
        """Re-raise a BenchError from the block at the file and line of the setting it names."""
        try:
            yield
        except BenchError as e:
            raise self.locate(e, loss) from None


def _enclosing(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _keys_in(message: str, loss: str | None) -> list[str]:
    if m := re.match(r"^unknown loss '([^']*)'", message):
        n = m.group(1)
        return [f"optim.per_loss.{n}", f"loss.per_loss.{n}", "loss.name"]
    if m := _UNKNOWN.match(message):
        return [f"{m.group(1)}.{m.group(2)}" if m.group(1) else m.group(2)]
    m = _LEADING.match(message)
    if not m:
        return []
    key = m.group(1)
    if "." not in key:  # "aamsupcon: scale must be > 0": a loss's own parameter
        param = re.match(rf"^{re.escape(key)}: ([\w-]+) ", message)
        if param:
            name = param.group(1)
            return [f"loss.per_loss.{key}.{name}", f"loss.params.{name}"]
        return [f"loss.params.{key}"] + ([f"loss.per_loss.{loss}.{key}"] if loss else [])
    return [key]
