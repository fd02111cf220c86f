"""Every JSON the toolkit writes is strict RFC 8259: non-finite numbers are written as null.

tests/conftest.py also parses every ``*.json`` the whole suite leaves in its temporary folders with
a strict parser (``parse_constant`` refusing NaN / Infinity / -Infinity).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import NonStandardJSON, _refuse_constant, strict_json_problems

NASTY = {
    "nan": float("nan"),
    "inf": float("inf"),
    "neg": -math.inf,
    "np": np.float64("nan"),
    "np32": np.float32("inf"),
    "arr": np.array([1.0, np.nan, -np.inf]),
    "nested": [{"x": (float("nan"), 2)}],
    "ok": 0.5,
}
WANT = {
    "nan": None,
    "inf": None,
    "neg": None,
    "np": None,
    "np32": None,
    "arr": [1.0, None, None],
    "nested": [{"x": [None, 2]}],
    "ok": 0.5,
}


def strict(text: str):
    return json.loads(text, parse_constant=_refuse_constant)


def test_the_strict_parser_refuses_what_python_writes_by_default():
    with pytest.raises(NonStandardJSON):
        strict(json.dumps({"eer": float("nan")}))


def test_writer_and_console_output_write_non_finite_as_null(tmp_path, capsys):
    from bench.commands.common import print_json
    from bench.io import atomic_write_json, to_json

    assert strict(to_json(NASTY)) == WANT
    atomic_write_json(tmp_path / "m.json", NASTY)
    assert strict((tmp_path / "m.json").read_text()) == WANT
    print_json({**NASTY, "path": tmp_path})
    assert strict(capsys.readouterr().out) == {**WANT, "path": str(tmp_path)}


def test_run_metrics_with_non_finite_values_stay_strict(tmp_path):
    """metrics_of on scores with infinities (Cllr is infinite) through the run's writer."""
    from bench.io import atomic_write_json
    from bench.runner.evaluate import TrialScores, metrics_of

    scores = np.array([np.inf, 0.2, -np.inf, 0.1, 0.3, -0.2])
    labels = np.array([False, True, True, False, True, False])
    m = metrics_of(TrialScores(["a"] * 6, list("bcdefg"), scores, labels, ["g"] * 6), [0.01])
    assert any(isinstance(v, float) and not math.isfinite(v) for v in m["overall"].values())
    atomic_write_json(tmp_path / "metrics.json", m)
    assert strict_json_problems(tmp_path) == []
    back = strict((tmp_path / "metrics.json").read_text())
    assert [k for k, v in m["overall"].items() if isinstance(v, float) and not math.isfinite(v)] == [
        k for k, v in back["overall"].items() if v is None
    ]


def test_bench_score_json_output_is_strict(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    (tmp_path / "s.txt").write_text("a b inf 1\na c -inf 0\nd e 0.5 1\nd f 0.1 0\n")
    res = CliRunner().invoke(app, ["score", "--scores", str(tmp_path / "s.txt"), "--json"])
    assert res.exit_code == 0, res.output
    out = strict(res.stdout[res.stdout.index("{") :])
    assert "eer" in json.dumps(out)
