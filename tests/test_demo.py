"""Tests of `bench demo`: corpus reuse, the whole pipeline on a tiny synthetic corpus, and re-runs."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()

# Shrinks the demo preset to a few steps on a 3-speaker corpus (the preset's batch needs 16 speakers).
TINY_RUN = [
    "data.speakers_per_batch=3",
    "data.utts_per_speaker=2",
    "data.workers=0",
    "train.steps_per_epoch=2",
    "eval.batch_size=8",
]


def test_existing_corpus_is_reused_not_regenerated(tmp_path, monkeypatch):
    from bench.commands import demo
    from bench.synth import corpus

    (tmp_path / "corpus.json").write_text("{}")
    monkeypatch.setattr(corpus, "generate", lambda *a, **k: pytest.fail("must not regenerate"))
    assert demo.ensure_corpus(tmp_path) == "reused"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.json"]


def test_empty_losses_is_an_error(tmp_path):
    res = runner.invoke(app, ["demo", "--losses", " , ", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2
    assert "--losses is empty" in res.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_demo_end_to_end_on_a_tiny_corpus_then_reuses_everything(tmp_path):
    pytest.importorskip("espeakng_loader")
    from bench.commands.demo import run_demo
    from bench.synth import generate, make_config

    data = tmp_path / "synth"
    generate(make_config("demo", speakers=3, utts=3, min_seconds=1.0, max_seconds=1.5), data, workers=2)
    runs, report = tmp_path / "runs", tmp_path / "report"
    res = run_demo(runs, data=data, report_dir=report, losses=("softmax", "aam"), seeds=(0,), epochs=1,
                   overrides=TINY_RUN, n_boot=50)  # fmt: skip
    assert res.corpus_action == "reused" and res.report_action == "built"
    assert [(r["loss"], r["action"]) for r in res.runs] == [("softmax", "trained"), ("aam", "trained")]
    for loss in ("softmax", "aam"):
        run_dir = runs / "demo" / loss / "seed0"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        assert (run_dir / "config.toml").read_text().count("epochs = 1") == 1
    # The report: its table has both systems, with the EERs the runs recorded; HTML with figures.
    assert {r["system"] for r in res.table} == {"softmax", "aam"}
    recorded = json.loads((runs / "demo" / "aam" / "seed0" / "metrics.json").read_text())["overall"]["eer"]
    assert next(r for r in res.table if r["system"] == "aam")["eer"]["mean"] == pytest.approx(recorded)
    html = (report / "report.html").read_text()
    assert html.count('class="report-figure"') >= 2 and "DET" in html
    assert len(res.pairwise) == 1
    # One epoch is no plateau: the runs say so and the report withholds the verdict.
    assert [r["converged"] for r in res.runs] == [False, False]
    assert res.pairwise[0]["verdict"] == "not converged" and "not converged" in html
    stamp = (report / "report.json").stat().st_mtime_ns

    # A second call through the CLI trains nothing and leaves the report as it was.
    args = ["demo", "--data", str(data), "--out", str(runs), "--report", str(report),
            "--losses", "softmax,aam", "--seeds", "0", "--epochs", "1", "--json",
            "--real", str(tmp_path / "no-real-voices"),  # as the first call: none
            *[a for o in TINY_RUN for a in ("--set", o)]]  # fmt: skip
    cli = runner.invoke(app, args)
    assert cli.exit_code == 0, cli.output
    again = json.loads(cli.stdout)
    assert [r["action"] for r in again["runs"]] == ["skipped", "skipped"]
    assert again["report_action"] == "reused" and again["html"] == str(report / "report.html")
    assert (report / "report.json").stat().st_mtime_ns == stamp

    # A result changed outside `bench demo` (here a run's result folder of `bench eval` appears, then
    # goes): the stored report no longer shows what is there, so it is rebuilt, each time.
    aam0 = runs / "demo" / "aam" / "seed0"
    cli = runner.invoke(app, ["eval", str(aam0), "--corpus", str(data), "--name", "again", "--json"])
    assert cli.exit_code == 0, cli.output
    extra = aam0 / "eval" / "again"
    for expect in ("built", "reused"):
        cli = runner.invoke(app, args)
        assert cli.exit_code == 0, cli.output
        assert json.loads(cli.stdout)["report_action"] == expect
    shutil.rmtree(extra)
    cli = runner.invoke(app, args)
    assert cli.exit_code == 0 and json.loads(cli.stdout)["report_action"] == "built", cli.output

    # A finished run's score file removed by hand: that run fails with a message that points at
    # --force (not "score file not found" from the report), the report shows the other run.
    (aam0 / "scores.txt").unlink()
    cli = runner.invoke(app, args)
    assert cli.exit_code == 1, cli.output
    out = json.loads(cli.stdout)
    assert [r["action"] for r in out["runs"]] == ["skipped", "failed"]
    assert "scores.txt is missing (removed?) is here; pass --force" in out["runs"][1]["error"]
    assert {r["system"] for r in out["table"]} == {"softmax"} and out["report_action"] == "built"


# --- presets: sizes, budgets, seeds ---------------------------------------------------------------


def test_demo_presets_are_consistent_and_judge_the_plateau():
    from bench.commands.demo import DEMO_PRESETS, corpus_config
    from bench.config import load_config, resolve
    from losses import LOSSES

    for name, spec in DEMO_PRESETS.items():
        cfg = resolve(load_config(preset=spec.config))
        assert cfg.data.root == str(spec.data)  # `bench run --preset` finds the corpus `bench demo` made
        assert cfg.train.validate_every == 1 and cfg.train.patience >= 2 and cfg.train.min_delta > 0
        # Trained to the plateau: the lr is cut at validation plateaus and the run ends at the plateau
        # of its lowest lr (a fixed schedule's annealing would keep lowering the EER to its last step).
        assert cfg.optim.scheduler == "plateau" and cfg.optim.max_reductions >= 1 and cfg.train.early_stop
        assert set(spec.losses) <= set(LOSSES.names()) and {"aam", "aamsupcon"} <= set(spec.losses)
        assert corpus_config(name).train_speakers == spec.speakers
        # Apart from size and budget, the two demos train the same recipe (so their results are comparable).
        other = resolve(load_config(preset=DEMO_PRESETS["demo"].config))
        for section in ("model", "loss", "optim", "eval"):
            assert getattr(cfg, section) == getattr(other, section), (name, section)
    assert DEMO_PRESETS["cpu"].speakers >= 200 and DEMO_PRESETS["demo"].minutes == 10
    steps = {n: (lambda c: c.train.epochs * c.train.steps_per_epoch)(load_config(preset=s.config))
             for n, s in DEMO_PRESETS.items()}  # fmt: skip
    assert steps == {"demo": 1200, "cpu": 3600}  # the most a run may take
    assert DEMO_PRESETS["cpu"].losses == ("softmax", "aam", "supcon", "aamsupcon")


def test_stale_corpus_in_the_presets_folder_is_refused(tmp_path):
    from bench.commands.demo import ensure_corpus
    from bench.errors import BenchError

    (tmp_path / "corpus.json").write_text(json.dumps({"params": {"train_speakers": 40}}))
    with pytest.raises(BenchError, match="40 training speakers, the 'demo' demo uses 100"):
        ensure_corpus(tmp_path, check_size=True)
    assert ensure_corpus(tmp_path) == "reused"  # a folder named with --data is taken as it is


def test_run_demo_trains_every_seed_with_the_chosen_preset(tmp_path, monkeypatch):
    from bench.commands import demo
    from bench.runner import experiment
    from reports import build as report_build

    seen = {}

    def fake_run_experiment(cfg, losses, seeds, out, **kw):
        seen.update(cfg=cfg, losses=losses, seeds=seeds)
        return [experiment.RunOutcome(loss, s, str(out), "trained") for loss in losses for s in seeds]

    def fake_build(paths, out, opts, progress=None):
        out.mkdir(parents=True)
        (out / report_build.MARKER).write_text(json.dumps({"table": [], "pairwise": []}))
        seen["title"] = opts.title

    monkeypatch.setattr(demo, "ensure_corpus", lambda *a, **k: "reused")
    monkeypatch.setattr(experiment, "run_experiment", fake_run_experiment)
    monkeypatch.setattr(report_build, "build", fake_build)
    from bench.runner.progress import RichReporter

    reporter = RichReporter(console=Console(file=io.StringIO()))
    res = demo.run_demo(tmp_path / "runs", preset="cpu", report_dir=tmp_path / "rep", losses=("aam", "softmax"),
                        overrides=["train.device=cpu"], reporter=reporter)  # fmt: skip
    assert reporter.label == "demo-cpu"  # the progress header names this preset's experiment, not "demo"
    assert seen["seeds"] == [0, 1, 2] and len(res.runs) == 6 and res.seeds == [0, 1, 2]
    assert seen["cfg"].experiment == "demo-cpu" and seen["cfg"].data.root == "data/synth-cpu300"
    assert res.preset == "cpu" and "300 training speakers, <= 3,600 steps a run" in seen["title"]
    # Without --losses each preset compares its own list.
    for preset, spec in demo.DEMO_PRESETS.items():
        demo.run_demo(tmp_path / preset, preset=preset, report_dir=tmp_path / f"rep-{preset}",
                      overrides=["train.device=cpu"])  # fmt: skip
        assert tuple(seen["losses"]) == spec.losses


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--seeds", "0,x"], "--seeds expects comma-separated integers"), (["--preset", "gpu"], "unknown demo preset")],
)
def test_bad_demo_options_are_user_errors(tmp_path, args, message):
    res = runner.invoke(app, ["demo", *args, "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"losses": ("aam", "nosuchloss")}, "unknown loss 'nosuchloss'"),
        ({"losses": ("aam", "aam")}, "--losses names aam more than once"),
        ({"seeds": (0, 1, 0)}, "--seeds names 0 more than once"),
        ({"overrides": ["nosuch.key=1"]}, "nosuch"),
        ({"jobs": 2, "overrides": ["train.device=cuda"]}, "--jobs above 1 runs several trainings on one cuda device"),
    ],
)
def test_bad_demo_input_is_refused_before_the_corpus_is_generated(tmp_path, monkeypatch, kw, message):
    from bench.commands import demo
    from bench.errors import BenchError

    def no_corpus(*a, **k):
        raise AssertionError("the corpus was generated before the input was checked")

    monkeypatch.setattr(demo, "ensure_corpus", no_corpus)
    with pytest.raises(BenchError, match=message):
        demo.run_demo(tmp_path / "runs", report_dir=tmp_path / "rep", **kw)


def test_perf_only_empty_is_an_error(tmp_path):
    res = runner.invoke(app, ["perf", "--only", " ", "--out", str(tmp_path / "B.md")])
    assert res.exit_code == 2 and "--only is empty" in res.output and not (tmp_path / "B.md").exists()


def test_run_with_only_commas_for_losses_is_an_error(tmp_path):
    res = runner.invoke(app, ["run", "--losses", " , ", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "--losses names no loss" in res.output
    assert not (tmp_path / "runs").exists()


def test_jobs_must_be_a_count_or_auto(tmp_path):
    res = runner.invoke(app, ["run", "--preset", "demo", "--losses", "aam", "--jobs", "0", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--jobs expects a number >= 1 or 'auto'" in res.output


def test_the_report_folder_is_never_a_foreign_folder_the_runs_or_the_corpus(tmp_path, monkeypatch):
    """Each rebuild replaces --report: a folder holding something else, or holding the runs or the
    corpus, is refused before any work (it was emptied without --force, the runs with it)."""
    from bench.commands import demo
    from bench.errors import BenchError

    monkeypatch.setattr(demo, "ensure_corpus", lambda *a, **k: pytest.fail("checked after the corpus"))
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "important.txt").write_text("k")
    with pytest.raises(BenchError, match="holds no report; pass --force or choose --report"):
        demo.run_demo(tmp_path / "runs", data=tmp_path / "data", report_dir=keep)
    assert (keep / "important.txt").read_text() == "k"
    for report, what in ((tmp_path / "runs", "runs"), (tmp_path, "runs"), (tmp_path / "data", "corpus")):
        with pytest.raises(BenchError, match=f"--report must not hold the {what}"):
            demo.run_demo(tmp_path / "runs", data=tmp_path / "data", report_dir=report)
