"""`bench score`: metrics of a score file or of an embedding file, against a trial list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.commands.common import at_least, console, err_console, handle_errors, print_json
from bench.errors import BenchError


def _read_trials(path: Path):
    """The shared trial reader (CN-Celeb / VoxCeleb / Kaldi formats, line-numbered errors)."""
    from bench.data.trials import read_trials

    return read_trials(path)


def _join(trials, sf):
    """Scores of ``sf`` in trial order; every trial needs exactly one score line."""
    import numpy as np

    from bench.data.trials import strip_ext
    from bench.scoring import key_index, trial_line

    t_enroll = [strip_ext(e) for e in trials.enroll]
    t_test = [strip_ext(t) for t in trials.test]
    tpath = getattr(trials, "path", None)
    key_index(t_enroll, t_test, tpath, getattr(trials, "lines", None))
    index = key_index(sf.enroll, sf.test, sf.path, sf.lines)
    pos = np.empty(len(t_enroll), dtype=np.int64)
    for i, key in enumerate(zip(t_enroll, t_test)):
        j = index.get(key)
        if j is None:
            raise BenchError(f"no score for trial '{key[0]} {key[1]}' in {sf.path}", tpath, trial_line(trials, i))
        pos[i] = j
    labels = np.asarray(trials.labels, dtype=bool)
    if sf.labels is not None:
        clash = np.flatnonzero(sf.labels[pos] != labels)
        if clash.size:
            j = pos[clash[0]]
            raise BenchError(
                f"label {int(sf.labels[j])} disagrees with the trial list ({tpath}:{trial_line(trials, int(clash[0]))})",
                sf.path,
                int(sf.lines[j]),
            )
    return sf.scores[pos], labels, len(sf.scores) - len(pos)


@handle_errors
def score(
    trials: Annotated[
        Optional[Path], typer.Option("--trials", "-t", help="Trial list (CN-Celeb, VoxCeleb or Kaldi format).")
    ] = None,
    scores: Annotated[
        Optional[Path],
        typer.Option(
            "--scores",
            "-s",
            help="Score file: 'enroll test score [label]', 'enroll test label score' or 'label enroll test score' "
            "(detected; blanks or commas, optional header).",
        ),
    ] = None,
    score_layout: Annotated[
        Optional[str],
        typer.Option("--score-layout", help="Column order of an ambiguous score file, e.g. 'enroll test label score'."),
    ] = None,
    embeddings: Annotated[
        Optional[Path],
        typer.Option("--embeddings", "-e", help="Embedding file: .npz, .npy (+ .ids.txt), Kaldi .ark or .scp."),
    ] = None,
    enroll_map: Annotated[
        Optional[Path],
        typer.Option("--enroll-map", help="Lines 'model utt [utt ...]': model = mean of its utterance embeddings."),
    ] = None,
    save_scores: Annotated[
        Optional[Path], typer.Option("--save-scores", help="With --embeddings: write the trial scores here.")
    ] = None,
    label_style: Annotated[
        str, typer.Option("--label-style", help="Labels in --save-scores: binary (1/0) | target (target/nontarget).")
    ] = "binary",
    p_target: Annotated[
        Optional[list[float]],
        typer.Option("--p-target", metavar="P", help="minDCF target prior (repeatable; default 0.01, 0.05)."),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            callback=at_least(0),
            help="Resamples for 95% confidence intervals of EER and minDCF (0 = none).",
        ),
    ] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the metrics as JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score trials from a score or embedding file: EER, minDCF, Cllr, minCllr.

    \b
    Examples:
      bench score --trials eval/lists/trials.lst --scores runs/demo/aam/seed0/scores.txt
      bench score -t trials.lst -e embeddings.npz --save-scores scores.txt --json
      bench score -t trials.lst -s scores.txt --bootstrap 1000 --p-target 0.01
    """
    import numpy as np

    from bench import bootstrap as bootstrap_mod
    from bench import metrics, scoring
    from bench.io import atomic_write_json

    if (scores is None) == (embeddings is None):
        raise BenchError("give exactly one of --scores and --embeddings")
    if score_layout is not None and scores is None:
        raise BenchError("--score-layout needs --scores")
    if enroll_map is not None and embeddings is None:
        raise BenchError("--enroll-map needs --embeddings")
    if save_scores is not None and embeddings is None:
        # the option writes the scores computed from embeddings; a score file has none to compute
        raise BenchError("--save-scores needs --embeddings (it writes the scores computed from them)")
    scoring.check_label_style(label_style)
    if embeddings is not None:
        from bench.embfile import embedding_format

        embedding_format(embeddings)
    p_targets = tuple(p_target) if p_target else (0.01, 0.05)
    for p in p_targets:
        if not 0 < p < 1:
            raise BenchError(f"--p-target must be in (0, 1), got {p}")
    ignored = 0
    if scores is not None:
        sf = scoring.read_scores(scores, score_layout)
        # once per file, on stderr so that --json output stays machine-readable
        err_console.print(f"{scores}: {sf.description}", highlight=False, markup=False, soft_wrap=True)
        if trials is None:
            if sf.labels is None:
                raise BenchError("score file has no label column; pass --trials", scores)
            scoring.key_index(sf.enroll, sf.test, sf.path, sf.lines)
            s, labels = sf.scores, sf.labels
            source = scores
        else:
            s, labels, ignored = _join(_read_trials(trials), sf)
            source = trials
    else:
        if trials is None:
            raise BenchError("--embeddings needs --trials")
        tr = _read_trials(trials)
        scoring.key_index(tr.enroll, tr.test, tr.path, getattr(tr, "lines", None))
        ids, mat = scoring.read_embeddings(embeddings)
        enroll_emb = (ids, mat)
        if enroll_map is not None:
            enroll_emb = scoring.mean_enroll((ids, mat), scoring.read_enroll_map(enroll_map), enroll_map)
        s = scoring.cosine_score(enroll_emb, (ids, mat), tr)
        labels = np.asarray(tr.labels, dtype=bool)
        source = trials
        if save_scores is not None:
            scoring.write_scores(save_scores, tr, s, label_style=label_style)
    n_tar = int(labels.sum())
    if n_tar == 0 or n_tar == labels.size:
        kind = "target" if n_tar else "non-target"
        raise BenchError(f"all {labels.size} trials are {kind} trials; EER and minDCF need both classes", source)

    result = metrics.compute_metrics(s, labels, p_targets=p_targets, on_request=True)
    if bootstrap > 0:
        ci = {}
        for name in (k for row in metrics.METRIC_TABLE if row.bootstrap for k in row.keys(p_targets)):
            ci[name] = list(bootstrap_mod.bootstrap_ci(s, labels, metric=name, n_boot=bootstrap))
        result["ci95"] = ci
        result["n_boot"] = bootstrap
    result["ignored_score_lines"] = ignored
    if out is not None:
        atomic_write_json(out, result)
    if as_json:
        print_json(result)
        return
    _table(result, p_targets)


def _table(result: dict, p_targets) -> None:
    """Every metric of the table with a ``cli_label`` that the result holds, in table order."""
    from rich.table import Table

    from bench.metrics import METRIC_TABLE

    ci = result.get("ci95", {})
    table = Table(title="Verification metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")

    def row(label, key, fmt):
        lo_hi = ci.get(key)
        table.add_row(
            label, fmt.format(result[key]), f"[{fmt.format(lo_hi[0])}, {fmt.format(lo_hi[1])}]" if lo_hi else ""
        )

    for metric in METRIC_TABLE:
        if metric.cli_label is None:
            continue
        for p in p_targets if metric.per_prior else (None,):
            if metric.key(p) in result:
                row(metric.text(metric.cli_label, p), metric.key(p), f"{{:.{metric.cli_digits}f}}")
    table.add_row("threshold at EER", f"{result['eer_threshold']:.6g}", "")
    table.add_row("target / non-target trials", f"{result['n_target']} / {result['n_nontarget']}", "")
    console.print(table)
    if result["ignored_score_lines"]:
        console.print(f"{result['ignored_score_lines']} score line(s) not in the trial list were ignored.")
