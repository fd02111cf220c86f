"""The issue-22 objectives inside the train loop: every entry trains, logs its parts, and a run
interrupted mid-epoch resumes exactly (margin schedule and SphereFace's annealing counter included)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from bench.runner import experiment
from bench.runner.checkpoint import load_checkpoint
from bench.runner.rundir import RunDir
from bench.runner.train import train
from tests.runner_helpers import Crash, crashing_loader, ensure_metrics, fake_loader, make_corpus, tiny_config
from tests.test_losses_zoo import NEW


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    ensure_metrics()
    return make_corpus(tmp_path_factory.mktemp("cn1"))


def _params(result) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in (result.model, result.loss) for p in m.parameters()])


@pytest.mark.parametrize("loss", NEW)
def test_every_new_loss_trains_and_logs_its_parts(corpus, tmp_path, loss):
    sets = {"train.epochs": 1, "train.steps_per_epoch": 2, "train.validate_every": 0, "eval.untrained": False}
    cfg = experiment.run_config(tiny_config(**sets), loss, 0)
    rd = RunDir(tmp_path / loss)
    res = train(cfg, corpus, rd, loader_fn=fake_loader)
    log = list(csv.DictReader(rd.train_log.open()))
    assert len(log) == 2 and all(math.isfinite(float(r["loss"])) for r in log)
    parts = [k for k in log[0] if k.startswith("part_")]
    assert parts, loss
    assert torch.isfinite(_params(res)).all()


@pytest.mark.parametrize("loss", ["sphereface", "subcenter_aam"])
def test_resume_keeps_margin_schedule_and_annealing(corpus, tmp_path, loss):
    sets = {
        "train.steps_per_epoch": 4,
        "train.epochs": 2,
        "train.checkpoint_every": 2,
        "train.validate_every": 0,
        "eval.untrained": False,
        "loss.margin_warmup_epochs": 1,
        "loss.margin_start_epoch": 0.5,
        "loss.margin_shape": "exp",
    }
    cfg = experiment.run_config(tiny_config(**sets), loss, 0)
    full = train(cfg, corpus, RunDir(tmp_path / "full"), loader_fn=fake_loader)
    rd = RunDir(tmp_path / "cut")
    with pytest.raises(Crash):
        train(cfg, corpus, rd, loader_fn=crashing_loader(after=7))
    ckpt = load_checkpoint(rd.last)
    assert ckpt["margin"]["shape"] == "exp" and ckpt["margin"]["start_epoch"] == 0.5
    assert 0.0 < ckpt["margin"]["factor"] < 1.0  # saved mid warm-up
    resumed = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    assert torch.equal(_params(full), _params(resumed))
    if loss == "sphereface":
        assert resumed.loss.iteration == full.loss.iteration == 8
