"""Large-margin fine-tuning (`bench run --finetune lm`): the recipe's config, refusals before any
work, and a fine-tuning run that starts from its parent's best checkpoint in its own folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.config import load_config
from bench.errors import BenchError
from bench.finetune import finetune_config, margin_params, system_name
from bench.io import atomic_write_json
from bench.runner import experiment
from bench.runner.checkpoint import load_checkpoint
from tests.runner_helpers import TINY_SETS, fake_loader, make_corpus

FT = ["finetune.name=lm", "finetune.params.epochs=1", "finetune.params.crop_seconds=0.5"]


def test_margin_params_of_each_loss():
    # read off the loss configs by hand: which float parameters are margins
    assert margin_params("aam") == ["margin"] and margin_params("am") == ["margin"]
    assert margin_params("aamsupcon") == ["margin"]
    assert margin_params("marginsupcon") == ["margin", "aam_margin"]
    assert margin_params("softmax") == [] and margin_params("supcon") == []


def test_lm_recipe_changes_crops_margin_and_schedule_only():
    base = experiment.run_config(load_config(preset="demo"), "aamsupcon", 3)
    cfg = load_config(preset="demo", overrides=["finetune.name=lm"])
    tuned = finetune_config(experiment.run_config(cfg, "aamsupcon", 3), "runs/demo/aamsupcon/seed3")
    p = tuned.finetune.params  # the demo preset's sizing of the recipe
    assert (p["crop_seconds"], p["epochs"], p["lr"], p["final_lr"], p["margin"]) == (2.0, 2, 5e-4, 2e-4, 0.5)
    assert tuned.data.crop_seconds == 2.0 and tuned.train.epochs == 2
    preset_margin = load_config(preset="demo").loss.per_loss["aamsupcon"]["margin"]
    assert tuned.loss.params["margin"] == 0.5 and base.loss.params["margin"] == preset_margin
    assert tuned.loss.margin_warmup_epochs == 0 and base.loss.margin_warmup_epochs == 2
    assert tuned.optim.lr == 5e-4 and tuned.optim.scheduler == "exponential" and tuned.optim.min_lr == 2e-4
    assert tuned.optim.gamma**tuned.train.epochs == pytest.approx(2e-4 / 5e-4)
    assert tuned.finetune.parent == "runs/demo/aamsupcon/seed3" and system_name(tuned) == "aamsupcon+lm"
    # everything else is the parent's
    assert tuned.model == base.model and tuned.eval == base.eval and tuned.train.seed == 3
    assert tuned.data.view_types == base.data.view_types and tuned.optim.optimizer == base.optim.optimizer
    # WeSpeaker's defaults without a preset: 6 s crops, margin 0.5, 5 epochs, lr 1e-4 -> 2.5e-5
    ref = finetune_config(experiment.run_config(load_config(overrides=["finetune.name=lm"]), "aam", 0), "p")
    assert (ref.data.crop_seconds, ref.loss.params["margin"], ref.train.epochs) == (6.0, 0.5, 5)
    assert (ref.optim.lr, ref.optim.min_lr, ref.optim.warmup_epochs) == (1e-4, 2.5e-5, 1.0)


def test_unknown_recipe_and_bad_params_are_user_errors():
    with pytest.raises(BenchError, match="unknown fine-tuning recipe 'lmm'.*did you mean 'lm'"):
        experiment.run_config(load_config(overrides=["finetune.name=lmm"]), "aam", 0)
    with pytest.raises(BenchError, match="unknown parameter 'margn'"):
        experiment.run_config(load_config(overrides=["finetune.name=lm", "finetune.params.margn=0.4"]), "aam", 0)


def test_non_margin_losses_are_refused_before_any_run_is_read(tmp_path):
    cfg = load_config(overrides=TINY_SETS + FT)
    # the out folder does not even exist: the loss check comes first and names the margin losses
    with pytest.raises(BenchError, match="'softmax' has no margin.*aam, aamsupcon, am, .*marginsupcon.*subcenter_aam"):
        experiment.plan_runs(cfg, ["aam", "softmax"], [0], tmp_path / "nowhere")


def test_missing_unfinished_or_different_parents_name_the_folder(tmp_path):
    cfg = load_config(overrides=TINY_SETS + FT)
    parent = tmp_path / "default" / "aam" / "seed0"
    with pytest.raises(BenchError, match="no run to fine-tune here") as e:
        experiment.plan_runs(cfg, ["aam"], [0], tmp_path)
    assert str(parent) in str(e.value)
    parent.mkdir(parents=True)
    atomic_write_json(parent / "run.json", {"status": "running"})
    with pytest.raises(BenchError, match="not finished \\(status 'running'\\)") as e:
        experiment.plan_runs(cfg, ["aam"], [0], tmp_path)
    assert str(parent) in str(e.value)
    atomic_write_json(parent / "run.json", {"status": "finished"})
    atomic_write_json(parent / "metrics.json", {"overall": {"eer": 1.0}})
    with pytest.raises(BenchError, match=r"lacks its scores.txt \(removed\?\); run it again with --force") as e:
        experiment.plan_runs(cfg, ["aam"], [0], tmp_path)
    assert str(parent) in str(e.value)
    (parent / "scores.txt").write_text("a b 0.5 1\n")
    with pytest.raises(BenchError, match="no best checkpoint"):
        experiment.plan_runs(cfg, ["aam"], [0], tmp_path)


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory):
    """A finished tiny `aam` run (the stand-in loader, no untrained baseline) to fine-tune."""
    out = tmp_path_factory.mktemp("ft")
    corpus = make_corpus(tmp_path_factory.mktemp("cn1ft"))
    cfg = load_config(overrides=TINY_SETS + ["eval.untrained=false"])
    (o,) = experiment.run_experiment(cfg, ["aam"], [0], out, corpus=corpus, loader_fn=fake_loader)
    assert o.action == "trained", o.error
    return out, corpus


def test_a_parent_trained_with_other_settings_is_refused(parent_run):
    out, _ = parent_run
    cfg = load_config(overrides=TINY_SETS + ["eval.untrained=false", "model.params.embed_dim=24", *FT])
    with pytest.raises(BenchError, match="trained with other settings \\(model.params.embed_dim\\)") as e:
        experiment.plan_runs(cfg, ["aam"], [0], out)
    assert str(Path(out) / "default" / "aam" / "seed0" / "config.toml") in str(e.value)


def test_finetune_starts_from_the_parents_best_checkpoint_in_its_own_folder(parent_run):
    out, corpus = parent_run
    # a vanishing learning rate: the fine-tuned weights must then be the parent's best weights
    sets = TINY_SETS + ["eval.untrained=false", *FT, "finetune.params.lr=1e-12", "finetune.params.final_lr=1e-12"]
    (o,) = experiment.run_experiment(
        load_config(overrides=sets), ["aam"], [0], out, corpus=corpus, loader_fn=fake_loader
    )
    parent = Path(out) / "default" / "aam" / "seed0"
    rd = Path(out) / "default" / "aam+lm" / "seed0"
    assert (o.loss, o.action, Path(o.run_dir)) == ("aam+lm", "trained", rd)
    run = json.loads((rd / "run.json").read_text())
    metrics = json.loads((rd / "metrics.json").read_text())
    assert run["status"] == "finished" and run["parent"] == str(parent) and run["finetune"] == "lm"
    assert metrics["parent"] == str(parent) and metrics["finetune"]["recipe"] == "lm"
    assert metrics["loss"] == "aam" and "untrained" in metrics and metrics["untrained"] is None
    assert (rd / "scores_calibrated.txt").exists() and "actdcf@0.01" in metrics["calibration"]["overall"]
    tuned, best = load_checkpoint(rd / "checkpoints" / "last.pt"), load_checkpoint(parent / "checkpoints" / "best.pt")
    assert tuned["config"]["loss"]["params"]["margin"] == 0.5 and tuned["config"]["data"]["crop_seconds"] == 0.5
    params = [k for k, v in best["model"].items() if v.is_floating_point() and "running" not in k]
    for key in params + ["classifier.weight"]:
        a = (tuned["model"] | tuned["loss"])[key]
        b = (best["model"] | best["loss"])[key]
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # ... and not the seed's fresh initialisation (which the parent moved away from)
    from bench.runner.train import build_components

    fresh, _ = build_components(load_config(overrides=TINY_SETS), len(corpus.speakers))
    assert any(not torch.allclose(fresh.state_dict()[k], best["model"][k]) for k in params)
    # a second call skips the finished fine-tuning run
    (again,) = experiment.run_experiment(
        load_config(overrides=sets), ["aam"], [0], out, corpus=corpus, loader_fn=fake_loader
    )
    assert again.action == "skipped" and again.loss == "aam+lm"
