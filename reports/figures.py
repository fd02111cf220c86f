"""Report figures (matplotlib + seaborn, Agg backend), each saved as PNG and SVG.

DET curves use probit (normal-deviate) axes, where equal-variance Gaussian score distributions give
straight lines; the ticks are labelled in percent. Operating points come from ``bench.metrics``:
the EER point is where the curve crosses the diagonal at the EER, the minDCF point is the curve
point with the lowest detection cost at the system's p_target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are drawn headless, also on machines with a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import norm  # noqa: E402

DET_TICKS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40, 60, 80, 90]  # percent
# Matplotlib writes the current date into SVG metadata by default; a fixed record keeps
# re-rendered reports byte-identical for the same runs.
SVG_META = {"Date": None}


@dataclass
class Figure:
    """A written figure: file stem, title, caption, and the PNG / SVG files."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def _save(fig: Any, out_dir: Path, name: str, title: str, caption: str) -> Figure:
    from bench.io import atomic_save

    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    atomic_save(png, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    atomic_save(svg, lambda fh: fig.savefig(fh, format="svg", bbox_inches="tight", metadata=SVG_META))
    plt.close(fig)
    return Figure(name=name, title=title, caption=caption, png=png, svg=svg)


def _probit(p: np.ndarray) -> np.ndarray:
    # Clip away 0 and 1, which map to -inf / +inf on the normal-deviate scale.
    return norm.ppf(np.clip(p, 1e-6, 1 - 1e-6))


def det_figure(curves: list[dict[str, Any]], out_dir: Path, name: str, title: str) -> Figure:
    """DET curves of several systems.

    Each curve dict has ``label``, ``fpr`` and ``fnr`` (fractions, from ``bench.metrics.det_curve``),
    ``eer`` (percent) and optionally ``dcf_point`` = (fpr, fnr) and ``p_target`` for the minDCF marker.
    """
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    colors = sns.color_palette("tab10", n_colors=max(len(curves), 1))
    # The lower limit follows the data (0.1 % by default) so the EER and minDCF markers stay in view;
    # points beyond the axes (e.g. a minDCF point at 0 false acceptances) are drawn on the edge.
    lo, hi = 1e-3, 0.4
    for c in curves:
        lo = min(lo, 0.5 * c["eer"] / 100 if c["eer"] > 0 else lo)
        dcf = [v for v in (c.get("dcf_point") or ()) if 0 < v < 1]
        lo = min([lo] + [0.8 * v for v in dcf])
        hi = max([hi] + [1.15 * v for v in dcf])  # a minDCF point at p=0.01 often has a high miss rate
    lo, hi = max(lo, min(DET_TICKS) / 100), min(hi, max(DET_TICKS) / 100)

    def edge(v: float) -> np.ndarray:
        return _probit(np.array([min(max(v, lo), hi)]))

    for c, col in zip(curves, colors):
        ax.plot(
            _probit(np.asarray(c["fpr"])),
            _probit(np.asarray(c["fnr"])),
            color=col,
            lw=1.6,
            label=f"{c['label']} (EER {c['eer']:.2f}%)",
        )
        e = c["eer"] / 100
        ax.plot(edge(e), edge(e), "o", color=col, ms=6, mec="black", mew=0.6, clip_on=False, zorder=5)
        if c.get("dcf_point") is not None:
            fpr, fnr = c["dcf_point"]
            ax.plot(edge(fpr), edge(fnr), "s", color=col, ms=6, mec="black", mew=0.6, clip_on=False, zorder=5)
    ticks = [t for t in DET_TICKS if lo * 0.999 <= t / 100 <= hi * 1.001] or DET_TICKS
    pos = _probit(np.array(ticks) / 100)
    ax.plot(_probit(np.array([lo, hi])), _probit(np.array([lo, hi])), color="grey", lw=0.7, ls="--")
    for setter, tick_setter in ((ax.set_xlim, ax.set_xticks), (ax.set_ylim, ax.set_yticks)):
        setter(_probit(np.array([lo])).item(), _probit(np.array([hi])).item())
        tick_setter(pos)
    labels = [f"{t:g}" for t in ticks]
    ax.set_xticklabels(labels)
    ax.set_yticklabels(labels)
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("False rejection rate (%)")
    ax.set_title(title)
    p = next((c.get("p_target") for c in curves if c.get("p_target")), None)
    handles, leg = ax.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], ls="", marker="o", color="grey", mec="black"),
        plt.Line2D([], [], ls="", marker="s", color="grey", mec="black"),
    ]
    leg += ["EER point", f"minDCF point (p={p:g})" if p else "minDCF point"]
    ax.legend(handles, leg, fontsize=7, loc="upper right")
    caption = (
        "DET curves on normal-deviate axes; circles mark the EER, squares the minimum-DCF operating "
        "point. Multi-seed systems show the seed with the median EER."
    )
    return _save(fig, out_dir, name, title, caption)


