"""Build a report: run folders -> systems -> statistics -> figures -> Markdown/HTML/CSV/LaTeX files.

Output folder layout::

    report.md  report.html  report.json
    table.csv  pairwise.csv  runs.csv  table.tex
    figures/<name>.png, figures/<name>.svg

``report.json`` is written last and marks the folder as a finished report; a folder holding one
is never overwritten unless ``force`` is given.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json
from reports import convergence
from reports.collect import Run, System, group_systems, load_runs, runs_frame
from reports.render import FORMATS, Report, Section, pairwise_csv, table_csv, table_tex, to_html, to_markdown
from reports.stats import METRICS, Aligned, align, genre_table, p_targets_of, pairwise, system_table

MARKER = "report.json"


@dataclass
class Options:
    """Settings of one report build (the CLI maps its flags onto these)."""

    formats: tuple[str, ...] = FORMATS
    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05
    unit: str = "speaker"  # bootstrap unit: speaker | trial
    pair_metric: str = "eer"
    metrics: tuple[str, ...] = tuple(METRICS)
    figures: bool = True
    embeddings: bool = True
    title: str = ""
    force: bool = False
    equal_budget: bool = False  # keep verdicts between unconverged systems (an equal-budget comparison)


def default_name(paths: list[str | Path], runs: list[Run]) -> str:
    """Report folder name: the experiment name(s), else the first input folder's name."""
    exps = sorted({r.experiment for r in runs if r.experiment})
    name = "+".join(exps) if 0 < len(exps) <= 3 else Path(paths[0]).resolve().name
    return "".join(ch if ch.isalnum() or ch in "-_+." else "_" for ch in name) or "report"


def report_inputs(paths: list[str | Path]) -> list[str]:
    """The input folders of a report as recorded in ``report.json`` (absolute, sorted)."""
    return sorted({str(Path(p).resolve()) for p in paths})


