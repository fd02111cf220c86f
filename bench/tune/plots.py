"""Study figures in the report style (seaborn "paper" theme, PNG + SVG, Agg backend).

Drawn with ``optuna.visualization.matplotlib``, whose functions Optuna marks experimental; the
warnings are silenced here because the figures are checked by our tests instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless, like the reports

MIN_TRIALS_IMPORTANCE = 5  # fANOVA on fewer complete trials ranks noise
SVG_META = {"Date": None}  # no timestamp in the SVG, so redrawing an unchanged study gives the same file


def save_plots(study: Any, out_dir: str | Path) -> list[Path]:
    """Write the study's figures to ``out_dir``; returns the PNG paths (figures without data are skipped).

    history: objective per trial and best so far; intermediate: the objective's metric per epoch of every
    trial (pruned ones stop early); importance: fANOVA parameter importances (>= 2 params and
    >= 5 complete trials); contour: the first two numeric parameters (e.g. margin x temperature);
    slice: objective against each parameter.
    """
    import matplotlib.pyplot as plt
    import optuna
    import seaborn as sns
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from bench.tune.options import metric_of

    target = metric_of(study.user_attrs.get("objective")).axis
    out = Path(out_dir)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    names = sorted({p for t in complete for p in t.params})
    numeric = [
        n
        for n in names
        if not isinstance(complete[0].distributions.get(n), optuna.distributions.CategoricalDistribution)
    ]
    jobs: list[tuple[str, Any]] = [("history", lambda: ovm.plot_optimization_history(study, target_name=target))]
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        jobs.append(("intermediate", lambda: ovm.plot_intermediate_values(study)))
    if len(names) >= 2 and len(complete) >= MIN_TRIALS_IMPORTANCE:
        jobs.append(("importance", lambda: ovm.plot_param_importances(study, target_name=target)))
    if len(numeric) >= 2 and len(complete) >= 2:
        jobs.append(("contour", lambda: ovm.plot_contour(study, params=numeric[:2], target_name=target)))
    if names:
        jobs.append(("slice", lambda: ovm.plot_slice(study, params=names, target_name=target)))
    written = []
    sns.set_theme(style="whitegrid", context="paper")
    for name, draw in jobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "too few trials" notes from contour
            ax = draw()
        fig = _figure(ax)
        fig.suptitle(f"{study.study_name}: {name}", fontsize=10)
        written.append(_save(fig, out, name))
        plt.close(fig)
    return written


def _figure(ax: Any) -> Any:
    # single Axes, or a numpy array of Axes (slice / contour of several parameters)
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    return first.figure


def _save(fig: Any, out: Path, name: str) -> Path:
    from bench.io import atomic_save

    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    atomic_save(png, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    atomic_save(out / f"{name}.svg", lambda fh: fig.savefig(fh, format="svg", bbox_inches="tight", metadata=SVG_META))
    return png
