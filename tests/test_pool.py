"""Runs side by side (bench/runner/pool.py): the job plan, and parallel runs equal to serial ones."""

from __future__ import annotations

import pytest
import torch

from bench.errors import BenchError
from bench.runner import experiment
from bench.runner.pool import resolve_jobs, threads_per_job
from tests.runner_helpers import ensure_metrics, make_corpus, tiny_config


def test_job_plan(monkeypatch):
    import bench.runner.pool as P

    monkeypatch.setattr(P, "available_cpus", lambda: 4)
    assert resolve_jobs("auto", 6, "cpu") == 4 and resolve_jobs("auto", 2, "cpu") == 2
    assert resolve_jobs("auto", 6, "cuda") == 1 and resolve_jobs("auto", 6, "cpu", world_size=2) == 1
    assert resolve_jobs("3", 2, "cpu") == 2 and resolve_jobs(1, 5, "cuda") == 1
    assert (
        threads_per_job(4) == 1 and threads_per_job(3) == 1 and threads_per_job(1) == 4 and threads_per_job(2, 3) == 3
    )
    for bad in ("0", "two", "-1"):
        with pytest.raises(BenchError, match="--jobs expects"):
            resolve_jobs(bad, 2, "cpu")
    with pytest.raises(BenchError, match="one cuda device"):
        resolve_jobs(2, 2, "cuda")
    with pytest.raises(BenchError, match="torchrun"):
        resolve_jobs(2, 2, "cpu", world_size=2)


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a: self.calls.append((name, a))


@pytest.mark.slow
def test_parallel_runs_equal_serial_runs_and_report_each_run(tmp_path_factory):
    ensure_metrics()
    corpus = make_corpus(tmp_path_factory.mktemp("cn1"))
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(**{"experiment": "p", "train.epochs": 1, "data.workers": 0, "eval.untrained": "false",
                         "data.view_types": '["clean"]', "data.views": 1})  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run 1 thread each: same arithmetic, same numbers
    try:
        serial = experiment.run_experiment(cfg, ["softmax", "aam"], [0], out / "s", corpus=corpus)
    finally:
        torch.set_num_threads(threads)
    rec = Recorder()
    par = experiment.run_experiment(cfg, ["softmax", "aam"], [0], out / "p", corpus=corpus, jobs=2, threads=1,
                                    reporter=rec)  # fmt: skip
    assert [o.action for o in par] == ["trained", "trained"] and [o.loss for o in par] == ["softmax", "aam"]
    assert [o.eer for o in par] == [o.eer for o in serial] and [o.mindcf for o in par] == [o.mindcf for o in serial]
    for o_s, o_p in zip(serial, par):
        s_scores = (out / "s" / "p" / o_s.loss / "seed0" / "scores.txt").read_text()
        assert (out / "p" / "p" / o_p.loss / "seed0" / "scores.txt").read_text() == s_scores
    assert sorted(a for m, a in rec.calls if m == "start_run") == [("aam", 0), ("softmax", 0)]
    assert sum(m == "end_epoch" for m, _ in rec.calls) == 2
    again = experiment.run_experiment(cfg, ["softmax", "aam"], [0], out / "p", corpus=corpus, jobs=2, threads=1)
    assert [o.action for o in again] == ["skipped", "skipped"]
