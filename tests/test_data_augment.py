"""Multi-view augmentation: SNRs measured from the signals, reverb, view cycling, missing folders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import DataConfig, load_config
from bench.data import fixtures
from bench.data.augment import (
    AUGMENTATIONS,
    MultiViewAugmenter,
    add_at_snr,
    add_at_snr_batch,
    fft_convolve,
    repeat_pad,
    speed_perturb,
)
from bench.data.corpus import load_corpus
from bench.data.loader import make_train_loader
from bench.data.ondevice import PendingViews, collate_pending, views_on_device
from bench.errors import BenchError


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR from the powers of the clean crop and of what the augmentation added."""
    added = noisy.astype(np.float64) - clean.astype(np.float64)
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(added**2))


@pytest.fixture(scope="module")
def banks_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    fixtures.write_musan_rirs(root, files=2, seconds=1.0)
    return root


@pytest.fixture()
def crop():
    return fixtures.tone(np.random.default_rng(7), 210.0, 0.75)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.3, 20.0])
def test_add_at_snr_exact(snr, crop):
    noise = np.random.default_rng(1).standard_normal(len(crop)).astype(np.float32) * 3.0
    assert measured_snr(crop, add_at_snr(crop, noise, snr)) == pytest.approx(snr, abs=0.5)


@pytest.mark.parametrize("view, lo, hi", [("noise", 0, 15), ("music", 5, 15), ("babble", 13, 20)])
def test_view_snr_within_requested_range_and_matches_draw(banks_root, crop, view, lo, hi):
    cfg = DataConfig(root=str(banks_root), views=1, view_types=[view])
    aug = MultiViewAugmenter(cfg)
    snrs = []
    for seed in range(12):
        out = aug(crop, np.random.default_rng(seed))[0]
        s = measured_snr(crop, out)
        # the SNR the view drew is the first uniform draw of that generator
        requested = np.random.default_rng(seed).uniform(lo, hi) if view != "babble" else None
        if requested is not None:
            assert s == pytest.approx(requested, abs=0.5)
        assert lo - 0.5 <= s <= hi + 0.5
        snrs.append(s)
    assert np.ptp(snrs) > 1.0  # SNRs are sampled, not fixed


def test_babble_requested_snr(banks_root, crop):
    aug = MultiViewAugmenter(DataConfig(root=str(banks_root), views=1, view_types=["babble"]))
    rng = np.random.default_rng(3)
    probe = np.random.default_rng(3)
    k = int(probe.integers(3, 8))
    out = aug(crop, rng)[0]
    # replay the generator: k talker segments (2 draws each: file, offset) then the SNR draw
    for _ in range(k):
        probe.integers(2)
        probe.integers(0, 16000 - len(crop) + 1)
    assert measured_snr(crop, out) == pytest.approx(probe.uniform(13, 20), abs=0.5)


def test_views_are_independent_augmentations_of_one_crop(banks_root, crop):
    cfg = DataConfig(root=str(banks_root), views=7, view_types=["reverb", "babble", "music", "noise", "clean"])
    aug = MultiViewAugmenter(cfg)
    assert aug.view_types == ["reverb", "babble", "music", "noise", "clean", "reverb", "babble"]
    views = aug(crop, np.random.default_rng(0))
    assert views.shape == (7, len(crop)) and views.dtype == np.float32
    np.testing.assert_array_equal(views[4], crop)
    assert not np.allclose(views[0], views[5])  # the two reverb views drew different RIRs or noise
    for v in views[:4]:
        assert np.corrcoef(v, crop)[0, 1] > 0.3  # still the same crop underneath
        assert not np.allclose(v, crop)


@pytest.mark.parametrize("where", ["loader", "device"])
def test_reverb_is_rir_convolution(tmp_path, crop, where):
    rirs = tmp_path / "rirs" / "simulated_rirs" / "smallroom" / "Room001"
    rir = np.zeros(400, dtype=np.float32)
    rir[10], rir[200] = 1.0, 0.5
    fixtures.write(rirs / "Room001-00001.wav", rir)
    aug = MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["reverb"]))
    out = aug(crop, np.random.default_rng(0))[0] if where == "loader" else both_paths(aug, [crop], [0])[2][0, 0]
    g = 1 / np.sqrt(1.25)  # unit-energy RIR, aligned at its direct path (sample 10)
    expected = g * crop.astype(np.float64)
    expected[190:] += g * 0.5 * crop[: len(crop) - 190]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_fft_convolve_matches_numpy():
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal(300), rng.standard_normal(31)
    np.testing.assert_allclose(fft_convolve(x, h), np.convolve(x, h), atol=1e-10)


