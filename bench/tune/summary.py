"""A study in numbers: trial table, best trial, and the ``bench run`` command for the final model."""

from __future__ import annotations

import shlex
from typing import Any


def final_command(attrs: dict[str, Any], params: dict[str, Any]) -> str:
    """``bench run ...`` that trains the final model with ``params`` under the study's own settings.

    The study records how its base config was given (preset, config file, ``--set`` list), so the
    command reproduces it and adds one ``--set loss.params.NAME=VALUE`` per tuned loss parameter and
    one ``--set KEY=VALUE`` per tuned config key (``optim.lr``). Values are written exactly (shortest
    round-trip repr), not rounded.
    """
    origin = attrs.get("origin", {})
    experiment = attrs.get("experiment", "default")
    loss = attrs.get("loss", "")
    parts = ["bench", "run", "--losses", loss]
    if origin.get("preset"):
        parts += ["--preset", origin["preset"]]
    if origin.get("config"):
        parts += ["--config", origin["config"]]
    replaced = {_set_key(k) for k in params} | {_per_loss_key(k, loss) for k in params}
    for s in origin.get("sets", []):
        key = ".".join(p for p in s.split("=", 1)[0].strip().split(".") if p)
        if key in replaced or key in ("experiment", "loss.name"):
            continue
        parts += ["--set", s]
    for k, v in params.items():
        parts += ["--set", f"{_set_key(k)}={_value(v)}"]
    parts += ["--experiment", f"{experiment}-tuned"]
    if origin.get("out") and origin["out"] != "runs":
        parts += ["--out", origin["out"]]
    return " ".join(shlex.quote(p) for p in parts)


def _set_key(name: str) -> str:
    """The ``--set`` key of a searched name: ``loss.params.margin`` for ``margin``, ``optim.lr`` as is."""
    return name if "." in name else f"loss.params.{name}"


def _per_loss_key(name: str, loss: str) -> str:
    """The ``--set`` key of the per-loss value: ``loss.per_loss.aam.margin``, ``optim.per_loss.aam.lr``."""
    section, _, key = name.rpartition(".")
    return f"{section or 'loss'}.per_loss.{loss}.{key}"


def preset_snippet(loss: str, params: dict[str, Any]) -> str:
    """The TOML lines that put ``params`` into a preset for ``loss`` only, exact values.

    Loss parameters go under ``[loss.per_loss.<loss>]``, config keys under their section's per-loss
    table (``optim.lr`` under ``[optim.per_loss.<loss>]``, applied by bench.per_loss), so one
    preset can hold each compared loss's own tuned values.
    """
    tables: dict[str, list[str]] = {}
    for k, v in params.items():
        section, _, key = k.rpartition(".")
        tables.setdefault(f"{section or 'loss'}.per_loss.{loss}", []).append(f"{key} = {_value(v)}")
    return "\n\n".join(f"[{t}]\n" + "\n".join(lines) for t, lines in tables.items())


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def summarize(study: Any, storage: str = "") -> dict[str, Any]:
    """JSON-friendly summary: counts per state, best trial (+ command), every trial's values."""
    from optuna.trial import TrialState

    from bench.tune.options import metric_of
    from bench.tune.storage import redact

    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    rows = []
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": dict(t.params),
                "epochs": {int(k): v for k, v in sorted(t.intermediate_values.items())},
                "best_val_eer": t.user_attrs.get("best_val_eer"),
                "run_dir": t.user_attrs.get("run_dir"),
                "seconds": t.duration.total_seconds() if t.duration is not None else None,
            }
        )
    attrs = dict(study.user_attrs)
    metric = metric_of(attrs.get("objective"))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if complete:
        b = min(complete, key=lambda t: (t.value, t.number))
        best = {
            "number": b.number,
            "value": b.value,
            "params": dict(b.params),
            "run_dir": b.user_attrs.get("run_dir"),
            "command": final_command(attrs, dict(b.params)),
            "preset": preset_snippet(attrs.get("loss", ""), dict(b.params)),
        }
    return {
        "study": study.study_name,
        "storage": redact(storage) if storage else "",
        "objective": (
            f"{metric.text} (held-out training speakers) of the weights bench run scores: the best"
            " validated epoch (validation EER) under train.early_stop, else the last; lower is better"
        ),
        "metric": attrs.get("objective") or "eer",  # bench.tune.options.OBJECTIVES name
        "loss": attrs.get("loss"),
        "space": attrs.get("space", []),
        "study_dir": attrs.get("study_dir"),
        "counts": counts,
        "finished": counts.get("complete", 0) + counts.get("pruned", 0),
        "best": best,
        "trials": rows,
    }
