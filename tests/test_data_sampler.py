"""Speaker-balanced sampler guarantees and the training loader's shapes and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import DataConfig
from bench.data import fixtures
from bench.data.corpus import load_corpus
from bench.data.loader import make_train_loader
from bench.data.sampler import SpeakerBalancedBatchSampler
from bench.errors import BenchError

# uneven speakers: 1..12 utterances, so balancing and short speakers are both exercised
LABELS = np.repeat(np.arange(12), np.arange(1, 13))


def sampler(**kw):
    args = dict(speakers_per_batch=4, utts_per_speaker=2, seed=3, epoch=1)
    args.update(kw)
    return SpeakerBalancedBatchSampler(LABELS, args.pop("speakers_per_batch"), args.pop("utts_per_speaker"), **args)


def rows(batches):
    return [[u for _, _, u in b] for b in batches]


def test_batches_are_balanced_with_distinct_speakers():
    s = sampler()
    assert len(s) == len(LABELS) // 8
    for batch in rows(s):
        spk = LABELS[batch]
        assert len(batch) == 8
        groups = spk.reshape(4, 2)
        assert (groups == groups[:, :1]).all()  # m consecutive utterances of one speaker
        assert len(set(groups[:, 0])) == 4  # no speaker twice


def test_each_utterance_seen_about_once_per_epoch():
    labels = np.repeat(np.arange(20), 6)
    s = SpeakerBalancedBatchSampler(labels, 5, 2, seed=0, epoch=0)
    seen = np.bincount(np.concatenate(rows(s)), minlength=len(labels))
    assert len(s) * 10 == len(labels)
    assert (seen <= 3).all() and (seen > 0).mean() > 0.6


def test_deterministic_in_seed_and_epoch():
    assert rows(sampler()) == rows(sampler())
    assert rows(sampler()) != rows(sampler(epoch=2))
    assert rows(sampler()) != rows(sampler(seed=4))


def test_ranks_get_disjoint_contiguous_slices_of_the_global_batch():
    full = rows(sampler())
    parts = [rows(sampler(rank=r, world_size=4)) for r in range(4)]
    for b, batch in enumerate(full):
        assert sum((p[b] for p in parts), []) == batch
    positions = [[j for _, j, _ in b] for b in sampler(rank=1, world_size=4)]
    assert all(p == [2, 3] for p in positions)


def test_resume_equals_continuation():
    full = list(sampler())
    resumed = list(sampler(start_batch=3))
    assert resumed == full[3:] and len(sampler(start_batch=3)) == len(full) - 3


def test_sampler_rejects_impossible_shapes():
    with pytest.raises(BenchError, match="only 12 speakers"):
        sampler(speakers_per_batch=13)
    with pytest.raises(BenchError, match="divisible"):
        sampler(world_size=3)
    with pytest.raises(BenchError, match="start_batch"):
        sampler(start_batch=100)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = fixtures.write_cnceleb1(tmp_path_factory.mktemp("loader"), train_speakers=4, utts=3, eval_speakers=1,
                                   seconds=(0.3, 0.9))
    fixtures.write_musan_rirs(root, files=2, seconds=1.0)
    cfg = DataConfig(corpus="cnceleb", root=str(root), crop_seconds=0.5, views=3,
                     view_types=["noise", "reverb", "clean"], speakers_per_batch=2, utts_per_speaker=2, workers=0)
    return load_corpus(cfg), cfg


def test_loader_shapes_labels_and_views(small):
    corpus, cfg = small
    loader = make_train_loader(corpus, cfg, seed=0, epoch=0)
    assert len(loader) == loader.num_batches == 3 and loader.view_types == ["noise", "reverb", "clean"]
    batches = list(loader)
    assert len(batches) == 3
    for waves, labels in batches:
        assert waves.shape == (4, 3, 8000) and waves.dtype == torch.float32
        assert labels.dtype == torch.int64 and labels[0] == labels[1] and labels[2] == labels[3]
        assert labels[0] != labels[2]
        assert torch.isfinite(waves).all()
    # short utterances (< 0.5 s) are repeat-padded: the clean view has no trailing zeros
    clean = torch.cat([w[:, 2] for w, _ in batches])
    assert (clean[:, -400:].abs().amax(dim=1) > 0).all()


def test_loader_is_deterministic_resumable_and_rank_split(small):
    corpus, cfg = small
    full = [(w.clone(), y.clone()) for w, y in make_train_loader(corpus, cfg, seed=5, epoch=2)]
    again = list(make_train_loader(corpus, cfg, seed=5, epoch=2))
    resumed = list(make_train_loader(corpus, cfg, seed=5, epoch=2, start_batch=1))
    rank1 = list(make_train_loader(corpus, cfg, seed=5, epoch=2, rank=1, world_size=2))
    other = list(make_train_loader(corpus, cfg, seed=5, epoch=3))
    for (w, y), (w2, y2) in zip(full, again):
        assert torch.equal(w, w2) and torch.equal(y, y2)
    for (w, y), (w2, y2) in zip(full[1:], resumed):
        assert torch.equal(w, w2) and torch.equal(y, y2)
    for (w, y), (w2, y2) in zip(full, rank1):
        assert torch.equal(w[2:], w2) and torch.equal(y[2:], y2)
    assert not torch.equal(full[0][0], other[0][0])


def test_loader_does_not_depend_on_worker_count(small):
    corpus, cfg = small
    import dataclasses

    one = list(make_train_loader(corpus, cfg, seed=1, epoch=0, num_batches=2))
    two = list(make_train_loader(corpus, dataclasses.replace(cfg, workers=2), seed=1, epoch=0, num_batches=2))
    assert len(one) == len(two) == 2
    for (w, y), (w2, y2) in zip(one, two):
        assert torch.equal(w, w2) and torch.equal(y, y2)


def test_loader_fails_at_start_when_noise_folder_missing(small, tmp_path):
    corpus, cfg = small
    import dataclasses

    with pytest.raises(BenchError, match="MUSAN") as e:
        make_train_loader(corpus, dataclasses.replace(cfg, musan=str(tmp_path / "no-musan")), seed=0, epoch=0)
    assert "no-musan" in e.value.path


def test_file_going_bad_mid_epoch_errors_or_is_substituted(tmp_path):
    import dataclasses
    import warnings

    root = fixtures.write_cnceleb1(tmp_path, train_speakers=2, utts=3, eval_speakers=1)
    cfg = DataConfig(corpus="cnceleb", root=str(root), crop_seconds=0.25, views=1, view_types=["clean"],
                     speakers_per_batch=2, utts_per_speaker=3, workers=0)
    corpus = load_corpus(cfg)
    victim = root / "data" / "id00000" / "speech-01-002.flac"
    victim.write_bytes(b"garbage")  # header was fine at indexing time
    with pytest.raises(BenchError) as e:
        list(make_train_loader(corpus, cfg, seed=0, epoch=0))
    assert e.value.path == str(victim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(make_train_loader(corpus, dataclasses.replace(cfg, skip_bad=True), seed=0, epoch=0))
    assert len(batches) == 1 and batches[0][0].shape == (6, 1, 4000)
    assert any(str(victim) in str(w.message) for w in caught)