def check_out_dir(out: Path, force: bool, inputs: list[str] | None = None, option: str = "--out") -> None:
    """Refuse to overwrite another report or an unrelated non-empty folder.

    A report of the same input folders (``inputs`` equal to the ``inputs`` recorded in its
    ``report.json``) is ours to regenerate: it is replaced without ``force``.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise BenchError("report output path exists and is not a folder", path=out)
    if (out / MARKER).exists():
        if force or (inputs is not None and _recorded_inputs(out / MARKER) == inputs):
            return
        raise BenchError(
            "a report of other runs is already here; pass --force to replace it or choose " + option, path=out
        )
    if any(out.iterdir()) and not force:
        raise BenchError("output folder is not empty and holds no report; pass --force or choose " + option, path=out)


def _recorded_inputs(marker: Path) -> list[str] | None:
    return _recorded(marker, "inputs")


def is_report_within(out: Path, folder: Path) -> bool:
    """True when ``out`` holds a report whose every input folder lies inside ``folder``.

    ``bench demo`` owns such a report: it replaces it even where its inputs were a subset of the
    runs (a rebuild from the runs that did not fail).
    """
    recorded = _recorded_inputs(out / MARKER)
    if not recorded:
        return False
    root = Path(folder).resolve()
    return all(Path(p).is_relative_to(root) for p in recorded)


def _recorded(marker: Path, key: str) -> Any:
    try:
        return json.loads(marker.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def results_digest(paths: list[str | Path]) -> str:
    """Hex sha256 over every result file a report of ``paths`` reads.

    Each run folder found under ``paths`` (its own evaluation and ``bench eval`` folders count as
    runs) contributes its absolute path and the name and bytes of each file directly in it
    (metrics.json, scores, run record, epoch log); checkpoints are below it and dot-files (the run's
    lock, temporary files) are left out. A run
    re-scored, added or removed changes the digest, which is how a stored report is known stale.

    Raises:
        BenchError: ``paths`` holds no finished run (as :func:`build` would).
    """
    import hashlib

    from bench.io import file_sha256
    from reports.collect import find_run_dirs

    h = hashlib.sha256()
    for run in sorted(find_run_dirs(paths)):
        h.update(f"run {run}\n".encode())
        for f in sorted(p for p in run.iterdir() if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.name} {file_sha256(f)}\n".encode())
    return h.hexdigest()


def report_is_current(out: str | Path, paths: list[str | Path]) -> bool:
    """Whether ``out`` holds a whole report (every file of its recorded formats and figures) built
    from exactly the results now under ``paths``."""
    out = Path(out)
    marker = out / MARKER
    if not marker.is_file() or _recorded(marker, "results") != results_digest(paths):
        return False
    files = [name for fmt in _recorded(marker, "formats") or [] for name in FORMAT_FILES.get(fmt, ())]
    figures = [f"figures/{name}.png" for name in _recorded(marker, "figures") or []]
    return all((out / name).is_file() for name in files + figures)


#: The files each output format writes: ``format -> ((file name, render(report, folder) -> text), ...)``.
FORMAT_WRITERS: dict[str, tuple[tuple[str, Callable[[Report, Path], str]], ...]] = {
    "md": (("report.md", lambda r, out: to_markdown(r, base=out)),),
    "html": (("report.html", lambda r, out: to_html(r)),),
    "csv": (
        ("table.csv", lambda r, out: table_csv(r)),
        ("pairwise.csv", lambda r, out: pairwise_csv(r)),
        ("runs.csv", lambda r, out: r.runs.to_csv(index=False)),
    ),
    "tex": (("table.tex", lambda r, out: table_tex(r)),),
}
FORMAT_FILES = {fmt: tuple(name for name, _ in files) for fmt, files in FORMAT_WRITERS.items()}


def parse_formats(text: str) -> tuple[str, ...]:
    items = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise BenchError(f"unknown report format '{', '.join(bad) or text}'; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def _representative(mat: np.ndarray, eers: list[float]) -> int:
    """Index of the seed with the median EER (the lower middle one for an even count)."""
    order = np.argsort(eers, kind="stable")
    return int(order[(len(order) - 1) // 2])


def _det_curves(al: Aligned, table: pd.DataFrame, p_target: float) -> list[dict[str, Any]]:
    from bench.metrics import compute_metrics, det_curve, min_dcf

    labels = al.labels
    out = []
    for s, mat, (_, row) in zip(al.systems, al.scores, table.iterrows()):
        k = _representative(mat, row["eer_seeds"])
        fpr, fnr = det_curve(mat[k], labels, max_points=2000)
        m = compute_metrics(mat[k], labels, p_targets=(p_target,))
        _, thr = min_dcf(mat[k], labels, p_target=p_target, return_threshold=True)
        # The operating point at the minDCF threshold (accept score >= thr), to mark on the curve.
        accept = mat[k] >= thr
        dcf_point = (float(accept[~labels].mean()), float((~accept[labels]).mean()))
        out.append(
            {
                "label": s.label,
                "fpr": np.asarray(fpr),
                "fnr": np.asarray(fnr),
                "eer": float(m["eer"]),
                "p_target": p_target,
                "dcf_point": dcf_point,
                "scores": mat[k],
                "labels": labels,
                "threshold": m.get("eer_threshold"),
            }
        )
    return out


def _epochs(system: System) -> list[pd.DataFrame]:
    frames = []
    for r in system.runs:
        path = r.epochs_path
        if path is None:
            continue
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise BenchError(f"unreadable epoch log ({e})", path=path) from None
        if not df.empty:
            frames.append(df)
    return frames


def utt_speaker(utt: str) -> str:
    """Speaker of an utterance id (``id00800/x``, ``test/id00800-singing-01-005``, ``id10270/yt/00001``)."""
    parts = utt.split("/")
    if len(parts) > 1 and parts[0] in ("test", "enroll", "eval", "data", "wav"):
        parts = parts[1:]
    head = parts[0]
    return head.split("-", 1)[0] if len(parts) == 1 else head


def _embedding_points(
    systems: list[System], n_speakers: int = 6, per_speaker: int = 40, seed: int = 0
) -> pd.DataFrame | None:
    """PCA of a few speakers' embeddings, per system, from the first ``*.npz`` (ids, embeddings) in its runs."""
    from bench.scoring import read_embeddings

    rows = []
    rng = np.random.default_rng(seed)
    for s in systems:
        files = [f for r in s.runs for f in sorted({*r.path.glob("*.npz"), *(r.run_root or r.path).glob("*.npz")})]
        for f in files:
            try:
                ids, mat = read_embeddings(f)
            except BenchError:
                continue  # some other .npz; the map is optional
            emb = np.asarray(mat, dtype=np.float64)
            spk = np.array([utt_speaker(u) for u in ids])
            uniq, counts = np.unique(spk, return_counts=True)
            chosen = sorted(uniq[np.argsort(-counts, kind="stable")][:n_speakers])
            idx = np.concatenate([rng.permutation(np.flatnonzero(spk == c))[:per_speaker] for c in chosen])
            x = emb[idx] / np.maximum(np.linalg.norm(emb[idx], axis=1, keepdims=True), 1e-12)
            x = x - x.mean(axis=0)
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            xy = x @ vt[:2].T
            rows.append(
                pd.DataFrame(
                    {"x": xy[:, 0], "y": xy[:, 1] if xy.shape[1] > 1 else 0.0, "speaker": spk[idx], "system": s.label}
                )
            )
            break
    return pd.concat(rows, ignore_index=True) if rows else None


