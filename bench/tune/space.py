"""Search spaces: ``--param NAME=SPEC`` strings checked against a loss's config dataclass.

``NAME`` is a field of the loss's config dataclass (see ``bench list losses``), or a dotted
training-recipe key from the allow-list :data:`bench.tune.keys.CONFIG_KEYS` (``optim.lr``, ...).
Spec forms:

``low:high``           uniform float (or integer, for ``int`` fields) in [low, high]
``low:high:log``       log-uniform; needs ``low > 0``
``low:high:STEP``      a grid ``low, low+STEP, ...`` (not combinable with ``log``)
``a,b,c``              a categorical choice (the only form for ``bool`` and ``str`` fields)

Both ends of a range and every choice must pass the loss config's own ``validate()`` (so
``temperature=0:0.3`` fails because a temperature must be > 0), which keeps the range rules in
one place: the loss's dataclass. A dotted key's values must pass the checks ``--set KEY=VALUE``
does (bench/config_checks.py) in the study's base config.

Example:
    >>> spec = parse_param("temperature=0.02:0.3:log", "aamsupcon")
    >>> spec.kind, spec.low, spec.high, spec.log
    ('float', 0.02, 0.3, True)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.registry import coerce, suggest
from bench.tune.keys import CONFIG_KEYS, is_config_key, key_type, with_values

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class ParamSpec:
    """One searched loss parameter (``margin``) or config key (``optim.lr``): a float / int range or a
    categorical choice."""

    name: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for an Optuna ``trial``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def text(self) -> str:
        """The ``NAME=SPEC`` form this spec was parsed from (normalised); ``parse_param`` reads it back."""
        if self.kind == "categorical":
            return f"{self.name}=" + ",".join(_fmt(c) for c in self.choices)
        tail = ":log" if self.log else (f":{_fmt(self.step)}" if self.step is not None else "")
        return f"{self.name}={_fmt(self.low)}:{_fmt(self.high)}{tail}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def searchable(loss: str) -> dict[str, Any]:
    """Field name -> type of the loss's config fields that can be searched (numbers, bools, strings)."""
    from losses import LOSSES

    cls = LOSSES.get(loss).config_cls
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = _scalar_type(hints.get(f.name, f.type))
        if tp is not None:
            out[f.name] = tp
    return out


def _scalar_type(tp: Any) -> type | None:
    """``float``/``int``/``bool``/``str`` for a (possibly ``X | None``) field type; None for lists etc."""
    if tp in (float, int, bool, str):
        return tp
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and args[0] in (float, int, bool, str):
        return args[0]
    return None


def _closest(name: str, names: list[str]) -> str:
    # "aam_margin" for aamsupcon means "margin" (and "margin" for a loss with only "aam_margin" the
    # reverse): a name that shares a whole underscore-separated word is a better hint than plain edit
    # distance, which would pick "easy_margin" as often.
    affix = [n for n in names if n.endswith("_" + name) or n.startswith(name + "_")]
    affix = affix or [n for n in names if name.endswith("_" + n) or name.startswith(n + "_")]
    if len(affix) == 1:
        return f" (did you mean '{affix[0]}'?)"
    return suggest(name, names)


def parse_param(text: str, loss: str, fixed: dict[str, Any] | None = None, base: Any = None) -> ParamSpec:
    """Parse one ``--param NAME=SPEC`` for ``loss``; BenchError names the problem and the valid names.

    ``fixed`` are the loss parameters set elsewhere (``--set loss.params.X=...``); the range ends
    are validated together with them. A dotted ``NAME`` (``optim.lr``) is a key of
    :data:`bench.tune.keys.CONFIG_KEYS`, whose range ends are validated in ``base`` (the study's
    ExperimentConfig; the defaults when None).
    """
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise BenchError(f"--param expects NAME=LOW:HIGH[:log|:STEP] or NAME=A,B,...; got '{text}'")
    where = f"--param {text}"
    if is_config_key(name):
        out, ends = _parse_spec(name, spec, key_type(name, where), where)
        _check_config_values(base, name, ends, where)
        return out
    fields = searchable(loss)
    if name not in fields:
        from losses import LOSSES

        all_names = [f.name for f in dataclasses.fields(LOSSES.get(loss).config_cls)]
        why = "cannot be searched (not a number, bool or string)" if name in all_names else "is not a parameter"
        recipe = [k for k in CONFIG_KEYS if k.rpartition(".")[2] == name]  # "lr" means "optim.lr"
        hint = f" (did you mean '{recipe[0]}'?)" if recipe and name not in all_names else _closest(name, list(fields))
        raise BenchError(f"--param {text}: '{name}' {why} of loss '{loss}'{hint}; searchable: {', '.join(fields)}")
    out, ends = _parse_spec(name, spec, fields[name], where)
    own = {k: v for k, v in (fixed or {}).items() if not is_config_key(k)}
    _check_values(loss, name, ends, own, where)
    return out


