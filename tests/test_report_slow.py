"""Slow `bench report` checks: figures, the HTML in headless Chromium, and runs made by the runner.

Chromium is optional: the screenshot test skips when no ``chromium`` / ``chromium-browser`` /
``google-chrome`` binary is on PATH (CI installs it with ``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.metrics import compute_metrics, det_curve
from bench.scoring import write_embeddings
from reports.build import Options, build
from tests.test_report import SYSTEMS, draw_scores, make_trials, write_run, write_trials

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """A complete report with every figure, from synthetic-score runs (see tests/test_report.py)."""
    root = tmp_path_factory.mktemp("runs")
    trials = make_trials()
    tpath = write_trials(root, *trials)
    for loss in ("base", "good"):
        sep, base_seed = SYSTEMS[loss]
        for seed in (0, 1):
            d = write_run(root, loss, seed, draw_scores(trials[2], sep, base_seed + seed), trials, tpath)
        # Test-utterance embeddings beside one run of each system give the optional 2-D map.
        rng = np.random.default_rng(base_seed)
        centres = rng.normal(size=(8, 16))
        ids = [f"test/id{k:05d}-vlog-01-{i:03d}" for k in range(8) for i in range(20)]
        write_embeddings(d / "embeddings.npz", ids, np.repeat(centres, 20, axis=0) + 0.3 * rng.normal(size=(160, 16)))
    return build([root / "exp"], tmp_path_factory.mktemp("rep") / "r", Options(n_boot=200))


def test_html_embeds_every_figure(full_report):
    out, rep = full_report
    names = [f.name for s in rep.sections for f in s.figures]
    from reports.build import FIGURES

    # every registered figure is drawn for this fixture (it has genres, training logs and embeddings)
    assert {n.split("-")[0] for n in names} == set(FIGURES) == {"det", "scores", "training", "genre", "embeddings"}
    html = (out / "report.html").read_text()
    embedded = re.findall(r'<img class="report-figure" alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(names)
    for name, data in zip(names, embedded):
        assert base64.b64decode(data) == (out / "figures" / f"{name}.png").read_bytes()
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert not re.search(r'src="(?!data:)', html)  # nothing is loaded from outside the file
    md = (out / "report.md").read_text()
    for name in names:
        assert f"](figures/{name}.png)" in md and (out / "figures" / f"{name}.png").exists()


def test_det_figure_has_probit_axes_with_percent_ticks(tmp_path):
    from reports.figures import det_figure

    labels = make_trials()[2]
    curves = []
    for name, sep in (("a", 1.5), ("b", 3.0)):
        s = draw_scores(labels, sep, 1)
        fpr, fnr = det_curve(s, labels)
        eer = compute_metrics(s, labels)["eer"]
        curves.append({"label": name, "fpr": fpr, "fnr": fnr, "eer": eer, "dcf_point": (0.0, 0.5), "p_target": 0.01})
    f = det_figure(curves, tmp_path, "det", "DET")
    svg = f.svg.read_text()
    assert "False acceptance rate (%)" in svg and f.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tick in ("0.1", "1", "10", "40"):
        assert f"<!-- {tick} -->" in svg  # matplotlib writes each tick label's text as a comment


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_html_renders_every_figure_in_headless_chromium(full_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium on PATH (apt-get install -y chromium)")
    out, rep = full_report
    n_fig = sum(len(s.figures) for s in rep.sections)
    # A copy of the page with a probe that, once everything has loaded, records how many figures
    # decoded to a real bitmap; --dump-dom prints the DOM after the load event.
    probe = (
        "<script>window.addEventListener('load',()=>{const ok=[...document.querySelectorAll('img.report-figure')]"
        ".filter(i=>i.complete&&i.naturalWidth>100&&i.getBoundingClientRect().width>100).length;"
        "document.body.setAttribute('data-figures-ok',ok);});</script></body>"
    )
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", probe))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=5000", "--window-size=1280,6000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures-ok="(\d+)"', dom.stdout)
    assert m, f"chromium printed no DOM: {dom.stderr[-2000:]}"
    assert int(m.group(1)) == n_fig
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    # A rendered figure has many distinct colours; a page of text and tables only has a few.
    colours = np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 500


def test_report_from_runs_made_by_the_runner(tmp_path):
    """Two losses x two seeds trained for a few steps by the real runner, then `bench report`."""
    from bench.runner import experiment
    from tests.runner_helpers import fake_loader, make_corpus, tiny_config

    corpus = make_corpus(tmp_path / "cn1")
    cfg = tiny_config(**{"experiment": "rep", "train.epochs": 2})
    outcomes = experiment.run_experiment(cfg, ["aam", "supcon"], [0, 1], tmp_path / "runs", corpus=corpus,
                                         loader_fn=fake_loader)  # fmt: skip
    assert [o.action for o in outcomes] == ["trained"] * 4
    res = CliRunner().invoke(
        app, ["report", str(tmp_path / "runs" / "rep"), "--out", str(tmp_path / "rep"), "--n-boot", "200", "--json"]
    )
    assert res.exit_code == 0, res.output
    table = {r["system"]: r for r in json.loads(res.stdout)}
    assert set(table) == {"aam", "supcon"}
    for loss in ("aam", "supcon"):
        recorded = [
            json.loads((tmp_path / "runs" / "rep" / loss / f"seed{s}" / "metrics.json").read_text())["overall"]
            for s in (0, 1)
        ]
        assert table[loss]["seeds"] == [0, 1]
        assert table[loss]["eer"]["per_seed"] == pytest.approx([r["eer"] for r in recorded], abs=1e-9)
        assert table[loss]["mindcf@0.01"]["mean"] == pytest.approx(np.mean([r["mindcf@0.01"] for r in recorded]))
    out = tmp_path / "rep"
    assert {"report.md", "report.html", "table.csv", "table.tex", "pairwise.csv"} <= {p.name for p in out.iterdir()}
    html = (out / "report.html").read_text()
    assert html.count('class="report-figure"') == len(json.loads((out / "report.json").read_text())["figures"]) >= 3
    assert "cnceleb" in html and "concat" in html