def build(
    paths: list[str | Path],
    out: str | Path | None = None,
    opts: Options | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> tuple[Path, Report]:
    """Build the report for the runs under ``paths`` into ``out`` (default ``reports/out/<name>/``).

    ``progress(description, total)`` may return a callback advanced once per unit of slow work.
    """
    opts = opts or Options()
    runs = load_runs(paths)
    grouped = group_systems(runs)
    out_dir = Path(out) if out else Path("reports/out") / default_name(paths, runs)
    inputs = report_inputs(paths)
    check_out_dir(out_dir, opts.force, inputs)
    digest = results_digest(paths)
    tick = progress or (lambda desc, total: lambda: None)

    # Write into a sibling temp folder, then swap it in, so a failed build never leaves half a report
    # where a good one was (and --force replaces the old one only once the new one is complete).
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fig_dir = tmp / "figures"
    sections = []
    try:
        for corpus, systems in grouped.items():
            al = align(systems, group_by=opts.unit)
            n = len(systems)
            table = system_table(
                al,
                list(opts.metrics),
                n_boot=opts.n_boot,
                seed=opts.seed,
                alpha=opts.alpha,
                progress=tick(f"bootstrap intervals ({corpus})", n * len(opts.metrics)),
                pair_metrics=(opts.pair_metric,),
            )
            pairs = pairwise(
                al,
                metric=opts.pair_metric,
                n_boot=opts.n_boot,
                seed=opts.seed,
                alpha=opts.alpha,
                progress=tick(f"paired tests ({corpus})", n * (n - 1) // 2),
            )
            # Verdicts between runs that had not reached their validation plateau say nothing about the
            # objectives; reports/convergence.py withholds them unless an equal-budget comparison is asked.
            table = convergence.add_columns(table, systems)
            pairs = convergence.gate_verdicts(pairs, table, equal_budget=opts.equal_budget)
            genre = genre_table(systems, "eer")
            sec = Section(
                corpus=corpus,
                trials_path=systems[0].runs[0].trials_path,
                trials_sha256=systems[0].runs[0].trials_sha256,
                enroll_modes=sorted({r.enroll_mode for s in systems for r in s.runs}),
                table=table,
                pairwise=pairs,
                genre=genre,
            )
            if opts.figures:
                sec.figures = _figures(al, table, systems, genre, fig_dir, corpus, opts, tick)
            sections.append(sec)
        title = opts.title or f"Speaker-verification loss comparison: {default_name(paths, runs)}"
        report = Report(
            title=title,
            sections=sections,
            runs=runs_frame(runs),
            metrics=list(opts.metrics),
            settings={
                "n_boot": opts.n_boot,
                "alpha": opts.alpha,
                "unit": opts.unit,
                "seed": opts.seed,
                "pair_metric": opts.pair_metric,
                "calibration": calibration_methods(runs),
                "equal_budget": opts.equal_budget,
            },
        )
        _write(report, tmp, opts, inputs, digest)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Figures were recorded at their temporary paths; point them at the final folder.
    for sec in report.sections:
        for f in sec.figures:
            f.png = out_dir / f.png.relative_to(tmp)
            f.svg = out_dir / f.svg.relative_to(tmp)
    return out_dir, report


def _swap_in(new: Path, out_dir: Path) -> None:
    """Move the finished report ``new`` to ``out_dir``; an old report there is first renamed aside, so
    it is either left whole (when it cannot be moved: a read-only or immutable folder) or replaced
    whole, never half removed. The old copy is deleted last; a part that cannot be deleted stays in
    the hidden ``.<name>.old`` beside it, with a warning."""
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a build that was killed mid-swap
    try:
        if out_dir.exists():
            out_dir.rename(old)
        try:
            new.rename(out_dir)
        except OSError:
            if old.exists() and not out_dir.exists():
                old.rename(out_dir)  # put the old report back
            raise
    except OSError as e:
        raise BenchError(
            f"cannot replace the report folder: {e.strerror or e}; the old report is left as it was", path=out_dir
        ) from None
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        warnings.warn(f"{old}: part of the replaced report could not be deleted; remove it by hand", stacklevel=2)


def calibration_methods(runs: list[Run]) -> list[str]:
    """Each distinct calibration of the runs, e.g. ``linear (prior 0.01): 6 runs``."""
    counts: dict[str, int] = {}
    for r in runs:
        c = r.calibration
        if not c or c.get("method") in (None, "none") or c.get("skipped") or "overall" not in c:
            text = "none"
        else:
            quality = f", quality: {', '.join(c.get('quality') or [])}" if c.get("quality") else ""
            text = f"{c['method']} (prior {float(c.get('prior', 0.0)):g}{quality})"
        counts[text] = counts.get(text, 0) + 1
    return [f"{k}: {v} run{'s' if v > 1 else ''}" for k, v in sorted(counts.items())]


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s.lower()).strip("-") or "corpus"


@dataclass
class FigureInputs:
    """What a report figure may draw from, for one evaluation corpus."""

    al: Aligned
    table: pd.DataFrame
    systems: list[System]
    genre: pd.DataFrame
    fig_dir: Path
    corpus: str
    slug: str
    opts: Options
    curves: list[dict[str, Any]]  # DET curves of every system (shared by the DET and score figures)


def _det(f: FigureInputs) -> Any:
    from reports import figures as figs

    return figs.det_figure(f.curves, f.fig_dir, f"det-{f.slug}", f"DET curves — {f.corpus}")


def _scores(f: FigureInputs) -> Any:
    from reports import figures as figs

    return figs.histogram_figure(f.curves, f.fig_dir, f"scores-{f.slug}", f"Score distributions — {f.corpus}")


def _training(f: FigureInputs) -> Any:
    from reports import figures as figs

    curves = [{"label": s.label, "epochs": _epochs(s)} for s in f.systems]
    return figs.training_figure(curves, f.fig_dir, f"training-{f.slug}", "Training curves")


def _genre(f: FigureInputs) -> Any:
    from reports import figures as figs

    if f.genre is None or f.genre.empty or len(f.genre) < 2:
        return None
    return figs.genre_figure(f.genre, f.fig_dir, f"genre-eer-{f.slug}", f"EER per genre — {f.corpus}")


def _embeddings(f: FigureInputs) -> Any:
    from reports import figures as figs

    pts = _embedding_points(f.systems, seed=f.opts.seed) if f.opts.embeddings else None
    if pts is None:
        return None
    return figs.embedding_figure(pts, f.fig_dir, f"embeddings-{f.slug}", f"Embedding map — {f.corpus}")


#: The report's figures, in page order: ``name -> builder(FigureInputs) -> Figure | None`` (None: not
#: drawn for this corpus). A new figure is its drawing function in ``reports/figures.py`` plus one
#: entry here.
FIGURES: dict[str, Callable[[FigureInputs], Any]] = {
    "det": _det,
    "scores": _scores,
    "training": _training,
    "genre": _genre,
    "embeddings": _embeddings,
}


def _figures(
    al: Aligned,
    table: pd.DataFrame,
    systems: list[System],
    genre: pd.DataFrame,
    fig_dir: Path,
    corpus: str,
    opts: Options,
    tick: Callable[[str, int], Callable[[], None]],
) -> list[Any]:
    step = tick(f"figures ({corpus})", len(FIGURES))
    p = p_targets_of(list(opts.metrics))[0]
    inputs = FigureInputs(al, table, systems, genre, fig_dir, corpus, _slug(corpus), opts, _det_curves(al, table, p))
    out = []
    for build_figure in FIGURES.values():
        fig = build_figure(inputs)
        if fig is not None:
            out.append(fig)
        step()
    return out


def summary(report: Report) -> list[dict[str, Any]]:
    """The comparison table as JSON-ready records (one per system), also the CLI's ``--json`` output."""
    recs = []
    for sec in report.sections:
        for _, row in sec.table.iterrows():
            rec: dict[str, Any] = {
                "eval_corpus": sec.corpus,
                "system": row["system"],
                "loss": row["loss"],
                "backbone": row["backbone"],
                "train_corpus": row["train_corpus"],
                "seeds": [int(x) for x in str(row["seeds"]).split(",")],
                "converged": None if pd.isna(row.get("converged")) else bool(row.get("converged")),
                "converged_text": row.get("converged_text", ""),
                "budget": row.get("budget", ""),
            }
            if row.get("warning"):
                rec["warning"] = row["warning"]
            for m in report.metrics:
                rec[m] = {k: _clean(row[f"{m}_{k}"]) for k in ("mean", "std", "low", "high", "best")}
                rec[m]["per_seed"] = [float(x) for x in row[f"{m}_seeds"]]
            recs.append(rec)
    return recs


def _clean(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    v = float(v)
    return None if np.isnan(v) else v


def _write(report: Report, out: Path, opts: Options, inputs: list[str], digest: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for fmt in opts.formats:
        for name, render in FORMAT_WRITERS[fmt]:
            atomic_write(out / name, render(report, out))
    pairs = [s.pairwise for s in report.sections]
    atomic_write_json(
        out / MARKER,
        {
            "title": report.title,
            "settings": report.settings,
            "formats": list(opts.formats),
            "table": summary(report),
            "pairwise": json.loads(pd.concat(pairs, ignore_index=True).to_json(orient="records")) if pairs else [],
            "figures": [f.name for s in report.sections for f in s.figures],
            "runs": [str(p) for p in report.runs["run"]],
            "inputs": inputs,
            "results": digest,
        },
    )