def test_missing_folders_fail_at_construction(tmp_path):
    with pytest.raises(BenchError, match="MUSAN folder not found") as e:
        MultiViewAugmenter(DataConfig(root=str(tmp_path), views=2, view_types=["noise", "clean"]))
    assert e.value.path == str(tmp_path / "musan")
    with pytest.raises(BenchError, match="RIR folder not found") as e:
        MultiViewAugmenter(
            DataConfig(root=str(tmp_path), views=1, view_types=["reverb"], rirs=str(tmp_path / "elsewhere"))
        )
    assert e.value.path == str(tmp_path / "elsewhere")
    (tmp_path / "musan" / "noise").mkdir(parents=True)
    with pytest.raises(BenchError, match="no audio files"):
        MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["noise"]))
    with pytest.raises(BenchError, match="MUSAN music folder not found"):
        MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["music"]))
    # clean-only training needs no folders at all
    assert MultiViewAugmenter(DataConfig(root=str(tmp_path), views=2, view_types=["clean"])).view_types == ["clean"] * 2


def test_unknown_view_type_suggests(tmp_path):
    with pytest.raises(BenchError, match="did you mean 'noise'"):
        MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["nosie"]))
    assert {"clean", "reverb", "noise", "music", "babble"} <= set(AUGMENTATIONS.names())


