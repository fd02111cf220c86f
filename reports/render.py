"""Render a built report as Markdown, self-contained HTML (images inlined as base64), CSV and LaTeX.

Renderers take a :class:`Report` and return text; the caller writes the files atomically.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.metrics import METRIC_TABLE
from reports.stats import metric_label

FORMATS = ("md", "html", "csv", "tex")


@dataclass
class Section:
    """Everything reported for one evaluation corpus (one trial list)."""

    corpus: str
    trials_path: str
    trials_sha256: str
    enroll_modes: list[str]
    table: pd.DataFrame
    pairwise: pd.DataFrame
    figures: list[Any] = field(default_factory=list)  # reports.figures.Figure
    genre: pd.DataFrame | None = None


@dataclass
class Report:
    title: str
    sections: list[Section]
    runs: pd.DataFrame
    metrics: list[str]
    settings: dict[str, Any]


def _num(x: float, digits: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cell(row: pd.Series, m: str, sep: str = " ± ") -> tuple[str, str]:
    """(mean ± std, [low, high]) strings for metric ``m`` of a table row."""
    d = METRIC_TABLE.digits(m)
    main = _num(row[f"{m}_mean"], d)
    std = row.get(f"{m}_std")
    if std is not None and not math.isnan(std):
        main += f"{sep}{_num(std, d)}"
    lo, hi = row.get(f"{m}_low"), row.get(f"{m}_high")
    ci = "" if lo is None or math.isnan(lo) else f"[{_num(lo, d)}, {_num(hi, d)}]"
    return main, ci


def warned(text: str, warning: Any) -> str:
    """``text`` with its warning (e.g. one seed only) appended visibly, if there is one."""
    return f"{text} ⚠ {warning}" if isinstance(warning, str) and warning else str(text)


def _pval(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def settings_text(r: Report) -> str:
    s = r.settings
    unit = "enrolment speakers" if s.get("unit") == "speaker" else "trials"
    return (
        f"Values are mean ± std over seeds (sample std; blank with one seed). Brackets: "
        f"{100 * (1 - s['alpha']):g} % bootstrap interval, {s['n_boot']} resamples of seeds and {unit} "
        "(two-stage: each resample draws the seeds and, independently, the units with replacement, so "
        "seed-to-seed variation is included; ⚠ marks a system or test with one seed, where it is not). "
        f"Pairwise tests: paired bootstrap of the {metric_label(s['pair_metric'])} "
        f"difference A − B over the same resamples, seed i with seed i, on trials matched by (enroll, test), "
        "two-sided p; "
        "'no significant difference' when the interval contains 0 (a per-comparison verdict); "
        "p (Holm) corrects the p-values for testing every pair. Best value per column in bold. "
        + calibration_text(s.get("calibration") or [])
        + " "
        + convergence_text(r)
    )


def calibration_text(methods: list[str]) -> str:
    """What the calibrated columns mean, and which calibration the runs used."""
    used = f" Calibration used: {'; '.join(methods)}." if methods else ""
    return (
        "minDCF and minCllr are those of the raw scores at their best threshold and best monotone mapping, "
        "chosen with the evaluation labels: lower bounds. Uncalibrated cosine scores are not log-likelihood "
        "ratios, so they have no meaningful actDCF or Cllr; actDCF (cal.) and Cllr (cal.) are those of scores "
        "calibrated by logistic regression fitted on the validation trials (held-out training speakers, never "
        "the evaluation trials) and show how much is lost when the threshold must be set in advance; '–' "
        "marks runs without a calibration (eval.calibration.method = none, or no validation trials). "
        "Cllr and actDCF have no interval." + used
    )


def convergence_text(r: Report) -> str:
    """How the Converged and Budget columns bear on the verdicts (see reports/convergence.py)."""
    if r.settings.get("equal_budget"):
        return (
            "Equal-budget comparison (--equal-budget): verdicts compare the systems after the training budgets "
            "in the Budget column, whether or not they converged."
        )
    return (
        "Converged: the run's validation EER had reached its plateau (train.patience validations without an "
        "improvement above train.min_delta; under optim.scheduler = plateau, at the lowest learning rate, after "
        "optim.max_reductions cuts); a pair in which a system did not converge gets no verdict "
        "('not converged'); --equal-budget compares such runs at their stated budgets."
    )


def _conv_cells(row: pd.Series) -> list[str]:
    return [str(row.get("converged_text", "")), str(row.get("budget", ""))]


# ---------------------------------------------------------------- Markdown


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(r: Report, figure_dir: Path | None = None, base: Path | None = None) -> str:
    """Markdown report; figures linked as relative paths to their PNGs."""
    out = [f"# {r.title}", "", settings_text(r), ""]
    for sec in r.sections:
        out += [
            f"## Evaluation corpus: {sec.corpus}",
            "",
            f"Trials: `{sec.trials_path}` (sha256 `{sec.trials_sha256[:16]}`), enrolment: "
            f"{', '.join(sec.enroll_modes)}.",
            "",
        ]
        header = ["System", "Seeds"] + [metric_label(m) for m in r.metrics] + ["Converged", "Budget"]
        rows = []
        for _, row in sec.table.iterrows():
            cells = [row["system"], warned(str(row["n_seeds"]), row.get("warning"))]
            for m in r.metrics:
                main, ci = cell(row, m)
                main = f"**{main}**" if row[f"{m}_best"] else main
                cells.append(f"{main} {ci}".strip())
            rows.append(cells + _conv_cells(row))
        out += ["### Comparison", "", _md_table(header, rows), ""]
        if not sec.pairwise.empty:
            out += [
                "### Pairwise significance",
                "",
                _md_table(
                    ["A", "B", "Δ (A − B)", "Interval", "p", "p (Holm)", "Verdict"],
                    [
                        [
                            p.system_a,
                            p.system_b,
                            f"{p.diff:+.3f}",
                            f"[{p.low:+.3f}, {p.high:+.3f}]",
                            _pval(p.p_value),
                            _pval(p.p_holm),
                            warned(p.verdict, getattr(p, "warning", "")),
                        ]
                        for p in sec.pairwise.itertuples()
                    ],
                ),
                "",
            ]
        if sec.figures:
            out += ["### Figures", ""]
            for f in sec.figures:
                rel = f.png.relative_to(base) if base else f.png
                out += [f"![{f.title}]({rel.as_posix()})", "", f"*{f.caption}*", ""]
    out += ["## Runs", "", _runs_md(r.runs), ""]
    return "\n".join(out)


RUN_COLUMNS = [
    "run",
    "eval_corpus",
    "loss",
    "backbone",
    "train_corpus",
    "seed",
    "preset",
    "enroll_mode",
    "trials",
    "trials_sha256",
    "git",
    "python",
    "torch",
    "converged",
    "epochs",
    "steps",
    "samples_seen",
    "lr",
    "loss_params",
]


def _runs_md(runs: pd.DataFrame) -> str:
    cols = [c for c in RUN_COLUMNS if c in runs.columns]
    return _md_table(cols, [[str(v) for v in row] for row in runs[cols].itertuples(index=False)])


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.best{font-weight:bold}
.ci{color:#666;font-size:0.85em}
figure{margin:1.2em 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:0.85em}
.note{color:#444;font-size:0.9em}
.runs td{font-family:monospace;font-size:0.8em}
.sig{color:#0a6}
.wide{overflow-x:auto}
"""


