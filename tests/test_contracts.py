"""Contracts every registry entry keeps, parametrised over the registries themselves.

A backbone, corpus reader or metric added with its one registry line is picked up here without editing this
file (docs/ARCHITECTURE.md, "How to add ..."). Losses have the same in tests/test_losses.py and
tests/test_losses_zoo.py (parametrised over ``LOSSES.names()``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.corpus import CORPORA
from bench.errors import BenchError
from bench.metrics import METRIC_TABLE
from models import BACKBONES, build_model
from models.config import ModelConfig

# Registered here at import time (before any test module can add a test-only entry).
BACKBONE_NAMES = BACKBONES.names()
CORPUS_NAMES = sorted(CORPORA)
METRIC_NAMES = METRIC_TABLE.names()


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_every_backbone_builds_from_its_defaults_and_maps_waves_to_embeddings(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name)).eval()
    entry = BACKBONES.get(name)
    cfg = BACKBONES.make_config(name, {})
    assert entry.summary and model.embed_dim > 0
    # the listing's count is the built module's count
    assert entry.cls.count_parameters(cfg) == sum(p.numel() for p in model.backbone.parameters())
    wave = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        emb = model(wave, torch.tensor([8000, 6000]))
    assert emb.shape == (2, model.embed_dim) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    assert not torch.allclose(emb[0], emb[1])  # the two utterances differ, so must their embeddings


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_every_corpus_reader_has_a_summary_and_a_detector_that_refuses_an_empty_folder(name, tmp_path):
    entry = CORPORA[name]
    assert isinstance(entry.summary, str) and entry.summary.strip()
    assert entry.detect(tmp_path) == 0
    (tmp_path / "stray.txt").write_text("not a corpus\n")
    assert entry.detect(tmp_path) == 0


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_every_corpus_reader_refuses_an_empty_folder_with_a_bench_error(name, tmp_path):
    from bench.config import DataConfig
    from bench.data.corpus import load_corpus

    with pytest.raises(BenchError):
        load_corpus(DataConfig(corpus=name, root=str(tmp_path)))


def _separated_and_chance_scores():
    """A separated system whose scores are true LLRs (targets ~ N(1.5, 1), non-targets ~ N(-1.5, 1),
    LLR = 3x) and a chance system (scores independent of the labels), on the same 600 trials."""
    rng = np.random.default_rng(0)
    labels = np.arange(600) < 200
    x = np.where(labels, rng.normal(1.5, 1, 600), rng.normal(-1.5, 1, 600))
    return 3 * x, rng.normal(0, 1, 600), labels


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_metric_row_is_computed_by_its_definition_labelled_and_oriented(name):
    """Each row of bench.metrics.METRIC_TABLE: compute_metrics returns its keys exactly when the row
    says (``when``) and with the value of its definition (``point``: the shared-curve fast path must
    agree), whatever the trial order; a well-separated system beats chance in the row's direction; it
    has a label and digits; it is bootstrappable exactly when the bootstrap engine resamples it, and
    the engine's point estimate is the table's value."""
    from bench.bootstrap import replicates
    from bench.bootstrap_counts import _parse_metric
    from bench.metrics import METRIC_TABLE, compute_metrics

    row = METRIC_TABLE.get(name)
    good, chance, labels = _separated_and_chance_scores()
    perm = np.random.default_rng(1).permutation(labels.size)
    pts = (0.01, 0.05)
    everything = compute_metrics(good, labels, pts, llr=True, on_request=True)
    shuffled = compute_metrics(good[perm], labels[perm], pts, llr=True, on_request=True)
    at_chance = compute_metrics(chance, labels, pts, llr=True, on_request=True)
    plain = compute_metrics(good, labels, pts)
    with_llr = compute_metrics(good, labels, pts, llr=True)
    for p in pts if row.per_prior else (None,):
        key = row.key(p)
        args = () if p is None else (p,)
        assert everything[key] == pytest.approx(row.point(good, labels, *args), rel=1e-12, abs=1e-12), key
        assert shuffled[key] == pytest.approx(everything[key], rel=1e-12, abs=1e-12), key
        assert (key in plain) == (row.when == "always"), key
        assert (key in with_llr) == (row.when in ("always", "llr")), key
        if row.lower_is_better:
            assert everything[key] < at_chance[key], key
        else:
            assert everything[key] > at_chance[key], key
        resolved = METRIC_TABLE.resolve(key)
        assert resolved.metric is row and resolved.p == p and resolved.label.strip(), key
        assert 0 <= resolved.digits <= 6 and 0 <= row.cli_digits <= 6
        if row.bootstrap:
            groups = np.arange(labels.size) % 30
            reps = replicates(good, labels, groups, [key], n_boot=20, seed=0)
            assert reps.point[key] == pytest.approx(everything[key], rel=1e-12, abs=1e-12), key
            assert reps.values[key].shape == (20,)
        else:
            with pytest.raises(ValueError):
                _parse_metric(key)  # the engine does not resample it; reports give it no interval


def test_every_report_column_resolves_to_a_table_row_with_a_source():
    """reports.stats.METRICS (the report's columns) comes from the table's ``report`` keys: each
    resolves to its row, has a distinct label, and is a key of compute_metrics (``cal_<key>``: of the
    calibrated scores' dict, ``llr=True``); bootstrappable columns are raw-score bootstrap rows."""
    from bench.metric_table import CALIBRATED_PREFIX
    from bench.metrics import METRIC_TABLE, compute_metrics
    from reports.stats import METRICS, bootstrappable, metric_label, p_targets_of

    good, _, labels = _separated_and_chance_scores()
    plain = compute_metrics(good, labels, p_targets=p_targets_of(list(METRICS)))
    calibrated = compute_metrics(good, labels, p_targets=(0.01, 0.05), llr=True)
    assert METRICS and len({metric_label(m) for m in METRICS}) == len(METRICS)
    for m in METRICS:
        resolved = METRIC_TABLE.resolve(m)
        assert m in resolved.metric.report
        if m.startswith(CALIBRATED_PREFIX):
            assert resolved.calibrated and m[len(CALIBRATED_PREFIX) :] in calibrated, m
        else:
            assert m in plain, f"{m}: not a key of bench.metrics.compute_metrics"
        assert bootstrappable(m) == (resolved.metric.bootstrap and not resolved.calibrated)


def _auc(scores, labels) -> float:
    """Area under the ROC curve, P(target score > non-target score) + P(tie) / 2 (Mann-Whitney)."""
    from scipy.stats import rankdata

    s, lab = np.asarray(scores, float), np.asarray(labels, bool)
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    return float((rankdata(s)[lab].sum() - n_tar * (n_tar + 1) / 2) / (n_tar * n_non))


@pytest.fixture
def auc_row(monkeypatch):
    """A higher-is-better metric added to the table the way a new one is: one row and its function
    (restored after the test, so other tests see the real table)."""
    from bench.metric_table import Metric
    from bench.metrics import METRIC_TABLE

    monkeypatch.setattr(METRIC_TABLE, "_rows", list(METRIC_TABLE._rows))
    monkeypatch.setattr(METRIC_TABLE, "_by_name", dict(METRIC_TABLE._by_name))
    return METRIC_TABLE.add(Metric("auc", "AUC", 4, _auc, lower_is_better=False, report=("auc",), cli_label="AUC"))


def test_a_new_table_row_reaches_compute_metrics_the_report_and_bench_score(auc_row, tmp_path):
    """One row is all a metric needs: compute_metrics returns it (checked against scikit-learn), the
    report's table labels it, gives it its digits and marks the *highest* value best, and
    `bench score` prints it."""
    from sklearn.metrics import roc_auc_score
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.metrics import compute_metrics
    from reports.build import Options, build
    from reports.stats import METRICS
    from tests.test_report import draw_scores, make_trials, write_run, write_trials

    trials = make_trials(n_spk=12, per_spk=20)
    labels = trials[2]
    tpath = write_trials(tmp_path, *trials)
    aucs = {}
    for loss, sep in (("weak", 0.5), ("strong", 2.5)):
        s = draw_scores(labels, sep, seed=int(10 * sep))
        write_run(tmp_path, loss, 0, s, trials, tpath)
        aucs[loss] = compute_metrics(s, labels)["auc"]
        assert aucs[loss] == pytest.approx(roc_auc_score(labels, s), abs=1e-12)
    assert aucs["strong"] > aucs["weak"]

    out = tmp_path / "report"
    build([tmp_path / "exp"], out, Options(n_boot=0, figures=False, formats=("md",), metrics=(*METRICS, "auc")))
    table = (out / "report.md").read_text().split("\n")
    header = next(line for line in table if line.startswith("| System |"))
    col = [c.strip() for c in header.split("|")].index("AUC")
    cells = {r.split("|")[1].strip(): r.split("|")[col].strip() for r in table if r.startswith(("| strong", "| weak"))}
    assert cells["strong"] == f"**{aucs['strong']:.4f}**" and cells["weak"] == f"{aucs['weak']:.4f}"

    res = CliRunner().invoke(app, ["score", "-s", str(tmp_path / "exp" / "strong" / "seed0" / "scores.txt")])
    assert res.exit_code == 0, res.output
    assert any("AUC" in line and f"{aucs['strong']:.4f}" in line for line in res.output.splitlines()), res.output


def test_metric_keys_resolve_by_row_prior_and_side_and_bad_keys_are_refused():
    from bench.metrics import METRIC_TABLE

    k = METRIC_TABLE.resolve("cal_actdcf@0.05")
    assert (k.metric.name, k.p, k.calibrated, k.bootstrappable) == ("actdcf", 0.05, True, False)
    assert METRIC_TABLE.resolve("mindcf@0.002").label == "minDCF@0.002"
    # a metric of LLR scores says which scores it was computed on
    assert METRIC_TABLE.label("cllr") == "Cllr (raw scores)" and METRIC_TABLE.label("cal_cllr") == "Cllr (cal.)"
    for bad in ("mindcf", "eer@0.01", "mindcf@x", "cal_nope", "auc"):
        with pytest.raises(KeyError):
            METRIC_TABLE.resolve(bad)
        assert not METRIC_TABLE.bootstrappable(bad)
    with pytest.raises(ValueError, match="repeated"):
        METRIC_TABLE.add(METRIC_TABLE.get("eer"))
