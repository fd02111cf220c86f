"""Reliability, slow part: real ``bench`` processes SIGKILLed while writing a checkpoint and while
writing scores, two processes racing on one experiment, and same command + seed -> same metrics.

Faults are armed inside the child process by ``python -m tests.faults arm KIND -- <bench args>``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_reliability import SETS

pytest_plugins = ["tests.faults"]
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RUN_SETS = [s for s in SETS if not s.startswith("train.steps_per_epoch")] + [
    "train.steps_per_epoch=3",
    "train.checkpoint_every=1",
]


def bench(root: Path, out: Path, *extra: str, arm: str | None = None) -> subprocess.CompletedProcess:
    argv = ["run", "--losses", "aam", "--experiment", "e", "--out", str(out), "--corpus", str(root), "--json"]
    for s in RUN_SETS:
        argv += ["--set", s]
    head = ["-m", "tests.faults", "arm", arm, "--"] if arm else ["-m", "bench"]
    return subprocess.run(
        [sys.executable, *head, *argv, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def rd(out: Path) -> Path:
    return out / "e" / "aam" / "seed0"


def status(out: Path) -> str:
    return json.loads((rd(out) / "run.json").read_text())["status"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from bench.data.fixtures import write_cnceleb1

    root = tmp_path_factory.mktemp("slowcorpus")
    write_cnceleb1(root, train_speakers=4, utts=3, eval_speakers=2, test_utts=2, seed=0)
    return root


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    res = bench(corpus, out)
    assert res.returncode == 0, res.stderr[-3000:]
    return rd(out)


def same_results(a: Path, b: Path) -> bool:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    return ma["overall"] == mb["overall"] and (a / "scores.txt").read_bytes() == (b / "scores.txt").read_bytes()


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(corpus, clean, tmp_path, fault_case):
    from bench.runner.checkpoint import load_checkpoint

    case = fault_case("faults")
    case.fault()
    out = tmp_path / "runs"
    res = bench(corpus, out, arm="kill-in-checkpoint:2")
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    last = rd(out) / "checkpoints" / "last.pt"
    before = Path(f"{last}.before")
    assert case.intact(last, before.read_bytes())
    before.unlink()
    assert load_checkpoint(last)["state"]["global_step"] == 1
    assert status(out) == "running"

    res = bench(corpus, out, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["runs"][0]["action"] == "resumed" and status(out) == "finished"
    assert same_results(clean, rd(out))  # the resumed run equals the uninterrupted one


def test_sigkill_with_loader_workers_then_resume_at_once(corpus, clean, tmp_path, fault_case):
    """A preempted job requeued immediately: its loader worker must not keep the run's lock."""
    case = fault_case("concurrency")
    case.fault()
    out = tmp_path / "runs"
    res = bench(corpus, out, "--set", "data.workers=1", arm="kill-in-checkpoint:2")
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    Path(f"{rd(out) / 'checkpoints' / 'last.pt'}.before").unlink()
    res = bench(corpus, out, "--resume", "--set", "data.workers=1")  # at once, no waiting
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["runs"][0]["action"] == "resumed" and status(out) == "finished"
    assert case.intact(rd(out) / "scores.txt", (clean / "scores.txt").read_bytes())


def test_sigkill_while_writing_scores_leaves_no_half_results(corpus, clean, tmp_path, fault_case):
    case = fault_case("faults")
    case.fault()
    out = tmp_path / "runs"
    res = bench(corpus, out, arm="kill-in-scores")
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    assert case.intact(rd(out) / "scores.txt", None) and case.intact(rd(out) / "metrics.json", None)
    assert status(out) == "running"  # never marked finished

    res = bench(corpus, out)  # an unfinished run is not silently redone
    assert res.returncode == 1 and "--resume" in res.stderr
    res = bench(corpus, out, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert status(out) == "finished" and same_results(clean, rd(out))
    assert not list(rd(out).glob(".scores.txt.*.tmp"))


def test_two_processes_on_one_experiment_and_same_seed_same_metrics(corpus, clean, tmp_path, fault_case):
    case = fault_case("concurrency")
    case.fault()
    out = tmp_path / "runs"
    argv = ["run", "--losses", "aam", "--experiment", "e", "--out", str(out), "--corpus", str(corpus), "--json"]
    for s in RUN_SETS:
        argv += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench", *argv],
            cwd=REPO,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    actions = []
    for code, stdout, stderr in results:
        if code == 0:
            actions.append(json.loads(stdout)["runs"][0]["action"])
        else:
            assert code == 1 and "in use by another bench process" in stderr, stderr[-3000:]
            actions.append("refused")
    assert sorted(actions) in (["refused", "trained"], ["skipped", "trained"]), actions
    assert status(out) == "finished"
    fault_case("reproducibility").intact(rd(out) / "scores.txt", (clean / "scores.txt").read_bytes())
    assert same_results(clean, rd(out))  # same command and seed on CPU: identical metrics
