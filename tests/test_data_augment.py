"""Multi-view augmentation: SNRs measured from the signals, reverb, view cycling, missing folders."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import DataConfig
from bench.data import fixtures
from bench.data.augment import AUGMENTATIONS, MultiViewAugmenter, add_at_snr, fft_convolve, repeat_pad, speed_perturb
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


def test_reverb_is_rir_convolution(tmp_path, crop):
    rirs = tmp_path / "rirs" / "simulated_rirs" / "smallroom" / "Room001"
    rir = np.zeros(400, dtype=np.float32)
    rir[10], rir[200] = 1.0, 0.5
    fixtures.write(rirs / "Room001-00001.wav", rir)
    aug = MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["reverb"]))
    out = aug(crop, np.random.default_rng(0))[0]
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
        MultiViewAugmenter(DataConfig(root=str(tmp_path), views=1, view_types=["reverb"],
                                      rirs=str(tmp_path / "elsewhere")))
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
