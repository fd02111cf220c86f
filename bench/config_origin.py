"""Where each config setting came from, so that an out-of-range value is reported at its file and line.

``load_config`` merges a preset, a config file and ``--set`` overrides; a range check sees only the
merged value (``train.patience must be >= 1, got -1``). :class:`Origins` remembers, for every dotted
key, the sources that set it, and :meth:`Origins.locate` turns such an error into
``my.toml:12: train.patience must be >= 1, got -1`` (a ``--set`` value is named by its key).

Which keys a source sets comes from parsing it (``tomllib``), so keys inside inline tables count;
their lines come from :func:`key_lines`, a small scan of the TOML text that follows strings,
comments and multi-line arrays. A key inside an inline table is reported at the line of the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _strip(line: str, state: list[str]) -> tuple[str, int]:
    """``line`` with string contents and comments blanked, and the change of bracket depth outside
    strings. ``state`` holds the open multi-line string delimiter across lines (``[]`` when none)."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(line):
        if state:
            delim = state[0]
            if line.startswith(delim, i) and (delim == "'''" or not _escaped(line, i)):
                state.clear()
                out.append("s")  # where the string was
                i += len(delim)
            else:
                i += 1
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            state.append(line[i : i + 3])
            i += 3
            continue
        if c in "\"'":
            end = i + 1
            while end < len(line) and (line[end] != c or (c == '"' and _escaped(line, end))):
                end += 1
            out.append(line[i : end + 1])  # quoted keys keep their text; values are ignored later
            i = end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        out.append(c)
        i += 1
    return "".join(out), depth


