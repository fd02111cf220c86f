"""Reports: the converged column, budgets, and verdicts withheld between runs that did not converge."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.io import atomic_write_json
from reports.build import Options, build
from tests.test_report import draw_scores, make_trials, write_run, write_trials

# loss -> (score separation, rng seed, converged per seed (None: not recorded), epochs per seed)
SYSTEMS = {
    "base": (1.5, 100, (True, True), (7, 9)),
    "twin": (1.5, 100, (True, True), (7, 9)),
    "good": (3.0, 300, (False, False), (20, 20)),  # clearly better, but still improving at its budget
    "half": (3.0, 400, (True, False), (12, 20)),
    "old": (3.0, 500, (None, None), (None, None)),  # written before runs recorded convergence
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    trials = make_trials()
    tpath = write_trials(root, *trials)
    for loss, (sep, base_seed, conv, epochs) in SYSTEMS.items():
        for seed in (0, 1):
            d = write_run(root, loss, seed, draw_scores(trials[2], sep, base_seed + seed), trials, tpath)
            if conv[seed] is None:
                continue
            m = json.loads((d / "metrics.json").read_text())
            m.update(converged=conv[seed], epochs=epochs[seed], max_epochs=20, steps=15 * epochs[seed],
                     samples_seen=480 * epochs[seed], best_epoch=epochs[seed] - 3 * conv[seed])  # fmt: skip
            if loss == "twin":  # trained under the plateau schedule: its lr was cut
                m["lr_reductions"] = 1 + seed
            atomic_write_json(d / "metrics.json", m)
    return root


def _build(root, tmp_path, **kw):
    _, rep = build([root / "exp"], tmp_path / "r", Options(n_boot=200, figures=False, **kw))
    (sec,) = rep.sections
    pairs = {frozenset((p.system_a, p.system_b)): p for p in sec.pairwise.itertuples()}
    return sec.table.set_index("system"), pairs, tmp_path / "r"


def test_verdicts_are_withheld_where_a_system_did_not_converge(root, tmp_path):
    table, pairs, out = _build(root, tmp_path)
    assert table["converged_text"].to_dict() == {
        "base": "yes", "twin": "yes", "good": "no", "half": "1/2 seeds", "old": "unknown"
    }  # fmt: skip
    assert table.loc["base", "budget"] == "epochs 7–9 of 20, 105–135 steps, 3,360–4,320 samples"
    assert table.loc["twin", "budget"].endswith(" samples, 1–2 lr cuts")
    assert table.loc["good", "epochs_mean"] == 20 and table.loc["good", "converged"] == False  # noqa: E712
    for a, b in (("base", "good"), ("twin", "half"), ("good", "half"), ("good", "old")):
        p = pairs[frozenset((a, b))]
        assert p.verdict == "not converged"
        assert p.p_value == p.p_value and p.low <= p.diff <= p.high  # the numbers are still reported
    assert pairs[frozenset(("base", "twin"))].verdict == "no significant difference"
    assert pairs[frozenset(("base", "old"))].verdict == "old better"  # unknown convergence: verdict kept
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, html):
        assert "Converged" in text and "not converged" in text and "epochs 20 of 20" in text
    tex = (out / "table.tex").read_text()
    assert "Converged" in tex and next(ln for ln in tex.splitlines() if ln.startswith("half &")).endswith(
        r"1/2 seeds \\"
    )
    csv = pd.read_csv(out / "table.csv").set_index("system")
    assert csv.loc["base", "steps_mean"] == 120
    marker = json.loads((out / "report.json").read_text())
    rec = {r["system"]: r for r in marker["table"]}
    assert rec["base"]["converged"] is True and rec["good"]["converged"] is False and rec["old"]["converged"] is None


def test_equal_budget_keeps_the_verdicts_and_states_each_budget(root, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(root / "exp"),
            "--out",
            str(tmp_path / "o"),
            "--no-figures",
            "--n-boot",
            "200",
            "--equal-budget",
            "--format",
            "md",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    assert "good better" in res.output and "not converged →" not in res.output
    assert "good: converged no; epochs 20 of 20, 300 steps, 9,600 samples" in res.output
    md = (tmp_path / "o" / "report.md").read_text()
    assert "Equal-budget comparison" in md and "not converged" not in md.split("### Pairwise")[1].split("###")[0]
    plain = CliRunner().invoke(app, ["report", str(root / "exp"), "--out", str(tmp_path / "p"), "--no-figures",
                                     "--n-boot", "200", "--format", "md"])  # fmt: skip
    assert "base vs good" in plain.output and "→ not converged" in plain.output


def test_a_system_that_was_not_trained_reads_not_trained_and_gates_nothing():
    from types import SimpleNamespace

    from bench.results import NON_LEARNED
    from reports.collect import System
    from reports.convergence import add_columns, gate_verdicts

    baseline = System(("mfcc-baseline", "none", NON_LEARNED, "real"), [SimpleNamespace(training={}, seed=0)], "b")
    model = System(("aam", "tiny", "synthetic", "real"),
                   [SimpleNamespace(training={"converged": True, "epochs": 5, "steps": 50, "samples_seen": 10,
                                              "max_epochs": 5}, seed=0)], "m")  # fmt: skip
    table = add_columns(pd.DataFrame({"system": ["b", "m"]}), [baseline, model])
    assert list(table["converged_text"]) == ["not trained", "yes"]
    pairs = pd.DataFrame({"system_a": ["m"], "system_b": ["b"], "verdict": ["m better"]})
    assert gate_verdicts(pairs, table)["verdict"].tolist() == ["m better"]


def test_budget_text_counts_lr_cuts_in_words():
    from reports.convergence import budget_text

    base = {"epochs": [14, 17], "max_epochs": 24, "steps": [700, 850], "samples_seen": [22400, 27200]}
    assert budget_text({**base, "lr_reductions": [1, 1]}).endswith("27,200 samples, 1 lr cut")
    assert budget_text({**base, "lr_reductions": [1, 2]}).endswith(", 1–2 lr cuts")
    assert budget_text({**base, "lr_reductions": [0, 0]}).endswith("27,200 samples")
