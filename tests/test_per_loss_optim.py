"""[optim.per_loss.<loss>]: one loss's own optimiser values in a preset, with the loss parameters' precedence."""

from __future__ import annotations

import pytest

from bench.config import load_config
from bench.errors import BenchError
from bench.runner.experiment import run_config

LOSSES = ["aam", "aamsupcon"]


def _lr(cfg, loss: str) -> float:
    return run_config(cfg, loss, 0, LOSSES).optim.lr


def _file(tmp_path, text: str):
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


def test_a_loss_table_changes_that_loss_only_and_runs_record_the_applied_values(tmp_path):
    shared = load_config(preset="demo").optim
    f = _file(tmp_path, "[optim.per_loss.aam]\nlr = 0.003\nweight_decay = 0\n")
    cfg = load_config(preset="demo", file=f)
    aam = run_config(cfg, "aam", 0, LOSSES)
    assert (aam.optim.lr, aam.optim.weight_decay, aam.optim.per_loss) == (0.003, 0.0, {})
    assert isinstance(aam.optim.weight_decay, float)  # coerced as --set does
    assert aam.optim.optimizer == shared.optimizer and aam.optim.warmup_epochs == shared.warmup_epochs
    other = run_config(cfg, "softmax", 0, LOSSES).optim  # no per-loss table in the preset either
    assert (other.lr, other.weight_decay) == (shared.lr, shared.weight_decay)


def test_typed_shared_value_beats_a_file_per_loss_value_and_a_typed_per_loss_value_beats_both(tmp_path):
    f = _file(tmp_path, "[optim.per_loss.aam]\nlr = 0.003\n")
    assert _lr(load_config(preset="demo", file=f), "aam") == 0.003
    # the user asked for lr 0.02 for every loss: the file's per-loss value does not silently win
    typed = load_config(preset="demo", file=f, overrides=["optim.lr=0.02"])
    assert _lr(typed, "aam") == 0.02 and _lr(typed, "aamsupcon") == 0.02
    own = load_config(preset="demo", file=f, overrides=["optim.lr=0.02", "optim.per_loss.aam.lr=0.007"])
    assert _lr(own, "aam") == 0.007 and _lr(own, "aamsupcon") == 0.02
    # a typed shared value of another key leaves the file's lr alone
    assert _lr(load_config(preset="demo", file=f, overrides=["optim.weight_decay=0.001"]), "aam") == 0.003


@pytest.mark.parametrize(
    "sets, message",
    [
        (["optim.per_loss.aam.lrate=0.1"], r"optim.per_loss.aam: unknown key 'lrate' \(did you mean 'lr'\?\)"),
        (["optim.per_loss.aam.lr=-1"], r"optim.per_loss.aam.lr must be > 0, got -1"),
        (["optim.per_loss.aam.gamma=1.5"], r"optim.per_loss.aam.gamma must be in \(0, 1\], got 1.5"),
        (["optim.per_loss.aam.lr=abc"], r"optim.per_loss.aam.lr"),
        (["optim.per_loss.aamm.lr=0.1"], r"unknown loss 'aamm' \(did you mean 'aam'\?\)"),
        (["optim.per_loss.aam=3"], r"config.optim.per_loss.aam: expected a table of optim settings"),
        (
            ["optim.min_lr=0.001", "optim.per_loss.aam.lr=0.0005"],
            r"optim.per_loss.aam: optim.min_lr must be <= optim.lr",
        ),
    ],
)
def test_bad_per_loss_optim_tables_are_user_errors(sets, message):
    cfg = load_config(preset="demo", overrides=sets)
    # every table is checked whichever loss runs (as [loss.per_loss.*] is), before anything trains
    for loss in LOSSES:
        with pytest.raises(BenchError, match=message):
            run_config(cfg, loss, 0, LOSSES)


def test_bench_run_refuses_a_bad_per_loss_lr_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    args = ["run", "--preset", "demo", "--losses", "aam", "--set", "optim.per_loss.aam.lr=0", "--out", str(tmp_path)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "optim.per_loss.aam.lr must be > 0, got 0" in r.output, r.output
    assert not any(tmp_path.iterdir())
