"""The reference recipe exercised end to end: `bench run --preset reference` with only its sizes reduced.

As SpeechBrain smoke-tests its recipes, this runs bench/presets/reference.toml (AAM-SupCon on ECAPA-TDNN,
5 views: reverb, babble, music, noise, clean, drawn from MUSAN/RIR-layout banks; SGD with exponential
decay; CN-Celeb layout) on a tiny CN-Celeb-layout corpus, with the widths, batch, corpus and epochs
shrunk, then builds its report. The test checks that nothing but sizes was changed.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config, resolve, to_dict

# Everything the test may change in the preset: sizes, plus where the data is and (CPU only) the precision.
SIZES = {
    "data.root": None,  # the tiny corpus below
    "data.workers": 0,
    "data.speakers_per_batch": 4,
    "model.params.channels": 32,
    "model.params.mfa_channels": 96,
    "model.params.attention_channels": 16,
    "model.params.se_channels": 16,
    "train.epochs": 1,
    "train.steps_per_epoch": 2,
    "eval.batch_size": 4,
    "train.log_every": 1,  # not a size: so that the 2 steps are logged
}
CPU_ONLY = {"train.amp": "none", "train.device": "cpu"}  # bf16 autocast is a GPU setting in this toolkit


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow
def test_reference_preset_runs_end_to_end_with_only_sizes_reduced(tmp_path):
    from bench.data.fixtures import write_cnceleb1, write_musan_rirs

    data = tmp_path / "cnceleb"
    write_cnceleb1(data, train_speakers=6, utts=3, eval_speakers=3, test_utts=2, val_speakers=3,
                   seconds=(2.0, 2.5))  # fmt: skip
    write_musan_rirs(data, files=2, seconds=2.0)  # <root>/musan and <root>/rirs, the preset's defaults
    sets = {**SIZES, "data.root": str(data)}
    if not torch.cuda.is_available():
        sets.update(CPU_ONLY)
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, str) else v}")]

    # Only the sizes differ from the preset as shipped.
    shipped = _flat(to_dict(resolve(load_config(preset="reference"))))
    ours = _flat(to_dict(resolve(load_config(preset="reference", overrides=[f"{k}={v}" for k, v in sets.items()]))))
    assert {k for k in shipped if shipped[k] != ours[k]} <= set(sets)
    assert ours["data.view_types"] == ["reverb", "babble", "music", "noise", "clean"] and ours["data.views"] == 5
    assert ours["loss.name"] == "aamsupcon" and ours["optim.optimizer"] == "sgd" and ours["model.backbone"] == "ecapa"

    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["run", "--preset", "reference", "--out", str(runs), "--json", *args])
    assert res.exit_code == 0, res.output
    rd = runs / "reference" / "aamsupcon" / "seed0"
    run, metrics = json.loads((rd / "run.json").read_text()), json.loads((rd / "metrics.json").read_text())
    assert run["status"] == "finished" and run["steps"] == 2 and run["samples_seen"] == 2 * 4 * 2
    assert metrics["corpus"] == "cnceleb" and metrics["enroll_mode"] == "concat"
    assert 0 <= metrics["overall"]["eer"] <= 100 and metrics["trials"]["n"] > 0
    assert metrics["converged"] is False  # one epoch is no plateau: the report must not give it a verdict
    parts = (rd / "train_log.csv").read_text().splitlines()[0]
    assert "part_supcon" in parts and "part_aam" in parts  # both terms of the objective were trained

    report = tmp_path / "report"
    rep = CliRunner().invoke(app, ["report", str(runs / "reference"), "--out", str(report), "--n-boot", "20"])
    assert rep.exit_code == 0, rep.output
    assert "aamsupcon" in (report / "report.md").read_text()
