"""Config errors name the file and line that set the value (bench/config_origin.py), before any data."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config
from bench.config_origin import Origins, key_lines
from bench.errors import BenchError

runner = CliRunner()


def test_key_lines_reads_headers_keys_dotted_keys_and_skips_strings():
    text = (
        "experiment = 'x'\n"  # 1
        "[train]\n"  # 2
        "epochs = 3  # a comment\n"  # 3
        'note = """\n'  # 4
        "fake = 1\n"  # 5: inside a multi-line string
        '"""\n'  # 6
        "[loss.per_loss.aam]\n"  # 7
        "scale = 8\n"  # 8
        "optim.lr = 0.1\n"  # 9: dotted key inside a table
        "[ 'model' . params ]\n"  # 10
        "channels = 4\n"  # 11
    )
    lines = key_lines(text)
    assert lines["experiment"] == 1 and lines["train"] == 2 and lines["train.epochs"] == 3
    assert "train.fake" not in lines and lines["train.note"] == 4
    assert lines["loss.per_loss.aam.scale"] == 8 and lines["loss.per_loss.aam.optim.lr"] == 9
    assert lines["model.params.channels"] == 11


def _write(tmp_path, text):
    p = tmp_path / "my.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[train]\nepochs = 2\npatience = -1\n", 3, "train.patience must be >= 1, got -1"),
        ("[train]\n\npatience = 'x'\n", 3, "config.train.patience: expected an integer"),
        ("[train]\npatiense = 3\n", 2, "unknown parameter 'patiense' (did you mean 'patience'?)"),
        ("[data]\ncrop_seconds = 0.01\n", 2, "data.crop_seconds must be"),
        ("[optim]\nscheduler = 'cosine'\nmax_reductions = 3\n", 3, "optim.max_reductions has no effect without"),
    ],
)
def test_out_of_range_values_in_a_config_file_name_its_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(BenchError) as e:
        load_config(preset="demo", file=path)
    assert e.value.path == str(path) and e.value.line == line
    assert message in e.value.message
    assert str(e.value).startswith(f"{path}:{line}: ")


def test_a_value_typed_with_set_is_named_by_its_key_not_by_a_file(tmp_path):
    path = _write(tmp_path, "[train]\npatience = 2\n")
    with pytest.raises(BenchError) as e:
        load_config(preset="demo", file=path, overrides=["train.patience=-4"])
    assert e.value.path is None and e.value.message == "train.patience must be >= 1, got -4"


def test_a_preset_value_made_inert_by_a_user_setting_is_not_refused(tmp_path):
    # the demo preset sets optim.max_reductions for its plateau schedule; another schedule must stay usable
    cfg = load_config(preset="demo", overrides=["optim.scheduler=cosine"])
    assert cfg.optim.scheduler == "cosine"
    with pytest.raises(BenchError, match="optim.momentum has no effect without optim.optimizer = 'sgd'"):
        load_config(preset="demo", overrides=["optim.momentum=0.5"])
    assert load_config(overrides=["optim.momentum=0.5"]).optim.momentum == 0.5  # the default optimiser is sgd


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[loss.per_loss.aam]\nscale = 8\nmargin = -1\n", 3, "aam: margin must be in [0, pi/2)"),
        ("[loss]\nparams = {scale = -3}\n", 2, "scale must be > 0"),
        ("[optim.per_loss.aam]\n\nlr = -0.1\n", 3, "optim.per_loss.aam.lr must be > 0"),
        ("[optim.per_loss.aamsupcn]\nlr = 0.1\n", 1, "unknown loss 'aamsupcn' (did you mean 'aamsupcon'?)"),
    ],
)
def test_loss_and_per_loss_errors_of_bench_run_name_the_file_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    res = runner.invoke(app, ["run", "-c", str(path), "--losses", "aam", "--print-config"])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}: " in res.output and message in res.output
    res = runner.invoke(app, ["run", "-c", str(path), "--losses", "aam",
                              "--out", str(tmp_path / "runs")])  # fmt: skip
    assert res.exit_code == 2 and f"{path}:{line}: " in res.output and not (tmp_path / "runs").exists()


def test_locate_leaves_errors_it_cannot_place_unchanged():
    origins = Origins()
    err = BenchError("something without a key")
    assert origins.locate(err) is err
    located = BenchError("already placed", path="a.toml", line=3)
    assert origins.locate(located) is located


def test_print_config_refuses_a_repeated_loss(tmp_path):
    res = runner.invoke(app, ["run", "--preset", "demo", "--losses", "aam,aam", "--print-config"])
    assert res.exit_code == 2 and "--losses names aam more than once" in res.output
    assert res.output.count("[loss]") == 0