def test_repeat_pad_and_speed_perturb():
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 12), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    src = fixtures.tone(np.random.default_rng(0), 400.0, 1.0, noise=0.0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        factor = (0.9, 1.0, 1.1)[int(np.random.default_rng(seed).integers(3))]
        out = speed_perturb(lambda n: src[:n], 8000, rng)
        assert out.shape == (8000,)
        peak = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / len(out)
        assert peak == pytest.approx(400.0 * factor, rel=0.02)  # pitch scales with speed


# ---------------------------------------------------------------- augmentation on the training device

ALL_VIEWS = ["reverb", "babble", "music", "noise", "clean"]


def both_paths(aug, crops, seeds):
    """(draws, per-utterance numpy views [B, V, T], batched torch views [B, V, T]) from the same draws."""
    draws = [aug.draw(len(c), np.random.default_rng(s)) for c, s in zip(crops, seeds)]
    loader = np.stack([aug.apply(c, d) for c, d in zip(crops, draws)])
    pending, labels = collate_pending([(c, d, i) for i, (c, d) in enumerate(zip(crops, draws))], aug.view_types)
    assert isinstance(pending, PendingViews) and pending.shape == loader.shape
    assert labels.tolist() == list(range(len(crops)))
    device = views_on_device(pending, torch.device("cpu"))
    assert device.dtype == torch.float32
    return draws, loader, device.numpy()


def crops_batch(n=5, seconds=0.75):
    rng = np.random.default_rng(21)
    return [fixtures.tone(rng, 120.0 + 90.0 * i, seconds) for i in range(n)]


def test_device_views_equal_loader_views_for_the_same_draws(banks_root):
    aug = MultiViewAugmenter(DataConfig(root=str(banks_root), views=7, view_types=ALL_VIEWS))
    crops = crops_batch()
    draws, loader, device = both_paths(aug, crops, range(10, 15))
    # RIRs of different lengths share one batch (the 0.25 s simulated ones and the 401-tap real one)
    assert len({len(d[v]["rir"]) for d in draws for v in (0, 5)}) > 1
    np.testing.assert_allclose(device, loader, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(device[:, 4], np.stack(crops))  # clean
    assert np.abs(loader - np.stack(crops)[:, None]).max() > 0.05  # the views really are augmented


@pytest.mark.parametrize("view, lo, hi", [("noise", 0, 15), ("music", 5, 15), ("babble", 13, 20)])
def test_device_views_realise_the_drawn_snr(banks_root, view, lo, hi):
    aug = MultiViewAugmenter(DataConfig(root=str(banks_root), views=2, view_types=[view]))
    crops = crops_batch()
    draws, _, device = both_paths(aug, crops, range(5))
    for c, d, out in zip(crops, draws, device):
        for v in range(2):
            assert lo <= d[v]["snr"] <= hi
            assert measured_snr(c, out[v]) == pytest.approx(d[v]["snr"], abs=0.5)


def test_add_at_snr_batch_matches_per_utterance_and_keeps_silent_rows():
    rng = np.random.default_rng(5)
    clean = rng.standard_normal((4, 3000)).astype(np.float32)
    noise = (rng.standard_normal((4, 3000)) * 4.0).astype(np.float32)
    clean[1] = 0.0  # silent crop: no defined SNR
    noise[2] = 0.0  # silent noise file
    snr = np.array([-3.0, 5.0, 10.0, 17.5], dtype=np.float32)
    out = add_at_snr_batch(torch.from_numpy(clean), torch.from_numpy(noise), torch.from_numpy(snr)).numpy()
    ref = np.stack([add_at_snr(c, n, float(s)) for c, n, s in zip(clean, noise, snr)])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(out[1], clean[1])
    np.testing.assert_array_equal(out[2], clean[2])
    assert measured_snr(clean[3], out[3]) == pytest.approx(17.5, abs=0.01)


@pytest.fixture(scope="module")
def corpus_cfg(banks_root):
    root = fixtures.write_cnceleb1(banks_root / "corpus", train_speakers=4, utts=3, eval_speakers=1, seconds=(0.3, 0.9))
    cfg = DataConfig(
        corpus="cnceleb",
        root=str(root),
        musan=str(banks_root / "musan"),
        rirs=str(banks_root / "rirs"),
        crop_seconds=0.5,
        views=5,
        view_types=ALL_VIEWS,
        speakers_per_batch=2,
        utts_per_speaker=2,
        workers=0,
    )
    return load_corpus(cfg), cfg


def test_device_loader_gives_the_loader_paths_batches(corpus_cfg):
    corpus, cfg = corpus_cfg
    ref = list(make_train_loader(corpus, cfg, seed=3, epoch=1))
    for workers in (0, 1):  # with a worker the pending batch crosses a process boundary
        dev_cfg = dataclasses.replace(cfg, augment_on="device", workers=workers)
        got = list(make_train_loader(corpus, dev_cfg, seed=3, epoch=1))
        assert len(got) == len(ref) == 3
        for (w, y), (pending, y2) in zip(ref, got):
            assert isinstance(pending, PendingViews) and pending.crops.shape == (4, 8000)
            assert torch.equal(y, y2)
            torch.testing.assert_close(views_on_device(pending, torch.device("cpu")), w, rtol=0, atol=2e-5)
    # a loader-path batch passes through the hook untouched
    assert views_on_device(ref[0][0], torch.device("cpu")) is ref[0][0]


def test_augment_on_is_validated():
    assert load_config(overrides=["data.augment_on=device"]).data.augment_on == "device"
    with pytest.raises(BenchError, match="data.augment_on must be loader or device, got 'gpu'"):
        load_config(overrides=["data.augment_on=gpu"])


def test_training_with_device_augmentation_follows_the_loader_path(tmp_path):
    """The train loop's hook: the same run with views made on the device ends at the same weights."""
    from bench.runner import experiment
    from bench.runner.train import build_components, train
    from tests.runner_helpers import ensure_metrics, make_corpus, tiny_config

    ensure_metrics()
    corpus = make_corpus(tmp_path / "cn1")
    fixtures.write_musan_rirs(tmp_path / "cn1", files=2, seconds=1.0)
    results = {}
    for where in ("loader", "device"):
        cfg = tiny_config(
            **{
                "data.root": f'"{tmp_path / "cn1"}"',
                "data.corpus": "cnceleb",
                "data.workers": 0,
                "data.crop_seconds": 0.25,
                "data.view_types": '["reverb", "noise"]',
                "data.augment_on": where,
                "train.epochs": 1,
                "train.steps_per_epoch": 2,
                "train.validate_every": 0,
            }
        )
        cfg = experiment.run_config(cfg, "softmax", 0)
        results[where] = train(cfg, corpus, None)

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b = flat(results["loader"].model), flat(results["device"].model)
    assert (a - flat(build_components(cfg, len(corpus.speakers))[0])).abs().max() > 1e-3  # the steps moved it
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert results["device"].state.history[0]["train_loss"] == pytest.approx(
        results["loader"].state.history[0]["train_loss"], rel=1e-4
    )