def histogram_figure(systems: list[dict[str, Any]], out_dir: Path, name: str, title: str) -> Figure:
    """Target / non-target score densities, one panel per system (dicts with label, scores, labels)."""
    sns.set_theme(style="whitegrid", context="paper")
    n = len(systems)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False, sharex=True)
    for ax, s in zip(axes.flat, systems):
        scores, labels = np.asarray(s["scores"]), np.asarray(s["labels"], dtype=bool)
        bins = np.histogram_bin_edges(scores, bins=60)
        # One filled step polygon per class instead of 60 bar patches: same picture, far cheaper to draw.
        ax.hist(
            scores[~labels],
            bins=bins,
            density=True,
            alpha=0.5,
            color="tab:red",
            label="non-target",
            histtype="stepfilled",
        )
        ax.hist(
            scores[labels], bins=bins, density=True, alpha=0.5, color="tab:blue", label="target", histtype="stepfilled"
        )
        if s.get("threshold") is not None:
            ax.axvline(s["threshold"], color="black", lw=0.8, ls="--", label="EER threshold")
        ax.set_title(s["label"], fontsize=9)
        ax.set_xlabel("score")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    axes.flat[0].set_ylabel("density")
    fig.suptitle(title)
    fig.tight_layout()
    caption = "Score densities of target and non-target trials (median-EER seed); dashed: EER threshold."
    return _save(fig, out_dir, name, title, caption)


# Epoch-log columns worth plotting, by the names the runner may use for them.
CURVE_COLUMNS = [
    ("loss", ["train_loss", "loss"]),
    ("accuracy", ["train_acc", "acc", "accuracy", "train_accuracy"]),
    ("learning rate", ["lr", "learning_rate"]),
    ("validation EER (%)", ["val_eer", "valid_eer"]),
]


def curve_columns(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(title, column) pairs of the known training-curve columns present in an epochs table."""
    out = []
    for title, names in CURVE_COLUMNS:
        col = next((c for c in names if c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any()), None)
        if col:
            out.append((title, col))
    return out


def training_figure(curves: list[dict[str, Any]], out_dir: Path, name: str, title: str) -> Figure | None:
    """Per-epoch training curves; dicts with label and ``epochs`` (list of per-seed DataFrames)."""
    panels: list[tuple[str, str]] = []
    for c in curves:
        for df in c["epochs"]:
            for item in curve_columns(df):
                if item[0] not in [p[0] for p in panels]:
                    panels.append(item)
    if not panels:
        return None
    order = [t for t, _ in CURVE_COLUMNS]
    panels.sort(key=lambda p: order.index(p[0]))
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 2.8), squeeze=False)
    colors = sns.color_palette("tab10", n_colors=max(len(curves), 1))
    for ax, (ptitle, _) in zip(axes.flat, panels):
        names = dict(CURVE_COLUMNS)[ptitle]
        for c, col in zip(curves, colors):
            for i, df in enumerate(c["epochs"]):
                key = next((n for n in names if n in df.columns), None)
                if key is None:
                    continue
                x = df["epoch"] if "epoch" in df.columns else np.arange(1, len(df) + 1)
                y = pd.to_numeric(df[key], errors="coerce")
                ax.plot(
                    x,
                    y,
                    color=col,
                    lw=1.2,
                    alpha=0.9 if i == 0 else 0.45,
                    label=c["label"] if i == 0 else None,
                    marker="." if len(df) < 30 else None,
                )
        ax.set_title(ptitle, fontsize=9)
        ax.set_xlabel("epoch")
        if ptitle == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    caption = "Per-epoch training curves; one line per seed (the first seed drawn darker)."
    return _save(fig, out_dir, name, title, caption)


def genre_figure(table: pd.DataFrame, out_dir: Path, name: str, title: str) -> Figure | None:
    """Heatmap of EER (%) with genres as rows and systems as columns (mean over seeds)."""
    if table.empty:
        return None
    sns.set_theme(style="white", context="paper")
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * table.shape[1], 0.9 + 0.38 * table.shape[0]))
    sns.heatmap(
        table,
        annot=True,
        fmt=".1f",
        cmap="rocket_r",
        cbar_kws={"label": "EER (%)"},
        ax=ax,
        linewidths=0.5,
        linecolor="white",
    )
    ax.set_xlabel("system")
    ax.set_ylabel("genre")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    caption = "EER (%) per genre of the test utterance, mean over seeds."
    return _save(fig, out_dir, name, title, caption)


def embedding_figure(points: pd.DataFrame, out_dir: Path, name: str, title: str) -> Figure:
    """2-D map (columns x, y, speaker, system) of a few speakers' embeddings, one panel per system."""
    sns.set_theme(style="whitegrid", context="paper")
    systems = list(dict.fromkeys(points["system"]))
    fig, axes = plt.subplots(1, len(systems), figsize=(3.6 * len(systems), 3.4), squeeze=False)
    for ax, s in zip(axes.flat, systems):
        sub = points[points["system"] == s]
        sns.scatterplot(data=sub, x="x", y="y", hue="speaker", s=18, ax=ax, legend=ax is axes.flat[0], palette="tab10")
        ax.set_title(s, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    if axes.flat[0].get_legend() is not None:
        sns.move_legend(axes.flat[0], "best", fontsize=6, title="speaker")
    fig.suptitle(title)
    fig.tight_layout()
    caption = "First two principal components of length-normalised embeddings of a few test speakers."
    return _save(fig, out_dir, name, title, caption)
