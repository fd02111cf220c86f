"""`bench data real`: an evaluation-only corpus of real recorded voices from Debian packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bench.commands.common import console, err_console, handle_errors, print_json

DEFAULT_OUT = Path("data/real-eval")
DEFAULT_CACHE = Path("data/real-cache")


@handle_errors
def real(
    out: Annotated[Path, typer.Option("--out", help="Output folder (CN-Celeb1 evaluation layout).")] = DEFAULT_OUT,
    cache: Annotated[
        Path, typer.Option("--cache", help="Where .deb files are downloaded and unpacked (reused).")
    ] = DEFAULT_CACHE,
    download: Annotated[
        bool, typer.Option("--download/--no-download", help="Fetch missing packages with apt-get download.")
    ] = True,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the clip shuffling (which clips form which utterance).")
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Rebuild a corpus built with other settings.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Score the trials with the non-learned MFCC baseline (EER per cell).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Build an evaluation-only corpus of real voices: KLettres readers and telephone-prompt voices.

    The Debian packages (klettres-data, asterisk-core-sounds-*-wav, asterisk-prompt-*) are fetched
    with apt-get download and unpacked with dpkg -x into --cache (no root, nothing installed). Each
    package's licence is recorded in the corpus (SOURCES.md, licences.json, licences/). Trials stay
    within one source and, for telephone prompts, one language. Score a trained run on it with
    `bench eval RUN --corpus data/real-eval --name real`; `bench demo` does so for every run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.realvoices import RealConfig, build_real

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=json_out) as bar:  # fmt: skip
        task = bar.add_task(f"building {out}", total=None)
        manifest = build_real(out, cache, cfg=RealConfig(seed=seed), download=download, force=force,
                              progress=lambda d, t: bar.update(task, completed=d, total=t))  # fmt: skip
    result = {"out": str(out), **manifest}
    if check:
        from bench.realvoices.baseline import baseline_per_cell

        result["check"] = baseline_per_cell(out)
    if json_out:
        print_json(result)
        return
    state = "already built, nothing to do" if manifest.get("reused") else f"built in {manifest['build_seconds']:.1f} s"
    c = manifest["counts"]
    # the shared console reads no markup (paths may hold brackets): bold comes from Text styles
    console.print(Text.assemble((str(out), "bold"), f": {c['speakers']} speakers, {c['test_utts']} test utterances, "
                                f"{c['trials']:,} trials ({c['target_trials']} target); {state}"), highlight=False)  # fmt: skip
    for name, cell in manifest["cells"].items():
        note = " (language varies with the speaker)" if cell["language_varies"] else ""
        line = f"  {name}: {cell['speakers']} speakers, {cell['trials']} trials, {'/'.join(cell['languages'])}{note}"
        if check:
            line += f"; baseline EER {result['check']['per_cell'][name]:.2f} %"
        console.print(line, highlight=False)
    if check:
        console.print(Text.assemble(f"baseline ({result['check']['method']}): EER ",
                                    (f"{result['check']['eer']:.2f} %", "bold"), " on all trials"), highlight=False)  # fmt: skip
    for spk, why in manifest.get("skipped", {}).items():
        console.print(f"  left out {spk}: {why}", highlight=False)
    console.print(f"licences: {out / 'SOURCES.md'}", highlight=False)
