"""End to end through the CLI: train on a synthetic demo corpus, evaluate on another corpus, report both.

Both corpora come from ``bench data synth`` (eSpeak NG voices) with different seeds, so the second
one's speakers are voices the model never heard; it is read with the plain CN-Celeb reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.runner_helpers import TINY_MODEL

pytestmark = pytest.mark.slow

TINY = [
    *TINY_MODEL,
    "data.crop_seconds=1.0",
    "data.speakers_per_batch=4",
    "data.workers=0",
    "train.epochs=1",
    "train.steps_per_epoch=3",
    "train.device=cpu",
    "eval.untrained=false",
]


def cli(*args: object) -> dict:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout) if "--json" in args else {}


def synth(out: Path, speakers: int, seed: int) -> Path:
    cli(
        "data",
        "synth",
        "--out",
        out,
        "--speakers",
        speakers,
        "--utts",
        3,
        "--min-seconds",
        1,
        "--max-seconds",
        1.5,
        "--seed",
        seed,
        "--workers",
        1,
        "--json",
    )
    return out


def test_train_on_demo_evaluate_on_cnceleb_layout_and_report_both(tmp_path):
    demo = synth(tmp_path / "synth-demo", 4, 0)
    other = synth(tmp_path / "cn-other", 3, 11)
    sets = [x for s in TINY for x in ("--set", s)]
    summary = cli(
        "run",
        "--preset",
        "demo",
        "--corpus",
        f"synthetic:{demo}",
        "--losses",
        "aam",
        "--seeds",
        "0",
        "--experiment",
        "xc",
        "--out",
        tmp_path / "runs",
        *sets,
        "--json",
    )
    run = Path(summary["runs"][0]["run_dir"])

    ev = cli("eval", run, "--corpus", other, "--corpus-type", "cnceleb", "--json")
    assert Path(ev["eval_dir"]) == run / "eval" / "cnceleb"
    assert (ev["train_corpus"], ev["eval_corpus"]) == ("synthetic", "cnceleb")
    assert ev["per_genre"] and 0.0 <= ev["overall"]["eer"] <= 100.0

    out = tmp_path / "report"
    cli(
        "report", tmp_path / "runs" / "xc", "--out", out, "--format", "md,csv", "--n-boot", 20, "--no-figures", "--json"
    )
    md = next(out.glob("*.md")).read_text()
    assert "synthetic -> cnceleb" in md  # the cross-corpus system is labelled as such
    own = json.loads((run / "metrics.json").read_text())["overall"]["eer"]
    cross = ev["overall"]["eer"]
    assert f"{own:.2f}" in md and f"{cross:.2f}" in md
