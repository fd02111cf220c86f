"""Tests of `bench demo`: corpus reuse, the whole pipeline on a tiny synthetic corpus, and re-runs."""

from __future__ import annotations

import json

import pytest
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
    res = run_demo(runs, data=data, report_dir=report, losses=("softmax", "aam"), epochs=1, overrides=TINY_RUN,
                   n_boot=50)  # fmt: skip
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
    stamp = (report / "report.json").stat().st_mtime_ns

    # A second call through the CLI trains nothing and leaves the report as it was.
    cli = runner.invoke(app, ["demo", "--data", str(data), "--out", str(runs), "--report", str(report),
                              "--losses", "softmax,aam", "--epochs", "1", "--json",
                              *[a for o in TINY_RUN for a in ("--set", o)]])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    again = json.loads(cli.stdout)
    assert [r["action"] for r in again["runs"]] == ["skipped", "skipped"]
    assert again["report_action"] == "reused" and again["html"] == str(report / "report.html")
    assert (report / "report.json").stat().st_mtime_ns == stamp
