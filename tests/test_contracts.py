"""Contracts every registry entry keeps, parametrised over the registries themselves.

A backbone or corpus reader added with its one registry line is picked up here without editing this
file (docs/ARCHITECTURE.md, "How to add ..."). Losses have the same in tests/test_losses.py and
tests/test_losses_zoo.py (parametrised over ``LOSSES.names()``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.corpus import CORPORA
from bench.errors import BenchError
from models import BACKBONES, build_model
from models.config import ModelConfig

# Registered here at import time (before any test module can add a test-only entry).
BACKBONE_NAMES = BACKBONES.names()
CORPUS_NAMES = sorted(CORPORA)


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


def test_every_reported_metric_has_a_label_and_a_source():
    """reports.stats.METRICS lists the table's metrics: each needs a label (METRIC_NAMES) and must be
    a key that bench.metrics.compute_metrics returns (``cal_<key>``: the calibrated scores' dict)."""
    from bench.metrics import compute_metrics
    from reports.stats import CALIBRATED_PREFIX, METRIC_NAMES, METRICS, bootstrappable, p_targets_of

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1, 1, 200), rng.normal(-1, 1, 400)])
    labels = np.arange(600) < 200
    plain = compute_metrics(scores, labels, p_targets=p_targets_of(list(METRICS)))
    calibrated = compute_metrics(scores, labels, p_targets=(0.01, 0.05), llr=True)
    for m in METRICS:
        assert m in METRIC_NAMES, f"{m}: add its label to reports/stats.py METRIC_NAMES"
        if m.startswith(CALIBRATED_PREFIX):
            assert m[len(CALIBRATED_PREFIX) :] in calibrated, m
        else:
            assert m in plain, f"{m}: not a key of bench.metrics.compute_metrics"
        if bootstrappable(m):
            from bench.bootstrap_counts import _parse_metric

            _parse_metric(m)  # the bootstrap engine knows it (raises ValueError otherwise)
