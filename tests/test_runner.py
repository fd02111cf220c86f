"""Runner: lr schedules, registries, checkpoints, run-directory locking, the train loop, resume."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from bench.config import OptimConfig
from bench.errors import BenchError
from bench.runner import experiment
from bench.runner.checkpoint import load_checkpoint, save_checkpoint
from bench.runner.optim import LRSchedule, amp_mode, build_optimizer, build_scheduler
from bench.runner.rundir import RunDir, decide
from bench.runner.train import train
from tests.runner_helpers import Crash, crashing_loader, ensure_metrics, fake_loader, make_corpus, tiny_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    ensure_metrics()
    return make_corpus(tmp_path_factory.mktemp("cn1"))


# --- optimizers and schedules -------------------------------------------------------------------


def test_lr_schedules_match_closed_forms():
    steps = 10
    cos = LRSchedule(OptimConfig(scheduler="cosine", lr=0.1, min_lr=0.0), epochs=4, steps_per_epoch=steps)
    assert cos(0) == pytest.approx(1.0)
    assert cos(20) == pytest.approx(0.5)  # half way: cos(pi/2) = 0
    assert cos(40) == pytest.approx(0.0, abs=1e-12)
    exp = LRSchedule(OptimConfig(scheduler="exponential", gamma=0.97), epochs=100, steps_per_epoch=steps)
    assert exp(9) == 1.0 and exp(10) == pytest.approx(0.97) and exp(35) == pytest.approx(0.97**3)
    warm = LRSchedule(OptimConfig(scheduler="constant", warmup_epochs=0.5), epochs=2, steps_per_epoch=steps)
    assert [warm(i) for i in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    floor = LRSchedule(OptimConfig(scheduler="cosine", lr=0.1, min_lr=0.01), epochs=1, steps_per_epoch=steps)
    assert floor(10) == pytest.approx(0.1)


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], OptimConfig(optimizer="sgd", lr=0.2, scheduler="step", gamma=0.5, step_size=1))
    sched = build_scheduler(opt, OptimConfig(optimizer="sgd", lr=0.2, scheduler="step", gamma=0.5, step_size=1), 3, 2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])


def test_unknown_names_and_cpu_amp_are_user_errors():
    with pytest.raises(BenchError, match="did you mean 'sgd'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(optimizer="sdg"))
    with pytest.raises(BenchError, match="unknown scheduler 'cosin'"):
        LRSchedule(OptimConfig(scheduler="cosin"), 1, 1)
    with pytest.raises(BenchError, match="needs a CUDA device"):
        amp_mode("bf16", torch.device("cpu"))
    assert amp_mode("none", torch.device("cpu")).dtype is None


# --- checkpoints and run directories -------------------------------------------------------------


def test_checkpoint_roundtrip_and_corrupt_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "state": {"epoch": 2}})
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], torch.arange(3.0)) and back["state"]["epoch"] == 2
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(BenchError, match=r"c\.pt: unreadable checkpoint"):
        load_checkpoint(path)
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="x.pt"):
        load_checkpoint(tmp_path / "x.pt")


def _hold_lock(path: str, ready, release) -> None:
    with RunDir(Path(path)).lock():
        ready.set()
        release.wait(30)


def test_lock_refuses_a_second_process_and_is_released(tmp_path):
    rd = RunDir(tmp_path / "run")
    ctx = mp.get_context("fork")  # fork: no second torch import
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(rd.path), ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with pytest.raises(BenchError, match=rf"in use by another bench process \(pid {proc.pid}\)"):
            with rd.lock():
                pass
    finally:
        release.set()
        proc.join(30)
    with rd.lock():  # free again once the holder exited
        pass


def test_decide_skip_resume_fresh(tmp_path):
    rd = RunDir(tmp_path / "r")
    assert decide(rd, force=False, resume=False) == "fresh"
    rd.update_run_json(status="running")
    rd.last.parent.mkdir(parents=True)
    rd.last.write_bytes(b"x")
    with pytest.raises(BenchError, match="--resume to continue"):
        decide(rd, force=False, resume=False)
    assert decide(rd, force=False, resume=True) == "resume"
    rd.update_run_json(status="finished")
    rd.metrics.write_text("{}")
    # a finished run whose result files were removed by hand: named, and only --force reruns it
    with pytest.raises(BenchError, match=r"a finished run whose scores.txt is missing \(removed\?\) .*--force"):
        decide(rd, force=False, resume=True)
    rd.scores.write_text("a b 0.5 1\n")
    assert decide(rd, force=False, resume=True) == "skip"
    assert decide(rd, force=True, resume=False) == "fresh"
    rd.metrics.unlink()
    with pytest.raises(BenchError, match="whose metrics.json is missing"):
        decide(rd, force=False, resume=False)
    rd.scores.unlink()
    with pytest.raises(BenchError, match="whose metrics.json and scores.txt are missing"):
        decide(rd, force=False, resume=False)


# --- the train loop -------------------------------------------------------------------------------


def _params(result) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in (result.model, result.loss) for p in m.parameters()])


def test_training_reduces_loss_writes_logs_and_is_deterministic(corpus, tmp_path):
    cfg = experiment.run_config(tiny_config(**{"train.steps_per_epoch": 4, "train.epochs": 3}), "softmax", 0)
    rd = RunDir(tmp_path / "a")
    r1 = train(cfg, corpus, rd, loader_fn=fake_loader)
    r2 = train(cfg, corpus, None, loader_fn=fake_loader)
    assert torch.equal(_params(r1), _params(r2))
    rows = list(csv.DictReader(rd.epochs_csv.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert all(r["val_eer"] != "" and 0 <= float(r["val_eer"]) <= 100 for r in rows)
    log = list(csv.DictReader(rd.train_log.open()))
    assert len(log) == 12 and "part_ce" in log[0] and log[0]["accuracy"] != ""
    assert float(log[0]["lr"]) == pytest.approx(0.05)
    assert rd.last.exists() and rd.best.exists()


def test_supcon_has_no_accuracy_column_values(corpus, tmp_path):
    cfg = experiment.run_config(tiny_config(**{"train.epochs": 1}), "supcon", 0)
    rd = RunDir(tmp_path / "s")
    train(cfg, corpus, rd, loader_fn=fake_loader)
    log = list(csv.DictReader(rd.train_log.open()))
    assert log and all(r["accuracy"] == "" for r in log)
    assert list(csv.DictReader(rd.epochs_csv.open()))[0]["train_acc"] == ""


def test_resume_mid_epoch_equals_uninterrupted(corpus, tmp_path):
    cfg = experiment.run_config(
        tiny_config(
            **{
                "train.steps_per_epoch": 4,
                "train.epochs": 2,
                "train.checkpoint_every": 2,
                "optim.optimizer": "adam",
                "optim.lr": 0.01,
                "loss.margin_warmup_epochs": 1,
            }
        ),
        "aam",
        0,
    )
    full = train(cfg, corpus, RunDir(tmp_path / "full"), loader_fn=fake_loader)
    rd = RunDir(tmp_path / "cut")
    with pytest.raises(Crash):
        train(cfg, corpus, rd, loader_fn=crashing_loader(after=7))  # dies in epoch 2 after its step-6 checkpoint
    assert load_checkpoint(rd.last)["state"]["batch"] == 2
    resumed = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    assert torch.equal(_params(full), _params(resumed))

    def untimed(hist):
        return [{k: v for k, v in r.items() if k not in ("train_seconds", "samples_per_s")} for r in hist]

    assert untimed(resumed.state.history) == untimed(full.state.history)
    a = [r["global_step"] for r in csv.DictReader((tmp_path / "full" / "train_log.csv").open())]
    b = [r["global_step"] for r in csv.DictReader(rd.train_log.open())]
    assert a == b


def test_nan_losses_are_skipped_then_stop_the_run(corpus, tmp_path):
    def nan_loader(corpus, cfg, *, epoch, info, start_batch):
        for i, (w, y) in enumerate(fake_loader(corpus, cfg, epoch=epoch, info=info, start_batch=start_batch)):
            yield (w * float("nan") if i % 2 else w), y

    cfg = experiment.run_config(tiny_config(**{"train.steps_per_epoch": 4, "train.epochs": 1}), "softmax", 0)
    before = train(cfg, corpus, None, loader_fn=nan_loader)
    assert before.state.bad_steps == 2 and before.state.n_steps == 2
    assert all(math.isfinite(float(p.detach().sum())) for p in before.model.parameters())
    assert all(math.isfinite(float(b.float().sum())) for b in before.model.buffers())  # BatchNorm stats
    cfg.train.max_bad_steps = 1
    with pytest.raises(BenchError, match=r"2 steps had a NaN/inf loss \(train.max_bad_steps=1\)"):
        train(cfg, corpus, None, loader_fn=nan_loader)


# --- whole runs ------------------------------------------------------------------------------------


def test_run_experiment_writes_run_dir_and_skips_finished(corpus, tmp_path):
    cfg = tiny_config(**{"experiment": "t", "train.epochs": 1})
    out = experiment.run_experiment(cfg, ["softmax", "supcon"], [0], tmp_path, corpus=corpus, loader_fn=fake_loader)
    assert [o.action for o in out] == ["trained", "trained"]
    rd = RunDir.for_run(tmp_path, "t", "softmax", 0)
    run = json.loads(rd.run_json.read_text())
    assert run["status"] == "finished" and run["git"]["commit"] and run["samples_per_s"] > 0
    m = json.loads(rd.metrics.read_text())
    assert m["corpus"] == "cnceleb" and m["enroll_mode"] == "concat"
    assert len(m["trials"]["sha256"]) == 64 and m["trials"]["n"] == 18
    assert set(m["per_genre"]) == {"singing", "speech"}
    assert m["untrained"]["eer"] is not None
    lines = rd.scores.read_text().splitlines()
    assert len(lines) == 18 and lines[0].split()[0] == "id00009-enroll" and lines[0].split()[3] in "01"
    assert "[loss]" in rd.config.read_text() and 'name = "softmax"' in rd.config.read_text()
    again = experiment.run_experiment(cfg, ["softmax"], [0], tmp_path, corpus=corpus, loader_fn=fake_loader)
    assert again[0].action == "skipped" and again[0].eer == out[0].eer


def test_loss_params_go_to_losses_that_have_them():
    cfg = tiny_config(**{"loss.params.margin": 0.3})
    assert experiment.run_config(cfg, "aam", 0, ["softmax", "aam"]).loss.params["margin"] == 0.3
    assert "margin" not in experiment.run_config(cfg, "softmax", 0, ["softmax", "aam"]).loss.params
    with pytest.raises(BenchError, match="unknown parameter 'margin'"):
        experiment.run_config(cfg, "softmax", 0, ["softmax"])


def test_per_loss_params_override_shared_ones_for_that_loss_only():
    cfg = tiny_config(
        **{"loss.params.scale": 8.0, "loss.per_loss.aam.scale": 12.0, "loss.per_loss.supcon.temperature": 0.1}
    )
    aam = experiment.run_config(cfg, "aam", 0, ["aam", "aamsupcon", "supcon"])
    both = experiment.run_config(cfg, "aamsupcon", 0, ["aam", "aamsupcon", "supcon"])
    sup = experiment.run_config(cfg, "supcon", 0, ["aam", "aamsupcon", "supcon"])
    assert aam.loss.params["scale"] == 12.0 and both.loss.params["scale"] == 8.0
    assert sup.loss.params["temperature"] == 0.1 and both.loss.params["temperature"] == 0.07
    assert aam.loss.per_loss == {}  # a run's resolved config holds its own parameters only
    with pytest.raises(BenchError, match="unknown parameter 'temperature'"):
        experiment.run_config(tiny_config(**{"loss.per_loss.aam.temperature": 0.1}), "aam", 0)
    with pytest.raises(BenchError, match="aamsupcon"):
        experiment.run_config(tiny_config(**{"loss.per_loss.aamsupcn.scale": 8.0}), "aam", 0)
