"""End to end through the CLI: a demo-preset run, its `--finetune lm` run, and one report with both
systems and their calibrated actDCF and Cllr (tiny-model overrides, the real loader, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.test_runner_cli import CLI_SETS

pytestmark = pytest.mark.slow


def _run(root: Path, out: Path, *extra: str) -> dict:
    argv = ["run", "--preset", "demo", "--losses", "aam,softmax", "--experiment", "ft", "--out", str(out)]
    argv += ["--corpus", f"cnceleb:{root}", "--json", *extra]
    for s in [*CLI_SETS, "eval.untrained=false"]:
        argv += ["--set", s]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{") :])


def test_run_finetune_and_report_with_calibrated_costs(tmp_path):
    from bench.data.fixtures import write_cnceleb1

    root = tmp_path / "cn1"
    write_cnceleb1(root, train_speakers=6, utts=4, eval_speakers=3, test_utts=2, val_speakers=3, seed=0)
    out = tmp_path / "runs"
    first = _run(root, out)
    assert [r["action"] for r in first["runs"]] == ["trained", "trained"]

    # softmax has no margin: refused before anything is read or trained
    argv = ["run", "--preset", "demo", "--losses", "aam,softmax", "--finetune", "lm", "--experiment", "ft"]
    res = CliRunner().invoke(app, [*argv, "--out", str(out), "--corpus", f"cnceleb:{root}"])
    assert res.exit_code == 2 and "'softmax' has no margin" in res.output

    tuned = _run_ft(root, out)
    (run,) = tuned["runs"]
    assert run["loss"] == "aam+lm" and run["action"] == "trained"
    rd = out / "ft" / "aam+lm" / "seed0"
    assert json.loads((rd / "run.json").read_text())["parent"] == str(out / "ft" / "aam" / "seed0")

    rep = tmp_path / "report"
    res = CliRunner().invoke(app, ["report", str(out / "ft"), "--out", str(rep), "--n-boot", "50", "--no-figures"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(rep / "table.csv").set_index("system")
    assert set(table.index) == {"aam", "aam+lm", "softmax"}
    for system in table.index:
        m = json.loads((out / "ft" / system / "seed0" / "metrics.json").read_text())["calibration"]["overall"]
        assert table.loc[system, "cal_actdcf@0.01_mean"] == pytest.approx(m["actdcf@0.01"], rel=1e-5)
        assert table.loc[system, "cal_cllr_mean"] == pytest.approx(m["cllr"], rel=1e-5)
        assert not math.isnan(table.loc[system, "min_cllr_mean"])
    md = (rep / "report.md").read_text()
    assert "| aam+lm |" in md and "actDCF@0.01 (cal.)" in md and "Cllr (cal.)" in md
    assert "no meaningful actDCF or Cllr" in md and "linear (prior 0.01): 3 runs" in md


def _run_ft(root: Path, out: Path) -> dict:
    argv = ["run", "--preset", "demo", "--losses", "aam", "--finetune", "lm", "--experiment", "ft"]
    argv += ["--out", str(out), "--corpus", f"cnceleb:{root}", "--json"]
    for s in [*CLI_SETS, "eval.untrained=false", "finetune.params.crop_seconds=1.0"]:
        argv += ["--set", s]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{") :])
