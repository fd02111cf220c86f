"""What a newcomer sees when bench's output goes to a pipe or a log file: option errors on one line,
tables at their full width, per-epoch lines of bench tune, one name per run in every progress line."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchError

# --- bench score: --save-scores only with --embeddings -----------------------------------------


def test_save_scores_with_a_score_file_is_a_one_line_error_before_any_work(tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("e1 t1 0.9 1\ne1 t2 0.1 0\ne2 t1 0.2 0\ne2 t2 0.8 1\n")
    saved = tmp_path / "saved.txt"
    res = CliRunner().invoke(app, ["score", "--scores", str(scores), "--save-scores", str(saved)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == "error: --save-scores needs --embeddings (it writes the scores computed from them)"
    assert not saved.exists()
    # the same score file without --save-scores is scored: the refusal is about the option only
    ok = CliRunner().invoke(app, ["score", "--scores", str(scores), "--json"])
    assert ok.exit_code == 0 and '"eer": 0.0' in ok.output, ok.output


# --- --threads: one line like bench's other option checks ---------------------------------------


@pytest.mark.parametrize("command", [["run"], ["tune"], ["demo"], ["perf"]])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_threads_below_one_is_one_error_line(command, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the check comes before any work: nothing is written here
    res = CliRunner().invoke(app, [*command, "--threads", value])
    assert res.exit_code == 2
    assert res.output.splitlines() == [f"error: --threads must be an integer >= 1, got {value}"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        (["perf", "--repeats", "0"], "--repeats must be an integer >= 1, got 0"),
        (["data", "synth", "--speakers", "1"], "--speakers must be an integer >= 2, got 1"),
        (["data", "synth", "--utts", "-1"], "--utts must be an integer >= 2, got -1"),
        (["data", "synth", "--workers", "-1"], "--workers must be an integer >= 0, got -1"),
        (["data", "synth", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (["report", "runs", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (
            ["score", "--trials", "t", "--scores", "s", "--bootstrap", "-1"],
            "--bootstrap must be an integer >= 0, got -1",
        ),
    ],
)
def test_an_integer_option_below_its_minimum_is_one_error_line(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the check comes before any work: nothing is written here
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2
    assert res.output.splitlines() == [f"error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_no_option_uses_typers_range_check():
    """Typer's min=/max= print a usage block; bench's options use callback=at_least(n) instead."""
    import typer.main

    def walk(cmd, path: str):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    params = [(path, p) for path, cmd in walk(typer.main.get_command(app), "bench") for p in cmd.params]
    assert len(params) > 50 and all(
        hasattr(p, "min") and hasattr(p, "max") for _, p in params
    )  # where Typer keeps them
    ranged = [f"{path} {max(p.opts, key=len)}" for path, p in params if p.min is not None or p.max is not None]
    assert ranged == []


# --- tables off a terminal keep their headers whole ---------------------------------------------


COLS = ("loss", "seed", "run", "EER %", "minDCF 0.01", "untrained EER %", "best val EER %", "epochs", "converged")
ROW = ("aamsupcon", "0", "trained", "12.30", "0.500", "40.00", "11.00", "3/12", "yes")


def _wide_table() -> Table:
    t = Table(title="wide")
    for col in COLS:
        t.add_column(col)
    t.add_row(*ROW)
    return t


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("┃", "│"))]


def test_a_table_off_a_terminal_gets_the_width_of_its_content():
    from bench.commands.common import FitConsole

    buf = io.StringIO()
    console = FitConsole(file=buf, force_terminal=False, width=80, markup=False)
    console.print(_wide_table())
    header, row = _table_lines(buf.getvalue())
    # every cell whole and on one line, although the table is wider than the 80 columns of the console
    assert [c.strip() for c in header.strip("┃").split("┃")] == list(COLS)
    assert [c.strip() for c in row.strip("│").split("│")] == list(ROW)
    assert "…" not in buf.getvalue() and len(header) > 80
    assert console.width == 80  # only the table is widened; what follows has the console's own width


def test_a_table_on_a_terminal_keeps_the_terminal_width():
    from bench.commands.common import FitConsole

    buf, ref = io.StringIO(), io.StringIO()
    FitConsole(file=buf, force_terminal=True, width=80, markup=False, color_system=None).print(_wide_table())
    Console(file=ref, force_terminal=True, width=80, markup=False, color_system=None).print(_wide_table())
    assert buf.getvalue() == ref.getvalue()
    assert max(len(line) for line in buf.getvalue().splitlines()) <= 80


def test_bench_run_summary_piped_at_80_columns_has_whole_headers(monkeypatch, capsys):
    from bench.commands.run import _print_table
    from bench.runner.experiment import RunOutcome

    monkeypatch.setenv("COLUMNS", "80")  # what Rich assumes for a pipe; the table needs more
    o = RunOutcome("aamsupcon", 0, "runs/x/aamsupcon/seed0", "trained", eer=12.3, mindcf=0.5, untrained_eer=40.0,
                   best_val_eer=11.0, converged=True, samples_per_s=123.0, budget={"epochs": 3, "max_epochs": 12})  # fmt: skip
    _print_table([o], 12.0, Path("runs/x"))
    out = capsys.readouterr().out
    header = _table_lines(out)[0]
    for col in ("minDCF 0.01", "untrained EER %", "best val EER %", "converged", "utt/s"):
        assert f" {col} " in header, header
    assert "…" not in out


# --- messages off a terminal stay on one line each ------------------------------------------------

LONG = "reused finished work (corpus, report, skipped runs); --force retrains " + "runs/" + "x" * 90


def test_a_message_off_a_terminal_is_one_line_whatever_its_length():
    from bench.commands.common import FitConsole

    buf = io.StringIO()
    console = FitConsole(file=buf, force_terminal=False, width=80, markup=False)
    console.print(LONG, highlight=False)
    console.print(Text.assemble(("HTML report: ", "bold"), LONG))
    assert buf.getvalue().splitlines() == [LONG, f"HTML report: {LONG}"]


def test_a_message_on_a_terminal_still_wraps_at_its_width():
    from bench.commands.common import FitConsole

    buf, ref = io.StringIO(), io.StringIO()
    FitConsole(file=buf, force_terminal=True, width=80, markup=False, color_system=None).print(LONG)
    Console(file=ref, force_terminal=True, width=80, markup=False, color_system=None).print(LONG)
    assert buf.getvalue() == ref.getvalue() and len(buf.getvalue().splitlines()) > 1


def test_print_config_piped_is_toml_that_reads_back_with_a_long_path(tmp_path):
    import tomllib

    root = tmp_path / ("corpus-" + "x" * 100)
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--losses", "aam", "--print-config",
                                   "--set", f'data.root="{root}"'])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert tomllib.loads(res.output)["data"]["root"] == str(root)


def test_the_corpus_generation_notice_piped_is_one_line(tmp_path, monkeypatch, capsys):
    import bench.data.prepare as prepare
    from bench.config import load_config

    monkeypatch.setattr(prepare, "ensure_synthetic", lambda root, **k: "generated")
    root = tmp_path / ("synth-" + "x" * 100)
    cfg = load_config(preset="demo", overrides=[f'data.root="{root}"'])
    assert prepare.prepare_corpus(cfg.data) == "generated"
    assert (
        capsys.readouterr().err.splitlines()[0] == f"{root}: no synthetic corpus here yet; generating the embedded one"
    )


# --- bench tune off a terminal: a plain line per trial epoch ------------------------------------


def _epoch_trainer(cfg, rd, reporter):
    """Two epochs of three steps with fixed losses; the val EER depends on the trial's margin."""
    for e in range(cfg.train.epochs):
        reporter.start_epoch(e, cfg.train.epochs, 3, 0)
        for _ in range(3):
            reporter.step({"loss": 2.0 - e, "lr": 0.1, "samples_per_s": 50.0})
        reporter.end_epoch({"epoch": e + 1, "train_loss": 2.0 - e, "val_eer": 20.0 - e, "samples_per_s": 50.0})


