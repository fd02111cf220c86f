"""train.ema_decay: a moving average of the weights, validated, checkpointed, scored and resumed.

The reference is the EMA recurrence computed here by hand over the trained weights that every
step's checkpoint recorded (``e_1 = w_1``, ``e_k = d e_(k-1) + (1 - d) w_k``), independent of torch's
``AveragedModel`` that the runner uses.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

from bench.errors import BenchError
from bench.runner import experiment
from bench.runner.checkpoint import load_checkpoint
from bench.runner.rundir import RunDir
from bench.runner.train import load_for_eval, train
from tests.runner_helpers import Crash, crashing_loader, fake_loader, make_corpus, tiny_config

train_mod = importlib.import_module("bench.runner.train")

DECAY = 0.8
STEPS = {"train.epochs": 2, "train.steps_per_epoch": 3, "train.checkpoint_every": 1, "optim.scheduler": "constant"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("ema") / "cn")


def _cfg(**over):
    return experiment.run_config(tiny_config(**{**STEPS, "train.ema_decay": DECAY, **over}), "softmax", 0)


def _floats(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in sd.items() if v.is_floating_point()}


def test_the_average_is_the_ema_recurrence_over_every_steps_weights(corpus, tmp_path, monkeypatch):
    saved: list[dict[str, torch.Tensor]] = []
    real_save = train_mod.save_checkpoint

    def record(path, data):
        if path.name == "last.pt":
            saved.append(copy.deepcopy(data["model"]))
        real_save(path, data)

    monkeypatch.setattr(train_mod, "save_checkpoint", record)
    rd = RunDir(tmp_path / "r")
    res = train(_cfg(), corpus, rd, loader_fn=fake_loader)
    assert len(saved) == 6  # one per step: mid-epoch checkpoints and the two epoch ends
    ref = _floats(saved[0])
    for w in saved[1:]:
        ref = {k: DECAY * ref[k] + (1 - DECAY) * v for k, v in _floats(w).items()}
    last = load_checkpoint(rd.last)
    assert last["ema_updates"] == 6
    ema = _floats(last["ema"])
    assert set(ema) == set(ref)  # parameters and BatchNorm statistics alike
    for k in ref:
        torch.testing.assert_close(ema[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
    # the trained weights are kept apart (training resumes from them) and differ from the average
    assert any(not torch.equal(last["model"][k], last["ema"][k]) for k in ref)
    # what the run hands back for scoring, and what `bench eval` loads, is the average
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, last["ema"][k]), k
    model, _ = load_for_eval(rd.last)
    for k, v in model.state_dict().items():
        assert torch.equal(v, last["ema"][k]), k


def test_validation_and_early_stopping_use_the_average(corpus, tmp_path, monkeypatch):
    # Scripted validation EERs put the best at epoch 1; the run stops after epoch 3 and scores the
    # average as it stood after epoch 1, which is what a one-epoch run hands back.
    seen: list[torch.Tensor] = []

    def fake_validation(embed, corpus_, p_targets):
        seen.append(_stack(embed.__closure__))
        return {"eer": next(script), "mindcf": 0.5}

    script = iter([20.0, 30.0, 25.0])
    monkeypatch.setattr(train_mod, "validation_metrics", fake_validation)
    over = {"train.early_stop": "true", "train.patience": 2, "train.min_delta": 0, "train.epochs": 5}
    rd = RunDir(tmp_path / "es")
    res = train(_cfg(**over), corpus, rd, loader_fn=fake_loader)
    assert len(res.state.history) == 3 and res.checkpoint == "best"
    best = load_checkpoint(rd.best)
    assert best["state"]["epoch"] == 1
    monkeypatch.undo()
    one = train(_cfg(**{"train.epochs": 1}), corpus, None, loader_fn=fake_loader)
    for k, v in one.model.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k
        assert torch.equal(best["ema"][k], v), k
    # each validation embedded with the average of that moment, not the trained weights
    assert torch.equal(seen[0], _params_of(best["ema"], res.model))


def _stack(closure) -> torch.Tensor:
    """The parameters of the model an ``embedder`` closure embeds with, flattened (a copy)."""
    models = [c.cell_contents for c in closure if isinstance(c.cell_contents, torch.nn.Module)]
    assert len(models) == 1
    return torch.cat([p.detach().flatten().clone() for p in models[0].parameters()])


def _params_of(sd: dict[str, torch.Tensor], model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([sd[k].flatten() for k, _ in model.named_parameters()])


def test_a_resumed_run_keeps_the_average(corpus, tmp_path):
    cfg = _cfg(**{"train.epochs": 3})
    full = train(cfg, corpus, RunDir(tmp_path / "full"), loader_fn=fake_loader)
    rd = RunDir(tmp_path / "cut")
    with pytest.raises(Crash):  # dies in epoch 2
        train(cfg, corpus, rd, loader_fn=crashing_loader(after=4))
    resumed = train(cfg, corpus, rd, resume=True, loader_fn=fake_loader)
    for k, v in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert load_checkpoint(rd.last)["ema_updates"] == 9


def test_resuming_a_run_without_an_average_under_ema_is_refused(corpus, tmp_path):
    rd = RunDir(tmp_path / "plain")
    with pytest.raises(Crash):
        train(_cfg(**{"train.ema_decay": 0}), corpus, rd, loader_fn=crashing_loader(after=2))
    with pytest.raises(BenchError, match="holds no weight average"):
        train(_cfg(), corpus, rd, resume=True, loader_fn=fake_loader)


def test_without_ema_nothing_changes(corpus, tmp_path):
    rd = RunDir(tmp_path / "n")
    res = train(_cfg(**{"train.ema_decay": 0}), corpus, rd, loader_fn=fake_loader)
    last = load_checkpoint(rd.last)
    assert "ema" not in last
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, last["model"][k]), k


def test_a_finetune_starts_from_the_parents_average():
    from bench.finetune import load_initial_weights

    model, loss = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    avg = {k: torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    ckpt = {"model": model.state_dict(), "ema": avg, "loss": loss.state_dict()}
    load_initial_weights(model, loss, "parent/best.pt", ckpt)
    assert all(torch.equal(v, avg[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bad", ["1", "1.5", "-0.1"])
def test_a_decay_outside_zero_to_one_is_refused(bad):
    with pytest.raises(BenchError, match=r"train.ema_decay must be in \[0, 1\)"):
        tiny_config(**{"train.ema_decay": bad})
