"""`bench run`: train and evaluate one or more losses under one experiment name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.commands.common import at_least, console, fail, handle_errors, print_json

Preset = Annotated[Optional[str], typer.Option("--preset", help="Preset name: demo | demo-cpu | reference.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]
Sets = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Override a config setting (repeatable)."),
]

Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        callback=at_least(1),
        help="CPU threads of the main process, >= 1 (default: the CPUs it may use, less one per loader worker).",
    ),
]

Jobs = Annotated[
    str,
    typer.Option(
        "--jobs",
        metavar="N|auto",
        help="Runs trained at once, each in its own process with a share of the CPUs (CPU only; "
        "auto: one per CPU core, 1 on a GPU).",
    ),
]


def _parse_seeds(text: str) -> list[int]:
    from bench.errors import BenchError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--seeds expects comma-separated integers, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BenchError(f"--seeds expects distinct comma-separated integers >= 0, got '{text}'")
    return seeds


def check_out(out: Path) -> None:
    """``--out`` must be a folder (or not exist yet): checked before any corpus or training work."""
    from bench.errors import BenchError

    if out.exists() and not out.is_dir():
        raise BenchError("--out: exists and is not a folder (Not a directory)", path=out)


def shortcut_overrides(
    sets: list[str] | None, *, backbone: str | None, corpus: str | None, experiment: str | None
) -> list[str]:
    """``--set`` overrides followed by those that the ``--backbone/--corpus/--experiment`` options stand for."""
    overrides = list(sets or [])
    if backbone:
        overrides.append(f"model.backbone={backbone}")
    if corpus:
        overrides += _corpus_overrides(corpus)
    if experiment:
        overrides.append(f'experiment="{experiment}"')
    return overrides


def _corpus_overrides(corpus: str) -> list[str]:
    """``--corpus NAME`` picks a corpus kind; ``--corpus DIR`` (layout detected by
    :func:`bench.data.layout.resolve`, which says what it chose) or ``KIND:DIR`` a corpus folder."""
    import json

    from bench.commands.common import err_console
    from bench.data.corpus import CORPORA
    from bench.data.layout import resolve, split_arg
    from bench.errors import BenchError

    if corpus in CORPORA:
        return [f"data.corpus={corpus}"]
    kind, path = split_arg(corpus)
    if not Path(path).is_dir():
        if kind:
            raise BenchError(
                f"--corpus {corpus}: {kind} corpus folder not found (looked for {path}); give the folder that "
                f"holds the corpus as --corpus {kind}:DIR"
            )
        raise BenchError(
            f"--corpus: '{corpus}' is neither a corpus kind ({', '.join(sorted(CORPORA))}) nor an existing folder; "
            "give a corpus folder as DIR or KIND:DIR"
        )
    choice = resolve(corpus)
    if choice.note:
        err_console.print(choice.note, highlight=False, markup=False, soft_wrap=True)
    # json.dumps quotes the path as a TOML basic string (backslashes, quotes)
    return [f"data.root={json.dumps(str(choice.root))}", f"data.corpus={choice.kind}"]


@handle_errors
def run(
    losses: Annotated[str, typer.Option("--losses", help="Comma-separated loss names (default: loss.name).")] = "",
    preset: Preset = None,
    config: ConfigFile = None,
    sets: Sets = None,
    experiment: Annotated[
        Optional[str], typer.Option("--experiment", "-e", help="Experiment name (run folder).")
    ] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    backbone: Annotated[
        Optional[str], typer.Option("--backbone", help="Backbone name (see bench list backbones).")
    ] = None,
    corpus: Annotated[Optional[str], typer.Option("--corpus", help="Corpus kind, folder, or KIND:FOLDER.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Root of the run directories.")] = Path("runs"),
    force: Annotated[bool, typer.Option("--force", help="Rerun finished runs (their results are replaced).")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue unfinished runs from their last checkpoint.")
    ] = False,
    finetune: Annotated[
        Optional[str],
        typer.Option(
            "--finetune",
            help="Fine-tune the finished runs of these losses/seeds with a recipe (lm: large-margin) "
            "into runs/<experiment>/<loss>+<recipe>/seed<k>/.",
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Leave out unreadable audio (listed in bad_files.txt) instead of stopping."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary; no progress bars.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    threads: Threads = None,
    jobs: Jobs = "1",
) -> None:
    """Train and evaluate each loss (and seed) of an experiment into runs/<experiment>/<loss>/seed<k>/.

    A finished run is skipped when its stored config is the one asked for; with another config the
    run stops and names the differing keys (--force replaces it, --experiment keeps both). The
    embedded synthetic corpus is generated on first use. --finetune lm starts from each run's best
    checkpoint (the same command without --finetune trains it) with longer crops and a larger
    margin; finetune.params.* change the recipe.

    \b
    Examples:
      bench run --losses aam,aamsupcon
      bench run --preset demo --losses softmax,aam --seeds 0,1,2 --set train.epochs=8
      bench run --preset demo --losses aam,aamsupcon --seeds 0,1,2 --jobs auto
      bench run --preset demo --losses aam,aamsupcon --finetune lm
      bench run --preset reference --corpus cnceleb:/data/CN-Celeb_flac --losses aamsupcon
      torchrun --nproc_per_node 4 -m bench run --preset reference --losses aamsupcon
    """
    from bench.config import load_config, resolve, to_dict, to_toml
    from bench.config_origin import Origins

    check_out(out)
    overrides = shortcut_overrides(sets, backbone=backbone, corpus=corpus, experiment=experiment)
    if skip_bad:
        overrides.append("data.skip_bad=true")
    if finetune:
        overrides.append(f'finetune.name="{finetune}"')
    origins = Origins()
    cfg = load_config(preset=preset, file=config, overrides=overrides, origins=origins)
    names = [n.strip() for n in losses.split(",") if n.strip()]
    if losses.strip() and not names:
        fail(f"--losses names no loss: '{losses}'")
    names = names or [cfg.loss.name]
    seed_list = _parse_seeds(seeds) if seeds else [cfg.train.seed]
    if print_config:
        from bench.runner.experiment import check_repeats, run_config

        check_repeats(names, seed_list)
        printed = []  # every loss's config checked before any is printed: no half a config on stdout
        for name in names:
            with origins.located(name):
                one = run_config(cfg, name, seed_list[0], names) if names else resolve(cfg)
            if one.finetune.name:
                from bench.finetune import finetune_config

                one = finetune_config(one, out / cfg.experiment / name / f"seed{seed_list[0]}")
            printed.append((f"# loss: {name}" if len(names) > 1 else "") + "\n" + to_toml(to_dict(one)))
        for text in printed:
            console.print(text.lstrip("\n"), highlight=False, markup=False)
        return

    import dataclasses
    import time

    from bench.runner import ddp
    from bench.runner.experiment import plan_runs, run_experiment
    from bench.runner.pool import resolve_jobs
    from bench.runner.progress import RichReporter
    from bench.runner.train import NullReporter
    from bench.threads import configure

    configure(cfg.data.workers, threads)
    info, device = ddp.setup(cfg.train.device)
    n_jobs = resolve_jobs(jobs, len(names) * len(seed_list), device.type, info.world_size)
    reporter = NullReporter() if (json_out or quiet or not info.is_main) else RichReporter(label=cfg.experiment)
    t0 = time.time()
    try:
        from bench.data.corpus import load_corpus
        from bench.data.prepare import prepare_corpus

        # a typo'd loss name, a loss the fine-tuning recipe refuses or a missing parent run fails
        # before the corpus loads
        with origins.located():
            plan_runs(cfg, names, seed_list, out)
        if info.is_main:
            prepare_corpus(cfg.data, quiet=json_out or quiet)
        ddp.barrier(info)
        corpus = load_corpus(cfg.data)
        if corpus.bad_files and info.is_main:
            listing = _write_bad_files(out / cfg.experiment, corpus.bad_files)
            reporter.message(f"skipped {len(corpus.bad_files)} unusable audio files (data.skip_bad): see {listing}")
        outcomes = run_experiment(
            cfg,
            names,
            seed_list,
            out,
            force=force,
            resume=resume,
            reporter=reporter,
            info=info,
            device=device,
            corpus=corpus,
            jobs=n_jobs,
            threads=threads,
        )
        if corpus.bad_files and info.is_main:
            for o in outcomes:
                if o.action in ("trained", "resumed"):
                    _write_bad_files(Path(o.run_dir), corpus.bad_files)
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()
        ddp.teardown()
    wall = time.time() - t0
    if not info.is_main:
        return
    failed = [o for o in outcomes if o.action == "failed"]
    if json_out:
        print_json(
            {
                "experiment": cfg.experiment,
                "out": str(out / cfg.experiment),
                "wall_seconds": wall,
                "bad_files": len(corpus.bad_files),
                "runs": [dataclasses.asdict(o) for o in outcomes],
            }
        )
    else:
        _print_table(outcomes, wall, out / cfg.experiment)
    if failed:
        fail(
            f"{len(failed)} of {len(outcomes)} runs failed: "
            + "; ".join(f"{o.loss}/seed{o.seed}: {o.error}" for o in failed),
            code=1,
        )


def _write_bad_files(folder: Path, bad_files: list) -> Path:
    """``folder/bad_files.txt``: one ``path<TAB>reason`` line per audio file left out by data.skip_bad."""
    from bench.io import atomic_write

    path = folder / "bad_files.txt"
    atomic_write(path, "".join(f"{b.path}\t{b.reason}\n" for b in bad_files))
    return path


def _print_table(outcomes: list, wall: float, where: Path) -> None:
    from rich.table import Table

    def f(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    t = Table(title=f"{where}  ({wall:.0f} s)")
    cols = ("loss", "seed", "run", "EER %", "minDCF 0.01", "untrained EER %", "best val EER %", "epochs", "converged")
    for col in (*cols, "utt/s"):
        t.add_column(col, justify="left" if col in ("loss", "run", "converged") else "right")
    for o in outcomes:
        t.add_row(
            o.loss,
            str(o.seed),
            o.action,
            f(o.eer, ".2f"),
            f(o.mindcf, ".3f"),
            f(o.untrained_eer, ".2f"),
            f(o.best_val_eer, ".2f"),
            "" if not o.budget else f"{o.budget['epochs']}/{o.budget['max_epochs']}",
            "" if o.converged is None else ("yes" if o.converged else "no"),
            f(o.samples_per_s, ".0f"),
        )
    console.print(t)
