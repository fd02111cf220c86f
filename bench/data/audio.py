"""Audio decoding with soundfile: mono float32 at the configured sample rate.

Every failure (missing, empty, corrupt or non-audio file, wrong rate when resampling is off) is a
:class:`~bench.errors.BenchError` naming the file, so a bad utterance deep inside a corpus is easy
to find.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.errors import BenchError


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one file: ``frames`` per channel at ``sample_rate``."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path`` and check its last sample decodes (cheap: one seek, no full decode).

    Raises:
        BenchError: the file is missing, not audio, has no samples, or is truncated.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchError("audio file not found", path=p)
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError by version
        raise BenchError(f"unreadable audio ({_reason(e)})", path=p) from None
    if info.frames <= 0:
        raise BenchError("empty audio file (0 samples)", path=p)
    try:
        # a truncated FLAC keeps the full length in its header; seeking to the last sample finds it
        with sf.SoundFile(str(p)) as f:
            f.seek(int(info.frames) - 1)
            f.read(1, dtype="float32")
    except Exception as e:
        raise BenchError(f"truncated or corrupt audio: last sample unreadable ({_reason(e)})", path=p) from None
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text


def read_audio(
    path: str | Path,
    sample_rate: int = 16000,
    resample: bool = True,
    *,
    offset: int = 0,
    frames: int = -1,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform ``[T]`` at ``sample_rate``.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).
        sample_rate: wanted rate; other rates are resampled (polyphase) with a warning, or refused
            when ``resample`` is False.
        offset, frames: read only ``frames`` samples starting at ``offset`` (both counted at
            ``sample_rate``; ``frames=-1`` reads to the end). Lets training crops decode a slice
            of a long file instead of all of it.

    Raises:
        BenchError: missing/empty/corrupt/non-audio file, non-finite samples, or a wrong rate with
            ``resample=False``.
    """
    wave, sr = read_native(path, sample_rate, resample, offset=offset, frames=frames)
    if sr != sample_rate:
        warnings.warn(f"{path}: resampling {sr} Hz -> {sample_rate} Hz", stacklevel=2)
        wave = resample_poly(wave, sr, sample_rate)
        if frames >= 0:
            wave = wave[:frames]
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_native(
    path: str | Path, sample_rate: int = 16000, resample: bool = True, *, offset: int = 0, frames: int = -1
) -> tuple[np.ndarray, int]:
    """``read_audio`` before resampling: ``(mono float32 wave [T'] at the file's own rate, that rate)``.

    ``offset``/``frames`` are still counted at ``sample_rate`` (converted to the file's rate), and
    every check of :func:`read_audio` applies (a wrong rate with ``resample=False`` is refused).
    """
    p = Path(path)
    if not p.is_file():
        raise BenchError("audio file not found", path=p)
    try:
        # one open serves header checks, seek and read: training decodes thousands of crops a second
        with sf.SoundFile(str(p)) as f:
            sr, total = int(f.samplerate), int(f.frames)
            if total <= 0:
                raise BenchError("empty audio file (0 samples)", path=p)
            if sr != sample_rate and not resample:
                raise BenchError(f"sample rate is {sr} Hz, expected {sample_rate} Hz (data.resample=false)", path=p)
            # offset/frames are given at the target rate; convert to the file's own rate
            start = int(round(offset * sr / sample_rate))
            count = -1 if frames < 0 else int(np.ceil(frames * sr / sample_rate))
            if start >= total:
                raise BenchError(f"no samples at offset {offset} (file has {total} frames)", path=p)
            if start:
                f.seek(start)
            data = f.read(count, dtype="float32", always_2d=True)
    except BenchError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError by version
        raise BenchError(f"unreadable audio ({_reason(e)})", path=p) from None
    if data.shape[0] == 0:
        raise BenchError(f"no samples at offset {offset} (file has {total} frames)", path=path)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wave)):
        raise BenchError("audio contains NaN or infinite samples", path=path)
    return np.ascontiguousarray(wave, dtype=np.float32), sr


def resample_poly(wave: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Polyphase resampling of ``wave[T]`` from ``orig_sr`` to ``new_sr`` (float32 out)."""
    from scipy.signal import resample_poly as _rp

    g = gcd(orig_sr, new_sr)
    return _rp(wave, new_sr // g, orig_sr // g).astype(np.float32)
