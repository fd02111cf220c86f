"""Name -> (class, config dataclass) registries shared by losses and backbones.

A registry entry pairs a component class with the typed dataclass that configures it.  The
registry, not a hand-written list, is the source of truth for ``bench list`` and for the
parameters that ``bench tune`` may search, so adding a component is one file plus one
``register`` call.

Example:
    >>> from dataclasses import dataclass
    >>> reg = Registry("widget")
    >>> @dataclass
    ... class WConfig:
    ...     size: int = 3
    >>> @reg.register("w", WConfig, "a widget")
    ... class W:
    ...     def __init__(self, cfg):
    ...         self.cfg = cfg
    >>> reg.build("w", {"size": 5}).cfg.size
    5
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, class, config dataclass, one-line summary and metadata.

    ``family`` groups related entries (e.g. "classification", "pair"); ``paper`` names the source of
    the formula (authors, venue/arXiv) so that ``bench list`` can cite it.
    """

    name: str
    cls: type
    config_cls: type
    summary: str
    family: str = ""
    paper: str = ""

    def parameters(self) -> list[tuple[str, str, Any]]:
        """(name, type name, default) for each field of the config dataclass, in order."""
        hints = typing.get_type_hints(self.config_cls)
        out = []
        for f in dataclasses.fields(self.config_cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = None
            out.append((f.name, _type_name(hints.get(f.name, f.type)), default))
        return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def suggest(name: str, choices: list[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry:
    """A named collection of components, each built from a config dataclass."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, config_cls: type, summary: str = "", *, family: str = "", paper: str = ""
    ) -> Callable[[type], type]:
        """Class decorator adding ``cls`` under ``name``; duplicate names are a programming error.

        ``family`` and ``paper`` are listing metadata (see :class:`Entry`).
        """
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"{self.kind} '{name}': config must be a dataclass")

        def deco(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = summary or (cls.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, cls, config_cls, text, family, paper)
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises BenchError suggesting the closest one."""
        if name not in self._entries:
            raise BenchError(
                f"unknown {self.kind} '{name}'{suggest(name, self.names())}; known: {', '.join(self.names())}"
            )
        return self._entries[name]

    def make_config(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """The config dataclass of ``name`` with ``params`` applied and type-checked."""
        entry = self.get(name)
        return config_from_mapping(entry.config_cls, dict(params or {}), where=f"{self.kind} '{name}'")

    def build(self, name: str, params: Mapping[str, Any] | Any | None = None, *args: Any, **kwargs: Any) -> Any:
        """Instantiate ``name`` as ``cls(config, *args, **kwargs)``.

        ``params`` is either a mapping of overrides or an already-built config dataclass.
        """
        entry = self.get(name)
        cfg = params if isinstance(params, entry.config_cls) else self.make_config(name, params)
        return entry.cls(cfg, *args, **kwargs)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (possibly a string from the command line) to type ``tp`` or raise BenchError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except BenchError as e:
                errors.append(str(e))
        raise BenchError(errors[0] if errors else f"{where}: cannot convert {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise BenchError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        seq = [coerce(v, inner, where) for v in items]
        return seq if origin is list else tuple(seq)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise BenchError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise BenchError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise BenchError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise BenchError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise BenchError(f"{where}: expected a table, got {value!r}")
        return config_from_mapping(tp, dict(value), where)
    return value


def config_from_mapping(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (possibly nested) mapping, rejecting unknown keys.

    Fields not in ``data`` keep their defaults; each value is coerced to the field's type. A
    dataclass may define ``validate(self)`` raising BenchError for out-of-range values.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        k = unknown[0]
        raise BenchError(f"{where}: unknown parameter '{k}'{suggest(k, names)}; valid: {', '.join(names)}")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj
