"""`bench run` end to end through the CLI: run directory, skip/force, SIGKILL + --resume, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.runner_helpers import TINY_SETS

REPO = Path(__file__).resolve().parent.parent

# the real loader on a tiny CN-Celeb-layout fixture corpus (no noise banks: clean views only)
CLI_SETS = [s for s in TINY_SETS if not s.startswith("data.views")] + [
    "data.corpus=cnceleb",
    "data.views=1",
    'data.view_types=["clean"]',
    "data.crop_seconds=0.5",
    "data.workers=0",
    "train.steps_per_epoch=4",
    "train.epochs=3",
    "train.checkpoint_every=2",
]


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    from bench.data.fixtures import write_cnceleb1

    root = tmp_path_factory.mktemp("cn1cli")
    write_cnceleb1(root, train_speakers=6, utts=4, eval_speakers=3, test_utts=2, val_speakers=3, seed=0)
    return root


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    argv = ["run", "--losses", "aam", "--experiment", "e", "--out", str(out), "--corpus", str(root)]
    for s in CLI_SETS:
        argv += ["--set", s]
    return argv + list(extra)


def _bench(argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _metrics(out: Path) -> dict:
    return json.loads((out / "e" / "aam" / "seed0" / "metrics.json").read_text())


def test_print_config_still_works():
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--losses", "aam", "--print-config"])
    assert res.exit_code == 0, res.output
    assert 'name = "aam"' in res.output and "[optim]" in res.output


def test_bad_seeds_and_corpus_are_user_errors(tmp_path):
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--seeds", "0,x"])
    assert res.exit_code == 2 and "--seeds" in res.output
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--corpus", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "neither a corpus kind" in res.output


@pytest.mark.parametrize(
    ("losses", "seeds", "message"),
    [(["aam", "softmax", "aam"], [0], "--losses names aam more than once"),
     (["aam"], [1, 0, 1], "--seeds names 1 more than once")],
)  # fmt: skip
def test_plan_runs_refuses_a_repeated_loss_or_seed(tmp_path, losses, seeds, message):
    from bench.config import load_config
    from bench.errors import BenchError
    from bench.runner.experiment import plan_runs

    cfg = load_config(preset="demo")
    with pytest.raises(BenchError, match=f"^{message}$"):
        plan_runs(cfg, losses, seeds, tmp_path)
    assert [(p.cfg.loss.name, p.cfg.train.seed) for p in plan_runs(cfg, ["aam", "softmax"], [1, 0], tmp_path)] == [
        ("aam", 1), ("aam", 0), ("softmax", 1), ("softmax", 0)
    ]  # fmt: skip


def test_bench_run_refuses_a_repeated_loss_before_reading_data(tmp_path, monkeypatch):
    import bench.data.corpus
    import bench.data.prepare

    def no_data(*a, **k):
        raise AssertionError("the corpus was touched before the repeated loss was refused")

    monkeypatch.setattr(bench.data.prepare, "prepare_corpus", no_data)
    monkeypatch.setattr(bench.data.corpus, "load_corpus", no_data)
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--losses", "aam,softmax,aam", "--out", str(out),
                                   "--set", f'data.root="{tmp_path / "data"}"'])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == ["error: --losses names aam more than once"]
    assert not out.exists() and not (tmp_path / "data").exists()


def _invoke(argv: list[str]):
    return CliRunner().invoke(app, argv)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(fixture_root, tmp_path):
    """Only the killed run is a subprocess (a SIGKILL needs one); the others run in-process."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    res = _invoke(_argv(fixture_root, full, "--json"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runs"][0]["action"] == "trained"

    p = _bench(_argv(fixture_root, cut, "--quiet"))
    last = cut / "e" / "aam" / "seed0" / "checkpoints" / "last.pt"
    deadline = time.time() + 600
    while not last.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    run = json.loads((cut / "e" / "aam" / "seed0" / "run.json").read_text())
    assert run["status"] == "running"  # killed mid-run, not after it finished

    res = _invoke(_argv(fixture_root, cut, "--json"))  # without --resume: a clear refusal
    assert res.exit_code == 1 and "--resume" in res.output

    res = _invoke(_argv(fixture_root, cut, "--json", "--resume"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runs"][0]["action"] == "resumed"
    a, b = _metrics(full), _metrics(cut)
    # the resumed process (another process than the uninterrupted run) gives identical results
    assert a["overall"] == b["overall"] and a["per_genre"] == b["per_genre"] and a["untrained"] == b["untrained"]
    assert (full / "e/aam/seed0/scores.txt").read_text() == (cut / "e/aam/seed0/scores.txt").read_text()

    res = _invoke(_argv(fixture_root, cut, "--json"))  # finished: skipped
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"][0]["action"] == "skipped"
    res = _invoke(_argv(fixture_root, cut, "--json", "--force"))
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"][0]["action"] == "trained"
    assert _metrics(cut)["overall"] == a["overall"]  # same command + seed -> same metrics
