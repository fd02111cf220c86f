"""`bench perf`: the benchmark suite (beside its peers) that writes BENCHMARKS.md, and the GPU script."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.commands.common import at_least, console, err_console, fail, handle_errors, print_json

NO_GPU = (
    "bench perf --gpu needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False); "
    "nothing was measured. Run it on a GPU machine, or run `bench perf` for the CPU suite."
)


def _command(
    gpu: bool, quick: bool, out: Path | None, repeats: int | None, only: str | None, threads: int | None
) -> str:
    """The command that reproduces this run (`nox -s perf` when run from its environment)."""
    args = (["--gpu"] if gpu else []) + (["--quick"] if quick else [])
    args += ["--only", only] if only else []
    args += ["--repeats", str(repeats)] if repeats else []
    args += ["--threads", str(threads)] if threads else []
    args += ["--out", str(out)] if out else []
    if ".venv-perf" in sys.prefix and not gpu:
        return "nox -s perf" + (" -- " + shlex.join(args) if args else "")
    return shlex.join(["bench", "perf", *args])


@handle_errors
def perf(
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced sizes and 1 repeat: a smoke run, not for quoting.")
    ] = False,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Markdown file; the JSON goes beside it [default: BENCHMARKS.md, --gpu: BENCHMARKS-gpu.md]."
        ),
    ] = None,
    repeats: Annotated[
        Optional[int],
        typer.Option(
            "--repeats", callback=at_least(1), help="Repeats per measurement (median), >= 1 [default: 3, --quick: 1]."
        ),
    ] = None,
    only: Annotated[
        Optional[str],
        typer.Option(
            "--only",
            help="Comma-separated benchmarks: metrics,report_stats,ecapa,losses,loader,synth,concurrency,demo "
            "(default: these); demo_cpu (about an hour) runs only when named.",
        ),
    ] = None,
    gpu: Annotated[
        bool, typer.Option("--gpu", help="The GPU script: ECAPA C=1024 by precision + CN-Celeb-sized embed/score.")
    ] = False,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", callback=at_least(1), help="torch CPU threads, >= 1 [default: torch's own choice]."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """Run the benchmark suite and write BENCHMARKS.md (claims + reproducing command) and BENCHMARKS.json.

    Each benchmark is measured beside its peer in the same process and given as a ratio: metrics vs
    scikit-learn and SpeechBrain, ECAPA C=512 vs SpeechBrain's ECAPA_TDNN, each loss vs the backbone
    step, the data loader vs the training step's demand, synthetic corpus generation vs real time,
    `bench demo` vs its 10-minute target (and, with --only demo_cpu, `--preset cpu` vs 60 minutes).
    Peers come from `nox -s perf` (.venv-perf); elsewhere their rows say "peer not installed".

    Example: nox -s perf   |   bench perf --quick --only metrics --out /tmp/B.md
    """
    import torch

    from bench.errors import BenchError
    from bench.perf import BENCHMARKS, run_suite, write
    from bench.perf.base import default_names

    if threads:
        torch.set_num_threads(threads)
    command = _command(gpu, quick, out, repeats, only, threads)
    out = out or Path("BENCHMARKS-gpu.md" if gpu else "BENCHMARKS.md")
    if out.suffix != ".md":
        raise BenchError(f"--out must name a .md file (the JSON goes beside it), got '{out}'")
    if gpu:
        if only:
            raise BenchError("--only applies to the CPU suite, not --gpu")
        if not torch.cuda.is_available():
            fail(NO_GPU, code=1)
        from bench.perf.gpu import GpuSizes, run_gpu

        sizes = GpuSizes.quick() if quick else GpuSizes.full()
        if repeats:
            sizes.repeats = repeats
        with console.status("GPU benchmarks (a few minutes)…") if not json_out else _Null():
            result = run_gpu(sizes, quick=quick)
    else:
        if only is not None and not only.strip(", "):
            raise BenchError("--only is empty; leave it out to run the default benchmarks")
        names = [n.strip() for n in (only or "").split(",") if n.strip()] or default_names()
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            raise BenchError(f"--only: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=json_out) as bar:  # fmt: skip
            task = bar.add_task("benchmarks", total=len(names))
            started: list[str] = []

            def progress(name: str) -> None:
                if started:
                    bar.advance(task)
                started.append(name)
                bar.update(task, description=f"benchmark: {name}")

            result = run_suite(names, quick=quick, repeats=repeats, progress=progress)
    md, js = write(result, out, command)
    if json_out:
        print_json(result)
        return
    _print(result, md, js)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _print(result: dict, md: Path, js: Path) -> None:
    from rich.table import Table

    from bench.perf.markdown import fmt, ratio_text

    t = Table(title="bench perf" + (" (--quick)" if result.get("quick") else ""))
    for col in ("benchmark", "measure", "ours", "unit", "peer", "peer value", "ratio"):
        t.add_column(col, justify="right" if col in ("ours", "peer value", "ratio") else "left")
    for name, sec in result["sections"].items():
        for r in sec["rows"]:
            t.add_row(name, r["measure"], fmt(r["ours"]), r["unit"], r.get("peer_name") or "", fmt(r.get("peer")),
                      ratio_text(r))  # fmt: skip
    console.print(t)
    load = result["machine"].get("load_average") or []
    console.print(
        f"load average at start {' / '.join(f'{x:.2f}' for x in load)}; {result['machine'].get('cpus_usable')} CPUs; "
        f"{result.get('seconds', 0):.0f} s",
        highlight=False,
    )
    console.print(f"wrote {md} and {js}", highlight=False)
