"""The decoded-audio cache (bench/data/cache.py) against plain decoding: same samples, same errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench.data import cache as C
from bench.data.audio import read_audio
from bench.errors import BenchError


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i, (ext, sr, ch) in enumerate([("flac", 16000, 1), ("wav", 16000, 2), ("flac", 16000, 1), ("wav", 8000, 1)]):
        p = tmp_path / f"u{i}.{ext}"
        sf.write(p, (0.3 * rng.standard_normal((int(sr * (0.5 + 0.25 * i)), ch))).squeeze(), sr, subtype="PCM_16")
        out.append(p)
    return out


def _both(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except BenchError as e:
        return str(e)


def test_slices_equal_partial_decodes_and_errors_match(files):
    cache = C.AudioCache(64)
    rng = np.random.default_rng(1)
    for p in files[:3]:
        for _ in range(20):
            off, n = int(rng.integers(0, 14000)), int(rng.choice([-1, int(rng.integers(1, 9000))]))
            want = _both(read_audio, p, 16000, offset=off, frames=n)
            got = _both(cache.read, p, 16000, offset=off, frames=n)
            if isinstance(want, str):
                assert got == want  # e.g. an offset past the end, with the file named
            else:
                assert got.dtype == np.float32 and np.array_equal(got, want)
    assert len(cache) == 3 and cache.used == sum(len(read_audio(p)) * 4 for p in files[:3])


def test_other_rate_files_are_not_held_and_still_resampled(files):
    cache = C.AudioCache(64)
    with pytest.warns(UserWarning, match="resampling"):
        got = cache.read(files[3], 16000, offset=100, frames=3000)
    with pytest.warns(UserWarning, match="resampling"):
        want = read_audio(files[3], 16000, offset=100, frames=3000)
    assert np.array_equal(got, want) and len(cache) == 0
    with pytest.raises(BenchError, match="8000 Hz"):
        cache.read(files[3], 16000, resample=False)


def test_budget_holds_what_fits_then_reads_from_disk(files):
    first = len(read_audio(files[0])) * 4
    cache = C.AudioCache(first / (1 << 20))  # room for the first file only
    for p in files[:3]:
        assert np.array_equal(cache.read(p, 16000), read_audio(p))
    assert len(cache) == 1 and cache.full
    cache.resize(0)
    assert len(cache) == 0 and cache.used == 0


def test_callers_get_copies(files):
    cache = C.AudioCache(64)
    a = cache.read(files[0], 16000, frames=100)
    a[:] = 0.0
    assert np.array_equal(cache.read(files[0], 16000, frames=100), read_audio(files[0], frames=100))


def test_loader_workers_bypass_the_cache(files, monkeypatch):
    cache = C.AudioCache(64)
    monkeypatch.setattr(C, "_in_worker", lambda: True)
    cache.read(files[0], 16000)
    assert len(cache) == 0


def test_config_refuses_a_negative_budget():
    from bench.config import load_config

    with pytest.raises(BenchError, match="data.cache_mb"):
        load_config(overrides=["data.cache_mb=-1"])
