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

pytest_plugins = ["tests.faults"]  # fault_case: batches that cannot be filled count as bad inputs

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
    root = fixtures.write_cnceleb1(
        tmp_path_factory.mktemp("loader"), train_speakers=4, utts=3, eval_speakers=1, seconds=(0.3, 0.9)
    )
    fixtures.write_musan_rirs(root, files=2, seconds=1.0)
    cfg = DataConfig(
        corpus="cnceleb",
        root=str(root),
        crop_seconds=0.5,
        views=3,
        view_types=["noise", "reverb", "clean"],
        speakers_per_batch=2,
        utts_per_speaker=2,
        workers=0,
    )
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
    cfg = DataConfig(
        corpus="cnceleb",
        root=str(root),
        crop_seconds=0.25,
        views=1,
        view_types=["clean"],
        speakers_per_batch=2,
        utts_per_speaker=3,
        workers=0,
    )
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


# ------------------------------------------------------------------ batches that cannot be filled as asked


def _check_batches(labels: np.ndarray, n: int, m: int, batches: list[list[int]]) -> None:
    """The defined behaviour (bench/data/sampler.py docstring), checked item by item."""
    counts = np.bincount(labels)
    for batch in batches:
        spk = labels[batch].reshape(n, m)
        assert (spk == spk[:, :1]).all() and len(set(spk[:, 0])) == n
        for k in range(n):
            utts = batch[k * m : (k + 1) * m]
            have = counts[spk[k, 0]]
            if have >= m:
                assert len(set(utts)) == m, f"a speaker with {have} >= {m} utterances repeated one"
            else:  # all of its utterances, then the same again in order
                assert set(utts) == set(np.flatnonzero(labels == spk[k, 0]))
                assert utts == (utts[:have] * m)[:m]
        # a positive pair (two items of one speaker) for every speaker when m >= 2
        assert m < 2 or all((labels[batch] == s).sum() >= 2 for s in set(labels[batch]))


def test_a_speaker_with_fewer_utterances_than_m_gives_all_of_them_then_repeats(fault_case):
    fault_case("bad lists and configs").bad_input()
    labels = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3])
    s = SpeakerBalancedBatchSampler(labels, 2, 4, seed=1, epoch=0, num_batches=40)
    batches = rows(s)
    _check_batches(labels, 2, 4, batches)
    one = [b for b in batches if 0 in labels[b]]
    assert one and all(b[(list(labels[b]).index(0)) :][:4] == [0, 0, 0, 0] for b in one)


def test_fewer_speakers_than_a_batch_needs_is_refused_naming_the_setting(fault_case):
    fault_case("bad lists and configs").bad_input()
    with pytest.raises(BenchError, match=r"data.speakers_per_batch=5 but the training set has only 4 speakers"):
        SpeakerBalancedBatchSampler(np.repeat(np.arange(4), 10), 5, 2, seed=0, epoch=0)


def test_a_dominant_speaker_is_drawn_at_most_once_per_batch_and_drawing_ends(fault_case):
    fault_case("bad lists and configs").bad_input()
    labels = np.concatenate([np.zeros(900, np.int64), np.repeat(np.arange(1, 11), 10)])  # speaker 0: 90 %
    s = SpeakerBalancedBatchSampler(labels, 4, 2, seed=0, epoch=0)
    batches = rows(s)
    assert len(batches) == len(labels) // 8
    _check_batches(labels, 4, 2, batches)
    share = np.mean([0 in labels[b] for b in batches])
    assert share > 0.95  # almost always there, never twice
    others = np.concatenate([labels[b] for b in batches])
    assert set(np.unique(others)) == set(range(11))  # the small speakers still get their places


def test_queue_refills_never_repeat_an_utterance_within_a_batch():
    # 3 utterances, m = 2: the queue runs out every other batch, mid-way through the speaker's pair
    labels = np.repeat(np.arange(3), 3)
    _check_batches(labels, 3, 2, rows(SpeakerBalancedBatchSampler(labels, 3, 2, seed=5, epoch=0, num_batches=60)))


def test_sampler_defined_for_any_speaker_sizes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.integers(1, 30), min_size=1, max_size=25),
        st.integers(1, 6),
        st.integers(1, 5),
        st.integers(0, 2**16),
    )
    def check(sizes, n, m, seed):
        labels = np.repeat(np.arange(len(sizes)), sizes)
        if n > len(sizes):
            with pytest.raises(BenchError, match="data.speakers_per_batch"):
                SpeakerBalancedBatchSampler(labels, n, m, seed=seed, epoch=0)
            return
        s = SpeakerBalancedBatchSampler(labels, n, m, seed=seed, epoch=0)
        batches = rows(s)
        assert len(batches) == max(len(labels) // (n * m), 1)
        _check_batches(labels, n, m, batches)

    check()


@pytest.mark.parametrize(
    "loss, m, views, ok",
    [
        ("supcon", 1, 1, False),
        ("aamsupcon", 1, 1, False),
        ("supcon", 1, 2, True),
        ("supcon", 2, 1, True),
        ("aam", 1, 1, True),
    ],
)
def test_a_loss_needing_positives_refuses_batches_without_any(loss, m, views, ok, fault_case):
    from bench.config import load_config, resolve

    cfg = load_config(overrides=[f"loss.name={loss}", f"data.utts_per_speaker={m}", f"data.views={views}"])
    if ok:
        resolve(cfg)
    else:
        fault_case("bad lists and configs").bad_input()
        with pytest.raises(BenchError, match=r"needs positive pairs in every batch.*data.utts_per_speaker=1"):
            resolve(cfg)
