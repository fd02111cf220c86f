"""BENCHMARKS.md (the measured claims, committed) and BENCHMARKS.json (every timing, git-ignored)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.io import atomic_write, atomic_write_json

REPRODUCE = "nox -s perf"


def fmt(v: Any) -> str:
    """Numbers with about three significant digits and thousands separators; text as is."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isnan(v):
        return "–"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def ratio_text(r: dict[str, Any]) -> str:
    if r.get("ratio") is None:
        return "–"
    return f"{r['ratio']:.3g} {r.get('ratio_label', '')}".strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine_lines(m: dict[str, Any]) -> list[str]:
    load = m.get("load_average") or []
    load_end = m.get("load_average_end") or []
    v = m.get("versions", {})
    git = m.get("git", {})
    lines = [
        "| | |",
        "| --- | --- |",
        f"| date | {m.get('date', '')} |",
        f"| CPU | {_cell(str(m.get('cpu', '')))} |",
        f"| cores | {m.get('cpu_count')} logical, {m.get('cpus_usable')} usable; torch threads {m.get('torch_threads')} |",
        f"| memory | {fmt(m.get('memory_gib'))} GiB |",
        f"| load average (1/5/15 min) | start {' / '.join(f'{x:.2f}' for x in load)}"
        + (f"; end {' / '.join(f'{x:.2f}' for x in load_end)}" if load_end else "")
        + " |",
        f"| GPU | {', '.join(m.get('gpus') or []) or 'none'} |",
        f"| platform | {m.get('platform', '')} |",
        "| versions | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
        f"| git | {git.get('commit', 'unknown')}{' (uncommitted changes)' if git.get('dirty') else ''} |",
    ]
    return lines


def section_lines(name: str, sec: dict[str, Any]) -> list[str]:
    out = [f"## {sec['title']}", "", f"`{name}` ({sec.get('seconds', 0):.0f} s). {sec['what']}", ""]
    out += [
        "| measure | ours | unit | peer | peer value | ratio | notes |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for r in sec["rows"]:
        out.append(
            "| "
            + " | ".join(
                [
                    _cell(r["measure"]),
                    fmt(r["ours"]),
                    r["unit"],
                    _cell(r.get("peer_name") or "–"),
                    fmt(r.get("peer")),
                    ratio_text(r),
                    _cell(r.get("note") or ""),
                ]
            )
            + " |"
        )
    return out + [""]


def render(result: dict[str, Any], command: str = REPRODUCE) -> str:
    """The Markdown page of a suite result (see :func:`bench.perf.suite.run_suite`)."""
    m = result["machine"]
    quick = " (`--quick`: reduced sizes, not for quoting)" if result.get("quick") else ""
    lines = [
        "# Benchmarks",
        "",
        f"Reproduce: `{command}`"
        + (
            " (builds `.venv-perf` with the peers SpeechBrain and scikit-learn, then runs "
            "`.venv-perf/bin/python -m bench perf`)"
            if command.startswith("nox")
            else ""
        )
        + ". Each figure is the median of "
        f"{result['repeats']} repeats{quick}, measured beside its peer in the same process; every timing is in "
        "`BENCHMARKS.json`. GPU figures: `bench perf --gpu`.",
        "",
        "Numbers measured on a shared or loaded machine are slower than on an idle one; the load average below "
        "says how busy it was. Ratios between rows of one table are more robust than absolute figures.",
        "",
        "## Machine",
        "",
        *machine_lines(m),
        "",
    ]
    for name, sec in result["sections"].items():
        lines += section_lines(name, sec)
    lines.append(f"Suite wall time: {result.get('seconds', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], md_path: str | Path, command: str = REPRODUCE) -> tuple[Path, Path]:
    """Write ``md_path`` and the JSON beside it (same name, ``.json``), each atomically."""
    md_path = Path(md_path)
    json_path = md_path.with_suffix(".json")
    atomic_write_json(json_path, {**result, "command": command})
    atomic_write(md_path, render(result, command))
    return md_path, json_path
