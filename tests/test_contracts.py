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
