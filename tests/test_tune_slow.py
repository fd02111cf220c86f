"""bench tune end to end: real training on a tiny synthetic corpus, through the CLI, plus the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.runner_helpers import TINY_MODEL

pytestmark = pytest.mark.slow

# tiny ECAPA narrowed further (as in the runner tests), 1 epoch of 2 short steps, no eval baseline
FAST = [
    *TINY_MODEL,
    "data.speakers_per_batch=4",
    "data.crop_seconds=0.5",
    "data.workers=0",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.device=cpu",
    "eval.max_seconds=2",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "c"
    args = ["data", "synth", "--speakers", "4", "--utts", "3", "--min-seconds", "1", "--max-seconds", "1.5"]
    r = CliRunner().invoke(app, [*args, "--out", str(root), "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    return root


def test_demo_study_end_to_end(corpus, tmp_path):
    sets = [x for s in FAST for x in ("--set", s)]
    args = ["tune", "--preset", "demo", "--corpus", str(corpus), *sets, "--loss", "aamsupcon", "--trials", "3",
            "--param", "margin=0.0:0.5", "--param", "temperature=0.02:0.3:log", "--study", "t",
            "--out", str(tmp_path), "--json"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{") :])
    assert s["finished"] == 3 and s["counts"] == {"complete": 3}
    values = [t["value"] for t in s["trials"]]
    assert s["best"]["value"] == min(values) and s["best"]["number"] == values.index(min(values))
    for t in s["trials"]:
        rd = Path(t["run_dir"])
        rows = (rd / "epochs.csv").read_text().splitlines()
        assert len(rows) == 2 and float(rows[1].split(",")[4]) == pytest.approx(t["value"], abs=1e-3)
        assert not (rd / "metrics.json").exists() and not (rd / "scores.txt").exists()
        assert not (rd / "checkpoints").exists()
    assert f"--set loss.params.temperature={s['best']['params']['temperature']!r}" in s["best"]["command"]
    assert {Path(p).stem for p in s["plots"]} >= {"history", "contour", "slice"}
    # a second call is a resume: the study already holds 3 finished trials, nothing is trained
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    again = json.loads(r.output[r.output.index("{") :])
    assert again["worker"] == {"started": 0, "stopped": "done"} and again["best"] == s["best"]


def test_plots_are_written(tmp_path):
    from bench.tune.plots import save_plots
    from bench.tune.study import run_study
    from tests.test_tune import _base, _space, _tune, curve_trainer

    study = run_study(_base(2), _tune(tmp_path, trials=6), _space(), curve_trainer).study
    pngs = save_plots(study, tmp_path / "plots")
    assert sorted(p.stem for p in pngs) == ["contour", "history", "importance", "intermediate", "slice"]
    assert all(p.stat().st_size > 1000 and p.with_suffix(".svg").exists() for p in pngs)
    few = run_study(_base(2), _tune(tmp_path / "few", trials=2), _space(), curve_trainer).study
    assert "importance" not in [p.stem for p in save_plots(few, tmp_path / "few_plots")]


def test_study_over_the_learning_rate_trains_each_trial_with_its_own_lr(corpus, tmp_path):
    import csv
    import tomllib

    # a constant schedule without warm-up: every step's lr is the trial's optim.lr itself
    sets = [x for s in [*FAST, "optim.scheduler=constant", "optim.warmup_epochs=0"] for x in ("--set", s)]
    args = ["tune", "--preset", "demo", "--corpus", str(corpus), *sets, "--loss", "aam", "--trials", "2",
            "--param", "optim.lr=1e-3:2e-2:log", "--pruner", "none", "--study", "lr", "--out", str(tmp_path),
            "--json", "--no-plots"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{") :])
    assert s["counts"] == {"complete": 2} and s["space"] == ["optim.lr=0.001:0.02:log"]
    used = []
    for t in s["trials"]:
        rd = Path(t["run_dir"])
        lr = t["params"]["optim.lr"]
        with open(rd / "epochs.csv") as f:
            steps = [float(row["lr"]) for row in csv.DictReader(f)]  # the optimizer's own lr in the epoch
        assert steps == pytest.approx([lr], rel=1e-5)
        assert tomllib.loads((rd / "config.toml").read_text())["optim"]["lr"] == lr
        assert json.loads((rd / "run.json").read_text())["tune"]["params"] == {"optim.lr": lr}
        used.append(steps[0])
    assert abs(used[0] - used[1]) > 1e-4  # the two trials trained with different learning rates
    assert s["best"]["preset"] == f"[optim.per_loss.aam]\nlr = {s['best']['params']['optim.lr']!r}"
    assert f"--set optim.lr={s['best']['params']['optim.lr']!r}" in s["best"]["command"]
