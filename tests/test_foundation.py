"""Foundation: registry, typed configs with overrides, atomic writes and the CLI surface."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.config import ExperimentConfig, load_config, read_toml, to_dict, to_toml
from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json, provenance
from bench.registry import Registry, config_from_mapping

runner = CliRunner()


@dataclass
class _Cfg:
    scale: float = 30.0
    margin: float = 0.2
    views: list[int] = field(default_factory=lambda: [0])
    easy: bool = False

    def validate(self):
        if self.scale <= 0:
            raise BenchError("scale must be > 0")


def _registry() -> Registry:
    reg = Registry("thing")

    @reg.register("alpha", _Cfg, "first")
    class Alpha:
        def __init__(self, cfg, dim):
            self.cfg, self.dim = cfg, dim

    return reg


def test_registry_builds_with_coerced_params():
    reg = _registry()
    obj = reg.build("alpha", {"scale": "16", "views": "0,2", "easy": "true"}, 7)
    assert obj.cfg == _Cfg(scale=16.0, views=[0, 2], easy=True)
    assert obj.dim == 7
    assert [p[0] for p in reg.get("alpha").parameters()] == ["scale", "margin", "views", "easy"]


def test_registry_unknown_name_suggests_closest():
    with pytest.raises(BenchError, match="did you mean 'alpha'"):
        _registry().get("alpah")


def test_registry_rejects_unknown_param_and_bad_values():
    reg = _registry()
    with pytest.raises(BenchError, match="unknown parameter 'marign'.*did you mean 'margin'"):
        reg.make_config("alpha", {"marign": 0.1})
    with pytest.raises(BenchError, match="expected a number"):
        reg.make_config("alpha", {"scale": "abc"})
    with pytest.raises(BenchError, match="scale must be > 0"):
        reg.make_config("alpha", {"scale": -1})


def test_register_twice_is_an_error():
    reg = _registry()
    with pytest.raises(ValueError):
        reg.register("alpha", _Cfg)(object)


def test_config_overrides_and_presets():
    cfg = load_config(
        preset="demo", overrides=["train.epochs=7", "loss.params.margin=0.25", 'data.view_types=["clean"]']
    )
    assert cfg.train.epochs == 7
    assert cfg.loss.params["margin"] == 0.25  # beside the preset's own loss.params
    assert cfg.data.view_types == ["clean"]
    assert cfg.preset == "demo"
    ref = load_config(preset="reference")
    assert ref.optim.lr == 0.01 and ref.optim.gamma == 0.97 and ref.model.params["channels"] == 1024


def test_config_override_errors_are_clear():
    with pytest.raises(BenchError, match="unknown key 'epoch'.*did you mean 'epochs'"):
        load_config(overrides=["train.epoch=3"])
    with pytest.raises(BenchError, match="expected an integer"):
        load_config(overrides=["train.epochs=2.5"])
    with pytest.raises(BenchError, match="key=value"):
        load_config(overrides=["train.epochs"])
    with pytest.raises(BenchError, match="train.epochs must be >= 1"):
        load_config(overrides=["train.epochs=0"])


def test_toml_round_trip(tmp_path):
    cfg = load_config(preset="demo", overrides=["loss.params.margin=0.3"])
    p = tmp_path / "c.toml"
    p.write_text(to_toml(to_dict(cfg)))
    again = config_from_mapping(ExperimentConfig, read_toml(p))
    assert again == cfg


def test_bad_toml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nepochs = 3\nseed = = 1\n")
    with pytest.raises(BenchError) as e:
        read_toml(p)
    assert str(e.value).startswith(f"{p}:3:")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_json(p, {"a": 1})

    class Boom:
        def tolist(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_json(p, {"a": Boom()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]
    atomic_write(p, "x")
    assert p.read_text() == "x"


def test_provenance_has_versions_and_git():
    prov = provenance()
    assert prov["versions"]["torch"].startswith("2.11")
    assert "commit" in prov["git"]


def test_cli_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ["data", "run", "score", "report", "tune", "demo", "perf", "list"]:
        assert cmd in res.output


def test_list_losses_reads_registry():
    from losses import LOSSES

    res = runner.invoke(app, ["list", "losses", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == LOSSES.names()
    for r in rows:
        expected = [(n, d) for n, _, d in LOSSES.get(r["name"]).parameters()]
        assert [(p["name"], p["default"]) for p in r["parameters"]] == expected


def test_console_script_runs():
    exe = Path(sys.executable).parent / "bench"
    res = subprocess.run([str(exe), "list", "losses"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "softmax" in res.stdout


def test_atomic_write_honours_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "r.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.txt").stat().st_mode & 0o777 == 0o644


def test_disk_full_is_a_one_line_error(capsys):
    import errno

    import typer

    from bench.commands.common import handle_errors

    @handle_errors
    def writes():
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.json")

    with pytest.raises(typer.Exit) as e:
        writes()
    assert e.value.exit_code == 2
    err = capsys.readouterr().err
    assert "No space left on device writing runs/x/metrics.json" in err