def _escaped(line: str, i: int) -> bool:
    n = 0
    while i - 1 - n >= 0 and line[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def _dotted(text: str) -> str:
    parts = re.findall(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return ".".join(next((p for p in groups if p), "") for groups in parts)


_HEADER = re.compile(r"^\s*\[(\[?)([^\[\]]+)\]\]?\s*$")
_KEY = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'))*)\s*="
)


def key_lines(text: str) -> dict[str, int]:
    """``dotted key -> 1-based line`` of every table header and key assignment in TOML ``text``.

    Lines are split at ``\\n`` only (TOML's line break; ``\\r\\n`` too), not at the other Unicode
    breaks ``str.splitlines`` knows. Lines inside multi-line strings and arrays are not keys.
    """
    out: dict[str, int] = {}
    table = ""
    state: list[str] = []
    depth = 0
    for n, raw in enumerate(text.split("\n"), start=1):
        in_value = bool(state) or depth > 0
        line, change = _strip(raw.rstrip("\r"), state)
        if not in_value:
            if m := _HEADER.match(line):
                table = _dotted(m.group(2))
                out.setdefault(table, n)
            elif m := _KEY.match(line):
                key = _dotted(m.group(1))
                out[f"{table}.{key}" if table else key] = n
        depth = max(0, depth + change)
    return out


def dotted_keys(data: Any, prefix: str, into: set[str]) -> set[str]:
    """Every dotted key of a parsed mapping: the tables and the values under them."""
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            into.add(key)
            dotted_keys(v, key, into)
    return into


@dataclass(frozen=True)
class Source:
    """One layer of a merged config: ``label`` (a path or ``--set``), ``path`` (None for ``--set``),
    ``keys`` (every dotted key it sets, inline tables included) and ``lines`` (key -> line)."""

    label: str
    path: Path | None
    keys: frozenset[str]
    lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        for k in _enclosing(key):
            if k in self.lines:
                return self.lines[k]
        return None


@dataclass
class Origins:
    """The sources of one merged config, in merge order (later ones win)."""

    sources: list[Source] = field(default_factory=list)

    def add_file(self, path: Path, text: str, data: dict[str, Any]) -> None:
        """A config file: its ``text`` (for the lines) and ``data``, that text parsed (for the keys)."""
        self.sources.append(Source(str(path), path, frozenset(dotted_keys(data, "", set())), key_lines(text)))

    def add_overrides(self, overrides: list[tuple[list[str], Any]]) -> None:
        """``--set`` values: (key path, parsed value) pairs; a table value sets the keys inside it too."""
        keys: set[str] = set()
        for parts, value in overrides:
            key = ".".join(parts)
            keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            dotted_keys(value, key, keys)
        self.sources.append(Source("--set", None, frozenset(keys), {}))

    def where(self, key: str) -> Source | None:
        """The last source that set ``key``; None when none did (a default)."""
        return next((s for s in reversed(self.sources) if key in s.keys), None)

    def user_set(self, key: str, preset: Path | None) -> bool:
        """Whether ``key`` was set by the user (a config file or ``--set``), not only by the preset."""
        source = self.where(key)
        return source is not None and (source.path is None or source.path != preset)

    def locate(self, err: BenchError, loss: str | None = None) -> BenchError:
        """``err`` with the file and line of the setting its message names, when that is known."""
        if err.path is not None:
            return err
        for key in _keys_in(err.message, loss):
            source = self.where(key)
            if source is None:
                continue
            if source.path is None:  # typed on the command line: the message names the key, or we do
                return err if err.message.startswith(key) else BenchError(f"--set {key}: {err.message}")
            return BenchError(err.message, path=source.path, line=source.line_of(key))
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


_SECTIONS = ("experiment", "preset", "data", "model", "loss", "optim", "train", "eval", "finetune")


def _keys_in(message: str, loss: str | None) -> list[str]:
    """The config keys an error message is about, most specific first.

    Message shapes: ``train.patience must ...``, ``config.train.patience: expected ...``,
    ``config.train: unknown parameter 'x'``, ``optim.per_loss.aam: unknown key 'x'``,
    ``optim.per_loss.aam: optim.min_lr must ...``, ``aamsupcon: scale must ...``,
    ``loss 'aam': unknown parameter 'x'``, ``backbone 'tiny': unknown parameter 'x'``,
    ``ecapa.channels must ...`` (a backbone's own parameter), ``unknown loss 'x'``.
    """
    if m := re.match(r"^unknown loss '([^']*)'", message):
        n = m.group(1)
        return [f"optim.per_loss.{n}", f"loss.per_loss.{n}", "loss.name"]
    if m := re.match(r"^loss '([^']*)': unknown parameter '([^']*)'", message):
        return [f"loss.per_loss.{m.group(1)}.{m.group(2)}", f"loss.params.{m.group(2)}"]
    if m := re.match(r"^backbone '[^']*': unknown parameter '([^']*)'", message):
        return [f"model.params.{m.group(1)}"]
    if m := re.match(r"^(?:config\.?)?([\w.-]*): unknown (?:parameter|key) '([^']*)'", message):
        return [f"{m.group(1)}.{m.group(2)}" if m.group(1) else m.group(2)]
    m = re.match(r"^(?:config\.)?([A-Za-z_][\w-]*(?:\.[\w-]+)*)(?::| must\b| needs\b| has\b)", message)
    if not m:
        return []
    key = m.group(1)
    if key in _SECTIONS:  # "config.train: expected a table" (a `[[train]]` or `train = 3`)
        return [key]
    if "." not in key:  # "aamsupcon: scale must be > 0": a loss's own parameter
        if param := re.match(rf"^{re.escape(key)}: ([\w-]+) ", message):
            name = param.group(1)
            return [f"loss.per_loss.{key}.{name}", f"loss.params.{name}"]
        return [f"loss.params.{key}"] + ([f"loss.per_loss.{loss}.{key}"] if loss else [])
    section, _, rest = key.partition(".")
    if section not in _SECTIONS:  # "ecapa.channels must ...": a registry config's own field
        return [f"model.params.{rest}", f"loss.params.{rest}"]
    if inner := re.match(rf"^{re.escape(key)}: ([\w.]+) (?:must|has)\b", message):  # per-loss rule
        name = inner.group(1).split(".")[-1]
        return [f"{key}.{name}", inner.group(1), key]
    return [key]
