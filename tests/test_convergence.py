"""Convergence: the plateau rule on synthetic EER sequences, early stopping in the train loop, the record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import load_config
from bench.errors import BenchError
from bench.runner import experiment
from bench.runner.checkpoint import load_checkpoint
from bench.runner.convergence import Plateau, assess, budget_of
from bench.runner.rundir import RunDir
from bench.runner.train import train
from tests.runner_helpers import Crash, crashing_loader, ensure_metrics, fake_loader, make_corpus, tiny_config

# --- the rule on synthetic sequences -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 50, allow_nan=False).map(lambda x: round(x, 1)), min_size=1, max_size=15),
    st.integers(1, 5),
)
def test_without_min_delta_a_plateau_is_patience_validations_after_the_first_minimum(eers, patience):
    # Independent statement of the rule for min_delta = 0: the run has converged when at least
    # `patience` validations came after the first occurrence of the lowest EER.
    p = assess(eers, patience, 0.0)
    first_min = int(np.argmin(eers))  # numpy returns the first occurrence
    assert p.plateaued == (len(eers) - 1 - first_min >= patience)
    assert p.best_epoch == first_min + 1 and p.best == min(eers)


@pytest.mark.parametrize(
    ("eers", "patience", "min_delta", "plateaued", "stop_epoch"),
    [
        ([30, 20, 15, 12, 10], 2, 0.5, False, None),  # still falling at the end of the budget
        ([30, 20, 19.8, 19.9, 19.7], 3, 0.5, True, 5),  # creeping by less than min_delta counts as flat
        ([30, 20, 19.8, 18.0, 18.1, 18.2], 2, 0.5, True, 6),  # 18.0 beat 20 by > 0.5: the wait restarted
        ([30, 20, 19.8, 18.0, 18.1, 18.2], 3, 0.5, False, None),
        ([10, 12, 11, 9, 9.5, 9.6, 9.7], 3, 0.0, True, 7),  # a rise then a new best restarts the wait
        ([10, None, 11, None, 12], 2, 0.0, True, 5),  # epochs without validation do not count
    ],
)
def test_hand_checked_sequences(eers, patience, min_delta, plateaued, stop_epoch):
    assert assess(eers, patience, min_delta).plateaued == plateaued
    p = Plateau(patience, min_delta)
    stops = [e for e, v in enumerate(eers, start=1) if p.update(e, v)]
    assert (stops[0] if stops else None) == stop_epoch


def test_budget_of_a_history():
    hist = [{"val_eer": v} for v in (30.0, 20.0, 21.0, 22.0)]
    b = budget_of(hist, steps=40, samples=1280, max_epochs=10, patience=2, min_delta=0.0)
    assert (b.converged, b.stopped_early, b.epochs, b.best_epoch, b.best_val_eer) == (True, True, 4, 2, 20.0)
    assert (b.steps, b.samples_seen, b.max_epochs) == (40, 1280, 10)
    # A run that never validated has nothing to say it plateaued.
    assert not budget_of([{"val_eer": None}] * 3, steps=3, samples=3, max_epochs=3, patience=1, min_delta=0).converged


def test_state_round_trip_keeps_counters_but_takes_this_runs_settings():
    p = assess([5.0, 4.0, 4.5], 3, 0.0)
    q = Plateau.from_state(p.state_dict(), patience=1, min_delta=0.0)
    assert (q.best, q.best_epoch, q.waited, q.patience) == (4.0, 2, 1, 1) and q.plateaued


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["train.patience=0"], "train.patience must be >= 1"),
        (["train.min_delta=-0.1"], "train.min_delta must be >= 0"),
        (["train.early_stop=true", "train.validate_every=0"], "early_stop needs validation"),
    ],
)
def test_bad_settings_are_user_errors(sets, match):
    with pytest.raises(BenchError, match=match):
        load_config(overrides=sets)


# --- early stopping in the train loop ------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    ensure_metrics()
    return make_corpus(tmp_path_factory.mktemp("cn1"))


# --- learning-rate cuts at plateaus (optim.scheduler = "plateau") ---------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 50, allow_nan=False).map(lambda x: round(x, 1)), min_size=1, max_size=25),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.25, 1.0]),
    st.integers(0, 3),
)
def test_lr_cuts_follow_torch_reduce_lr_on_plateau(eers, patience, min_delta, cuts):
    # Independent reference: torch's ReduceLROnPlateau in absolute-threshold mode. Its patience counts
    # the bad epochs it tolerates (it cuts on the next one), ours the bad epochs that make a plateau,
    # so ours = its + 1; a floor just below gamma**cuts stops it after `cuts` cuts.
    gamma = 0.5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=gamma, patience=patience - 1, threshold=min_delta, threshold_mode="abs",
        min_lr=gamma**cuts * (1 - 1e-9),
    )  # fmt: skip
    p = Plateau(patience=patience, min_delta=min_delta, max_reductions=cuts)
    for epoch, eer in enumerate(eers, start=1):
        p.update(epoch, eer)
        ref.step(eer)
        assert opt.param_groups[0]["lr"] == pytest.approx(gamma**p.reductions)
        assert p.reference == ref.best
    # converged: a whole plateau after the last cut, i.e. the plain rule replayed from that cut on
    assert p.plateaued == (p.reductions == cuts and p.waited >= patience)


def test_a_plateau_run_cuts_the_lr_then_converges(corpus, tmp_path, monkeypatch):
    # Scripted validation EERs, patience 1, two cuts allowed: epoch 2 is no better -> cut 1, epoch 3
    # better, epoch 4 no better -> cut 2, epoch 5 no better -> converged, stopped (budget 8 epochs).
    import importlib

    train_mod = importlib.import_module("bench.runner.train")
    script = iter([20.0, 21.0, 15.0, 15.1, 16.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(train_mod, "validation_metrics", lambda *a, **k: {"eer": next(script), "mindcf": 0.5})
    over = {
        "optim.scheduler": "plateau", "optim.gamma": 0.1, "optim.max_reductions": 2, "optim.lr": 0.01,
        "train.early_stop": "true", "train.patience": 1, "train.min_delta": 0, "train.epochs": 8,
    }  # fmt: skip
    cfg = experiment.run_config(tiny_config(**over), "softmax", 0)
    from bench.runner.train import NullReporter

    class Log(NullReporter):
        lines: list[str] = []

        def end_epoch(self, row):
            self.lines.append(f"epoch {row['epoch']}")

        def message(self, text):
            self.lines.append(text)

    log = Log()
    res = train(cfg, corpus, RunDir(tmp_path / "p"), loader_fn=fake_loader, reporter=log)
    # each cut is announced after the row of the epoch whose validation made it
    said = [line.split(" (best")[0] if "plateaued" in line else line for line in log.lines]
    assert said == ["epoch 1", "epoch 2", "validation EER plateaued", "epoch 3", "epoch 4",
                    "validation EER plateaued", "epoch 5", "validation EER plateaued"]  # fmt: skip
    assert "x 0.1 = 0.001 from the next step (cut 1 of 2" in log.lines[2] and "= 0.0001 from" in log.lines[5]
    assert "cut 2 of 2" in log.lines[5] and "stopped" in log.lines[-1]
    lrs = [r["lr"] for r in res.state.history]
    assert lrs == pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-4])  # the lr of each epoch's last step
    assert len(res.state.history) == 5 and res.checkpoint == "best"
    b = budget_of(res.state.history, steps=15, samples=0, max_epochs=8, patience=1, min_delta=0, max_reductions=2)
    assert b.converged and b.stopped_early and b.lr_reductions == 2 and b.best_epoch == 3
    # Without cuts left the same history would have converged at epoch 2 already.
    assert assess([20.0, 21.0], 1, 0.0).plateaued and not assess([20.0, 21.0], 1, 0.0, 1).plateaued


def test_a_plateau_schedule_needs_validation_and_a_real_cut(corpus, tmp_path):
    with pytest.raises(BenchError, match="optim.scheduler='plateau'.*validate_every"):
        tiny_config(**{"optim.scheduler": "plateau", "train.validate_every": 0})
    with pytest.raises(BenchError, match=r"optim.gamma .* must be <= 0.5 .*got 0.97 \(the exponential"):
        tiny_config(**{"optim.scheduler": "plateau"})  # gamma keeps the exponential schedule's default
    # A corpus without validation trials: refused before anything trains (it would silently never cut).
    import dataclasses

    noval = dataclasses.replace(corpus, val_trials=None)
    for over in ({"optim.scheduler": "plateau", "optim.gamma": 0.2}, {"train.early_stop": "true"}):
        with pytest.raises(BenchError, match="act on the validation EER, but corpus .* has no validation trials"):
            experiment.run_experiment(tiny_config(**over), ["softmax"], [0], tmp_path, corpus=noval,
                                      loader_fn=fake_loader)  # fmt: skip
    assert not list(tmp_path.rglob("*.pt"))


def test_a_cut_applies_from_the_next_step(corpus, tmp_path, monkeypatch):
    import importlib

    import pandas as pd

    train_mod = importlib.import_module("bench.runner.train")
    script = iter([20.0, 21.0, 22.0, 23.0])
    monkeypatch.setattr(train_mod, "validation_metrics", lambda *a, **k: {"eer": next(script), "mindcf": 0.5})
    over = {"optim.scheduler": "plateau", "optim.gamma": 0.5, "optim.max_reductions": 2, "optim.lr": 0.01,
            "train.patience": 1, "train.min_delta": 0, "train.epochs": 4, "train.log_every": 1}  # fmt: skip
    rd = RunDir(tmp_path / "c")
    train(experiment.run_config(tiny_config(**over), "softmax", 0), corpus, rd, loader_fn=fake_loader)
    log = pd.read_csv(rd.train_log)
    # 3 steps an epoch; cuts after the validations of epochs 2 and 3
    assert log["lr"].tolist() == pytest.approx([0.01] * 6 + [0.005] * 3 + [0.0025] * 3)


def test_resume_keeps_the_lr_cuts(corpus, tmp_path):
    over = {
        "optim.scheduler": "plateau", "optim.gamma": 0.5, "optim.max_reductions": 3, "train.early_stop": "true",
        "train.patience": 1, "train.min_delta": 100, "train.epochs": 6, "train.steps_per_epoch": 2,
        "train.checkpoint_every": 1,
    }  # fmt: skip
    cfg = experiment.run_config(tiny_config(**over), "softmax", 0)
    full = train(cfg, corpus, RunDir(tmp_path / "full"), loader_fn=fake_loader)
    assert [r["lr"] for r in full.state.history] == pytest.approx([0.05, 0.05, 0.025, 0.0125, 0.00625])
    rd = RunDir(tmp_path / "cut")
    with pytest.raises(Crash):  # dies in epoch 4, after two cuts
        train(cfg, corpus, rd, loader_fn=crashing_loader(after=7))
    resumed = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    assert [r["lr"] for r in resumed.state.history] == [r["lr"] for r in full.state.history]
    assert torch.equal(_params(full.model), _params(resumed.model))


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


EARLY = {"train.early_stop": "true", "train.patience": 1, "train.min_delta": 100, "train.epochs": 5}


def test_early_stop_ends_at_the_plateau_and_returns_the_best_weights(corpus, tmp_path, monkeypatch):
    # Scripted validation EERs: best at epoch 1, then two worse ones -> stop after epoch 3 (patience 2)
    # and hand back the epoch-1 weights.
    import importlib

    train_mod = importlib.import_module("bench.runner.train")

    script = iter([20.0, 30.0, 25.0, 10.0, 10.0])
    monkeypatch.setattr(train_mod, "validation_metrics", lambda *a, **k: {"eer": next(script), "mindcf": 0.5})
    const = {"optim.scheduler": "constant"}  # else the lr schedule would depend on the budget (train.epochs)
    cfg = experiment.run_config(
        tiny_config(**{**EARLY, **const, "train.patience": 2, "train.min_delta": 0}), "softmax", 0
    )
    rd = RunDir(tmp_path / "es")
    res = train(cfg, corpus, rd, loader_fn=fake_loader)
    assert [r["val_eer"] for r in res.state.history] == [20.0, 30.0, 25.0]
    assert res.state.global_step == 3 * 3 and res.checkpoint == "best"
    one = train(experiment.run_config(tiny_config(**{"train.epochs": 1}, **const), "softmax", 0), corpus, None,
                loader_fn=fake_loader)  # fmt: skip
    assert torch.equal(_params(res.model), _params(one.model))
    assert load_checkpoint(rd.best)["state"]["epoch"] == 1 and load_checkpoint(rd.last)["state"]["epoch"] == 3
    assert not torch.equal(_params(res.model), torch.cat([v.flatten() for k, v in load_checkpoint(rd.last)["model"].items()
                                                           if k in dict(res.model.named_parameters())]))  # fmt: skip


def test_min_delta_stops_a_run_whose_improvements_are_too_small(corpus, tmp_path):
    # min_delta = 100 EER points: no validation improves enough, so the plateau comes at epoch 1 + patience.
    res = train(experiment.run_config(tiny_config(**EARLY), "softmax", 0), corpus, None, loader_fn=fake_loader)
    assert len(res.state.history) == 2 and res.state.global_step == 2 * 3


def test_resume_keeps_the_early_stop_state(corpus, tmp_path):
    over = {**EARLY, "train.patience": 2, "train.steps_per_epoch": 2, "train.checkpoint_every": 1}
    cfg = experiment.run_config(tiny_config(**over), "softmax", 0)
    full = train(cfg, corpus, RunDir(tmp_path / "full"), loader_fn=fake_loader)
    assert len(full.state.history) == 3

    rd = RunDir(tmp_path / "cut")
    with pytest.raises(Crash):  # dies in epoch 3, after the plateau counter moved at epoch 2
        train(cfg, corpus, rd, loader_fn=crashing_loader(after=5))
    resumed = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    assert len(resumed.state.history) == 3 and resumed.checkpoint == "best"
    assert torch.equal(_params(full.model), _params(resumed.model))
    # Resuming a run that had already stopped trains nothing more.
    again = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    assert again.state.global_step == resumed.state.global_step
    assert torch.equal(_params(full.model), _params(again.model))


def test_runs_record_convergence_in_run_json_and_metrics_json(corpus, tmp_path):
    cfg = tiny_config(**{"experiment": "c", **EARLY})
    out = experiment.run_experiment(cfg, ["softmax"], [0], tmp_path, corpus=corpus, loader_fn=fake_loader)
    assert out[0].converged is True
    fixed = tiny_config(**{"experiment": "f", "train.epochs": 1})
    out2 = experiment.run_experiment(fixed, ["softmax"], [0], tmp_path, corpus=corpus, loader_fn=fake_loader)
    assert out2[0].converged is False
    for exp, conv, epochs, ckpt in (("c", True, 2, "best"), ("f", False, 1, "last")):
        rd = RunDir.for_run(tmp_path, exp, "softmax", 0)
        m, run = json.loads(rd.metrics.read_text()), json.loads(rd.run_json.read_text())
        for rec in (m, run):
            assert rec["converged"] is conv and rec["epochs"] == epochs
            assert rec["steps"] == 3 * epochs and rec["samples_seen"] == 3 * epochs * 8  # 3 steps of 4 x 2 utts
            assert rec["best_epoch"] in range(1, epochs + 1)
        assert m["checkpoint"] == ckpt and m["stopped_early"] is (exp == "c")
    # A skipped (finished) run reports what it recorded.
    again = experiment.run_experiment(cfg, ["softmax"], [0], tmp_path, corpus=corpus, loader_fn=fake_loader)
    assert again[0].action == "skipped" and again[0].converged is True and again[0].budget["epochs"] == 2


# --- tuning scores what bench run will score ------------------------------------------------------


@pytest.mark.parametrize(("early_stop", "expected"), [(True, 12.0), (False, 14.0)])
def test_tune_objective_is_the_best_epoch_under_early_stopping(tmp_path, early_stop, expected):
    from bench.tune import TuneConfig, parse_space
    from bench.tune.study import run_study

    def trainer(cfg, rd, reporter):
        for e, v in enumerate([20.0, 12.0, 13.0, 14.0], start=1):
            reporter.end_epoch({"epoch": e, "val_eer": v})

    base = load_config(preset="demo", overrides=[f"train.early_stop={str(early_stop).lower()}", "train.epochs=4"])
    tune = TuneConfig(loss="aam", trials=1, study="s", pruner="none", out=str(tmp_path), startup_trials=1)
    res = run_study(base, tune, parse_space(["margin=0.1:0.3"], "aam"), trainer, origin={"preset": "demo"})
    assert res.study.trials[0].value == expected


def test_a_study_may_search_a_parameter_the_preset_sets_but_not_one_set_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    base = ["tune", "--preset", "demo", "--loss", "aam", "--param", "scale=4:32:log", "--out", str(tmp_path),
            "--set", "data.corpus=cnceleb", "--set", f'data.root="{tmp_path / "missing"}"', "--json"]  # fmt: skip
    res = CliRunner().invoke(app, base)  # the demo preset sets scale = 8: the search replaces it
    assert res.exit_code == 2 and "both searched" not in res.output and "missing" in res.output
    res = CliRunner().invoke(app, [*base, "--set", "loss.params.scale=8"])
    assert res.exit_code == 2 and "both searched (--param) and fixed" in res.output


def test_bench_run_table_shows_epochs_of_budget_and_convergence(monkeypatch):
    from rich.console import Console

    from bench.commands import run as run_cmd
    from bench.runner.experiment import RunOutcome

    con = Console(record=True, width=200)
    monkeypatch.setattr(run_cmd, "console", con)
    budget = {"epochs": 4, "max_epochs": 12}
    outs = [
        RunOutcome("aam", 0, "r", "trained", eer=3.0, converged=True, budget=budget),
        RunOutcome("supcon", 0, "r", "trained", eer=4.0, converged=False, budget={"epochs": 12, "max_epochs": 12}),
    ]
    run_cmd._print_table(outs, 1.0, Path("runs/x"))
    lines = con.export_text().splitlines()
    header = next(line for line in lines if "converged" in line)
    assert "epochs" in header
    aam, sup = next(ln for ln in lines if " aam " in ln), next(ln for ln in lines if " supcon " in ln)
    assert "4/12" in aam and " yes " in aam and "12/12" in sup and " no " in sup


def test_a_run_started_before_the_plateau_settings_existed_can_be_resumed(tmp_path):
    import re

    from bench.config import to_dict, to_toml

    cfg = experiment.run_config(tiny_config(), "softmax", 0)
    rd = RunDir(tmp_path / "old")
    rd.path.mkdir()
    text = to_toml(to_dict(cfg))
    rd.config.write_text(re.sub(r"^(early_stop|patience|min_delta) = .*\n", "", text, flags=re.M))
    assert "patience" not in rd.config.read_text()
    experiment._check_same_config(cfg, rd)  # the new settings at their defaults are no change
    with pytest.raises(BenchError, match="train.patience"):
        experiment._check_same_config(experiment.run_config(tiny_config(**{"train.patience": 5}), "softmax", 0), rd)


def _ddp_worker(rank: int, world: int, init: str, root: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        from bench.runner import ddp

        cfg = experiment.run_config(tiny_config(**EARLY), "aam", 0)
        res = train(cfg, make_corpus(Path(root)), None, info=ddp.DistInfo(rank, world, 0), loader_fn=fake_loader)
        Path(f"{out}.{rank}").write_text(json.dumps([res.state.epoch, res.state.global_step]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_every_rank_stops_at_the_same_epoch_under_ddp(tmp_path):
    import multiprocessing as mp

    ensure_metrics()
    root = tmp_path / "cn1"
    make_corpus(root)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, f"file://{tmp_path / 'rdzv'}", str(root), str(tmp_path / "o")))
             for r in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]  # neither rank left waiting for the other
    assert [json.loads((tmp_path / f"o.{r}").read_text()) for r in range(2)] == [[2, 6], [2, 6]]