def _img_tag(f: Any) -> str:
    data = base64.b64encode(f.png.read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{html.escape(f.name)}"><img class="report-figure" alt="{html.escape(f.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(f.caption)}</figcaption></figure>'
    )


def to_html(r: Report) -> str:
    """One HTML file with inline CSS and every figure embedded, openable offline."""
    e = html.escape
    body = [f"<h1>{e(r.title)}</h1>", f'<p class="note">{e(settings_text(r))}</p>']
    for sec in r.sections:
        body.append(f"<h2>Evaluation corpus: {e(sec.corpus)}</h2>")
        body.append(
            f'<p class="note">Trials: <code>{e(sec.trials_path)}</code> (sha256 '
            f"<code>{e(sec.trials_sha256[:16])}</code>), enrolment: {e(', '.join(sec.enroll_modes))}.</p>"
        )
        head = "".join(
            f"<th>{e(h)}</th>"
            for h in ["System", "Seeds"] + [metric_label(m) for m in r.metrics] + ["Converged", "Budget"]
        )
        rows = []
        for _, row in sec.table.iterrows():
            tds = [f"<td>{e(row['system'])}</td>", f"<td>{e(warned(str(row['n_seeds']), row.get('warning')))}</td>"]
            for m in r.metrics:
                main, ci = cell(row, m)
                cls = ' class="best"' if row[f"{m}_best"] else ""
                tds.append(f'<td{cls}>{e(main)}<br><span class="ci">{e(ci)}</span></td>')
            tds += [f'<td class="converged">{e(c)}</td>' for c in _conv_cells(row)]
            rows.append("<tr>" + "".join(tds) + "</tr>")
        body.append(f'<h3>Comparison</h3><table class="comparison"><tr>{head}</tr>{"".join(rows)}</table>')
        if not sec.pairwise.empty:
            prow = []
            for p in sec.pairwise.itertuples():
                cls = "" if p.verdict.startswith("no significant") else ' class="sig"'
                prow.append(
                    f"<tr><td>{e(p.system_a)}</td><td>{e(p.system_b)}</td><td>{p.diff:+.3f}</td>"
                    f"<td>[{p.low:+.3f}, {p.high:+.3f}]</td><td>{e(_pval(p.p_value))}</td><td>{e(_pval(p.p_holm))}</td>"
                    f"<td{cls}>{e(warned(p.verdict, getattr(p, 'warning', '')))}</td></tr>"
                )
            body.append(
                '<h3>Pairwise significance</h3><table class="pairwise"><tr><th>A</th><th>B</th>'
                "<th>Δ (A − B)</th><th>Interval</th><th>p</th><th>p (Holm)</th><th>Verdict</th></tr>"
                + "".join(prow)
                + "</table>"
            )
        if sec.figures:
            body.append("<h3>Figures</h3>" + "".join(_img_tag(f) for f in sec.figures))
    cols = [c for c in RUN_COLUMNS if c in r.runs.columns]
    runs = "".join(
        "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in r.runs[cols].itertuples(index=False)
    )
    body.append(
        '<h2>Runs</h2><div class="wide"><table class="runs"><tr>'
        + "".join(f"<th>{e(c)}</th>" for c in cols)
        + f"</tr>{runs}</table></div>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(r.title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- CSV / LaTeX


def table_csv(r: Report) -> str:
    """The comparison table with numeric columns (mean, std, low, high, best per metric)."""
    frames = [s.table for s in r.sections]
    df = pd.concat(frames, ignore_index=True)
    keep = ["eval_corpus", "system", "loss", "backbone", "train_corpus", "n_seeds", "seeds", "n_trials", "n_target"]
    for m in r.metrics:
        keep += [f"{m}_{k}" for k in ("mean", "std", "low", "high", "best")]
    keep += ["converged", "epochs_mean", "steps_mean", "samples_seen_mean", "budget"]
    return df[[c for c in keep if c in df.columns]].to_csv(index=False, float_format="%.6g")


def pairwise_csv(r: Report) -> str:
    df = pd.concat([s.pairwise for s in r.sections], ignore_index=True)
    return df.to_csv(index=False, float_format="%.6g")


def _tex(s: Any) -> str:
    """Escape LaTeX specials in user text (system names, paths); braces never occur in our labels."""
    out = str(s)
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\^{}"),
    ):
        out = out.replace(a, b)
    return out


def table_tex(r: Report) -> str:
    """booktabs tables (comparison and pairwise), one pair per evaluation corpus."""
    parts = ["% Generated by `bench report`; needs \\usepackage{booktabs}."]
    for sec in r.sections:
        cols = "l" + "r" + "c" * len(r.metrics) + "l"
        head = " & ".join(["System", "Seeds"] + [_tex(metric_label(m)) for m in r.metrics] + ["Converged"])
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\begin{{tabular}}{{{cols}}}",
            r"\toprule",
            head + r" \\",
            r"\midrule",
        ]
        for _, row in sec.table.iterrows():
            cells = [_tex(row["system"]), str(row["n_seeds"])]
            for m in r.metrics:
                main, ci = cell(row, m, sep=" $\\pm$ ")
                main = main.replace("–", "--")
                if row[f"{m}_best"]:
                    main = f"\\textbf{{{main}}}"
                cells.append(f"{main} {{\\scriptsize {ci}}}" if ci else main)
            cells.append(_tex(row.get("converged_text", "")))
            lines.append(" & ".join(cells) + r" \\")
        lines += [
            r"\bottomrule",
            r"\end{tabular}",
            f"\\caption{{Results on {_tex(sec.corpus)}: mean $\\pm$ std over seeds, "
            f"{100 * (1 - r.settings['alpha']):g}\\,\\% bootstrap interval in brackets; best in bold.}}",
            f"\\label{{tab:{_label(sec.corpus)}}}",
            r"\end{table}",
            "",
        ]
        if not sec.pairwise.empty:
            lines += [
                r"\begin{table}[t]",
                r"\centering",
                r"\small",
                r"\begin{tabular}{llrcrrl}",
                r"\toprule",
                r"A & B & $\Delta$ & Interval & $p$ & $p_{\mathrm{Holm}}$ & Verdict \\",
                r"\midrule",
            ]
            for p in sec.pairwise.itertuples():
                lines.append(
                    f"{_tex(p.system_a)} & {_tex(p.system_b)} & {p.diff:+.3f} & "
                    f"[{p.low:+.3f}, {p.high:+.3f}] & {_tex(_pval(p.p_value))} & {_tex(_pval(p.p_holm))} & "
                    f"{_tex(warned(p.verdict, getattr(p, 'warning', '')).replace('⚠', '(!)'))} \\\\"
                )
            lines += [
                r"\bottomrule",
                r"\end{tabular}",
                f"\\caption{{Paired bootstrap of the {_tex(metric_label(r.settings['pair_metric']))} "
                f"difference on {_tex(sec.corpus)}.}}",
                f"\\label{{tab:{_label(sec.corpus)}-pairs}}",
                r"\end{table}",
                "",
            ]
        parts += lines
    return "\n".join(parts) + "\n"


def _label(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s.lower())
