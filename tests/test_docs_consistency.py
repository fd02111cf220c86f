"""README and help say what the code does (issue 17): the demo's corpus, seeds and budget, the
genre count of the synthetic corpus and the name of the non-learned baseline."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config
from bench.data.prepare import DEMO_PRESETS, corpus_config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _one(pattern: str) -> re.Match:
    pattern = pattern.replace(" ", r"\s+")  # README lines wrap anywhere
    found = re.findall(pattern, README)
    assert found, f"README has no match for {pattern!r}"
    m = re.search(pattern, README)
    assert m is not None
    return m


def test_readme_states_the_demo_corpus_seeds_and_budget_the_code_uses():
    from bench.commands.demo import DEMO_SEEDS

    cc = corpus_config("demo")
    m = _one(r"(\d+) training \+ (\d+) validation \+ (\d+) evaluation speakers")
    assert tuple(int(x) for x in m.groups()) == (cc.train_speakers, cc.val_speakers, cc.eval_speakers)
    assert f"`{DEMO_PRESETS['demo'].data}`" in README
    assert int(_one(r"with (\d+) seeds each").group(1)) == len(DEMO_SEEDS)
    trains = _one(r"trains ((?:`\w+`(?:, | and )?)+) with \d+ seeds each").group(1)
    assert tuple(re.findall(r"`(\w+)`", trains)) == DEMO_PRESETS["demo"].losses
    cfg = load_config(preset=DEMO_PRESETS["demo"].config)
    m = _one(r"at most (\d+) epochs of (\d+) steps")
    assert (int(m.group(1)), int(m.group(2))) == (cfg.train.epochs, cfg.train.steps_per_epoch)
    m = _one(r"patience (\d+), min_delta ([\d.]+)")
    assert (int(m.group(1)), float(m.group(2))) == (cfg.train.patience, cfg.train.min_delta)


def test_readme_states_the_genre_count_and_the_baseline_name():
    from bench.synth.baseline import METHOD
    from bench.synth.channels import GENRES

    assert int(_one(r"in (\d+) CN-Celeb-like genres").group(1)) == len(GENRES)
    assert "six genres" not in README and "log-mel + cosine baseline" not in README
    name = METHOD.split()[0]  # e.g. "MFCC"
    assert f"{name} baseline" in README
    help_text = CliRunner().invoke(app, ["data", "synth", "--help"], terminal_width=200).output
    assert f"{name} baseline" in help_text


def test_demo_help_quotes_no_number_the_presets_contradict():
    help_text = CliRunner().invoke(app, ["demo", "--help"], terminal_width=200).output
    cfg = load_config(preset=DEMO_PRESETS["demo"].config)
    for m in re.finditer(r"(\d+) epochs", help_text):
        assert int(m.group(1)) == cfg.train.epochs, m.group(0)