def _parse_spec(name: str, spec: str, tp: type, where: str) -> tuple[ParamSpec, list[Any]]:
    """The spec of a range or a choice list, and the values to validate (range ends, or every choice)."""
    if ":" in spec:
        if tp in (bool, str):
            raise BenchError(f"{where}: '{name}' is a {tp.__name__}; give choices, e.g. {name}=A,B")
        out = _parse_range(name, spec, tp, where)
        return out, [out.low, out.high]
    choices = tuple(coerce(c.strip(), tp, f"{where}: choice") for c in spec.split(",") if c.strip())
    if not choices:
        raise BenchError(f"{where}: no choices given")
    if len(set(choices)) != len(choices):
        raise BenchError(f"{where}: repeated choices")
    return ParamSpec(name, "categorical", choices=choices), list(choices)


def _parse_range(name: str, spec: str, tp: type, where: str) -> ParamSpec:
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        raise BenchError(f"{where}: a range is LOW:HIGH, LOW:HIGH:log or LOW:HIGH:STEP")
    low = coerce(parts[0], tp, f"{where}: low")
    high = coerce(parts[1], tp, f"{where}: high")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise BenchError(f"{where}: range ends must be finite numbers")
    if not low < high:
        raise BenchError(f"{where}: low ({low}) must be < high ({high})")
    log, step = False, None
    if len(parts) == 3:
        if parts[2].lower() == "log":
            log = True
            if low <= 0:
                raise BenchError(f"{where}: a log range needs low > 0, got {low}")
        else:
            step = coerce(parts[2], tp, f"{where}: step (or 'log')")
            if not 0 < step <= high - low:
                raise BenchError(f"{where}: step must be > 0 and <= high - low, got {step}")
    return ParamSpec(name, "int" if tp is int else "float", low=low, high=high, log=log, step=step)


def _check_values(loss: str, name: str, values: list[Any], fixed: dict[str, Any], where: str) -> None:
    """Each value must give a valid loss config (its ``validate()``), with the fixed params applied."""
    from losses import LOSSES

    for v in values:
        try:
            LOSSES.make_config(loss, {**fixed, name: v})
        except BenchError as e:
            raise BenchError(f"{where}: {name}={_fmt(v)} is not valid: {e.message}") from None


def _check_config_values(base: Any, name: str, values: list[Any], where: str) -> None:
    """Each value of config key ``name`` must give a valid config (``--set name=value``'s checks)."""
    from bench.config import ExperimentConfig

    cfg = base if base is not None else ExperimentConfig()
    for v in values:
        try:
            with_values(cfg, {name: v})
        except BenchError as e:
            raise BenchError(f"{where}: {name}={_fmt(v)} is not valid: {e.message}") from None


def parse_space(texts: list[str], loss: str, fixed: dict[str, Any] | None = None, base: Any = None) -> list[ParamSpec]:
    """All ``--param`` specs of a study; at least one, each name once, none also fixed by ``--set``.

    ``fixed``: loss parameters (bare names) and config keys (dotted) the user set with ``--set``;
    ``base``: the study's ExperimentConfig, for checking config-key values (see :func:`parse_param`).
    """
    if not texts:
        raise BenchError(
            f"give at least one --param NAME=LOW:HIGH; searchable for '{loss}': {', '.join(searchable(loss))}; "
            f"recipe keys: {', '.join(CONFIG_KEYS)}"
        )
    specs = [parse_param(t, loss, fixed, base) for t in texts]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BenchError(f"--param given more than once for: {', '.join(dup)}")
    both = sorted(set(names) & set(fixed or {}))
    params = [n for n in both if not is_config_key(n)]
    if params:
        raise BenchError(f"{', '.join(params)}: both searched (--param) and fixed (--set loss.params.*); drop one")
    if both:
        raise BenchError(f"{', '.join(both)}: both searched (--param) and fixed (--set {both[0]}=...); drop one")
    return specs


def split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's values as (loss parameters, dotted config keys)."""
    params = {k: v for k, v in values.items() if not is_config_key(k)}
    return params, {k: v for k, v in values.items() if is_config_key(k)}
