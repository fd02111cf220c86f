"""Decoded audio kept in memory (``data.cache_mb``), so a small corpus is decoded once, not every crop.

A training crop is a seek and a partial FLAC decode of one file, a noise view another: on the demo
corpus these reads took about a quarter of each training step on 2 CPU cores. With a budget, the first
read of a file decodes it whole and keeps it; later crops are slices of that array. Until the budget is
spent every new file is kept; after that, files not yet held are read from disk as before (no eviction:
crops hit files uniformly at random, so replacing one held file by another gains nothing).

The slices are exactly what :func:`bench.data.audio.read_audio` returns for the same ``offset`` and
``frames`` (a lossless decode of the same samples), so a run gives the same batches with or without
the cache. Files at another sample rate are never held (a slice of a resampled file is not the
resampled slice). The cache belongs to the process that reads; DataLoader worker processes (``data.workers
> 0``) bypass it, because a worker lives one epoch and would decode everything again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.audio import read_audio, read_native
from bench.errors import BenchError


class AudioCache:
    """Whole decoded files ``path -> float32 [T]`` (at one sample rate) within ``budget_mb`` MiB."""

    def __init__(self, budget_mb: float = 0.0) -> None:
        self.budget = int(budget_mb * (1 << 20))
        self.used = 0
        self.full = False  # a file did not fit: files not held are read from disk from now on
        self._waves: dict[tuple[str, int], np.ndarray] = {}  # (path, sample rate) -> wave
        self._pass: set[tuple[str, int]] = set()  # files at another rate: always read from disk

    def __len__(self) -> int:
        return len(self._waves)

    def resize(self, budget_mb: float) -> None:
        """Set the budget; a budget below what is held releases everything."""
        budget = int(budget_mb * (1 << 20))
        if budget < self.used or budget <= 0:
            self.clear()
        elif budget > self.budget:
            self.full = False
        self.budget = budget

    def clear(self) -> None:
        self._waves.clear()
        self._pass.clear()
        self.used = 0
        self.full = False

    def read(
        self, path: str | Path, sample_rate: int, resample: bool = True, *, offset: int = 0, frames: int = -1
    ) -> np.ndarray:
        """:func:`~bench.data.audio.read_audio` ``(path, sample_rate, resample, offset=, frames=)``, served
        from memory when the file is held (a copy: callers may change it in place)."""
        key = (str(path), sample_rate)
        wave = self._waves.get(key)
        if wave is None:
            wave = self._load(key, resample)
            if wave is None:
                return read_audio(path, sample_rate, resample, offset=offset, frames=frames)
        total = len(wave)
        if offset >= total:
            raise BenchError(f"no samples at offset {offset} (file has {total} frames)", path=Path(key[0]))
        stop = total if frames < 0 else min(total, offset + frames)
        return wave[offset:stop].copy()

    def _load(self, key: tuple[str, int], resample: bool) -> np.ndarray | None:
        if self.budget <= 0 or self.full or key in self._pass or _in_worker():
            return None
        wave, sr = read_native(key[0], key[1], resample)
        if sr != key[1]:
            self._pass.add(key)
            return None
        if self.used + wave.nbytes > self.budget:
            self.full = True  # later files go to disk without a whole decode each
            return None
        self._waves[key] = wave
        self.used += wave.nbytes
        return wave


def _in_worker() -> bool:
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


# One cache per process: the training crops, the noise views and the validation utterances of a run
# read the same files epoch after epoch.
AUDIO_CACHE = AudioCache()


def configure(budget_mb: float) -> AudioCache:
    """Give the process's cache ``budget_mb`` MiB (``data.cache_mb``; 0 turns it off and frees it)."""
    AUDIO_CACHE.resize(budget_mb)
    return AUDIO_CACHE


def cached_read(
    path: str | Path, sample_rate: int, resample: bool = True, *, offset: int = 0, frames: int = -1
) -> np.ndarray:
    """:meth:`AudioCache.read` on the process's cache."""
    return AUDIO_CACHE.read(path, sample_rate, resample, offset=offset, frames=frames)