def _study(tmp_path, progress):
    from bench.config import load_config
    from bench.tune import TuneConfig, parse_space
    from bench.tune.study import run_study

    base = load_config(preset="demo", overrides=["train.epochs=2"])
    tune = TuneConfig(loss="aam", trials=2, study="s", pruner="none", out=str(tmp_path / "runs"), startup_trials=2)
    space = parse_space(["margin=0.1:0.3"], "aam")
    run_study(base, tune, space, _epoch_trainer, reporter=progress, on_trial=progress.trial_done)
    progress.close()


def test_tune_progress_off_a_terminal_prints_one_line_per_trial_epoch(tmp_path):
    from bench.commands.tune import TuneProgress

    buf = io.StringIO()
    _study(tmp_path, TuneProgress(2, console=Console(file=buf, force_terminal=False, width=200)))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 8, lines
    for k in (0, 1):
        trial = lines[4 * k : 4 * k + 4]
        assert re.fullmatch(rf"trial {k}: margin=0\.[0-9]+", trial[0]), trial
        assert trial[1:] == [
            f"trial {k} epoch 1/2: loss 2.000 val EER 20.00% 50 utt/s",
            f"trial {k} epoch 2/2: loss 1.000 val EER 19.00% 50 utt/s",
            f"trial {k}: complete val EER 19.00%",
        ]


def test_tune_progress_on_a_terminal_draws_bars_not_lines(tmp_path):
    from bench.commands.tune import TuneProgress

    buf = io.StringIO()
    _study(tmp_path, TuneProgress(2, console=Console(file=buf, force_terminal=True, width=200)))
    out = buf.getvalue()
    assert "trial 1: complete val EER 19.00%" in out and "trials" in out
    assert "trial 0 epoch 1/2:" not in out


# --- one name per run in every progress line ----------------------------------------------------


def test_progress_lines_name_a_run_like_its_folder(tmp_path):
    from bench.runner import experiment
    from bench.runner.progress import RichReporter
    from tests.runner_helpers import ensure_metrics, fake_loader, make_corpus, tiny_config

    ensure_metrics()
    corpus = make_corpus(tmp_path / "c")
    cfg = tiny_config(**{"experiment": "t", "train.epochs": 1})

    def broken_loader(*args, **kwargs):
        raise BenchError("the loader broke")

    buf = io.StringIO()
    rep = RichReporter(console=Console(file=buf, force_terminal=False, width=200), label="t")
    experiment.run_experiment(cfg, ["softmax"], [0], tmp_path, reporter=rep, corpus=corpus, loader_fn=fake_loader)
    experiment.run_experiment(cfg, ["softmax"], [0], tmp_path, reporter=rep, corpus=corpus, loader_fn=fake_loader)
    experiment.run_experiment(cfg, ["softmax"], [1], tmp_path, reporter=rep, corpus=corpus, loader_fn=broken_loader)
    lines = buf.getvalue().splitlines()
    assert not [line for line in lines if re.search(r"seed \d", line)], lines
    for start in (
        "softmax seed0: scoring the untrained model",
        "softmax seed0 epoch 1/1: loss ",
        "softmax seed0: scoring 18 evaluation trials",
        f"softmax seed0: finished run in {tmp_path / 't' / 'softmax' / 'seed0'}, skipped",
        "softmax seed1: FAILED: the loader broke",
    ):
        assert any(line.startswith(start) for line in lines), (start, lines)
