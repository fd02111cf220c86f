"""Telephone channels: narrow-band resampling and speech codecs through maintained libraries.

- G.711 mu-law / A-law companding: ``torchaudio.functional.mu_law_encoding`` for mu-law (ITU-T
  G.711, mu = 255); A-law has no torchaudio twin, so its published formula (G.711, A = 87.6) is
  applied to the 8-bit grid here.
- GSM 06.10 full rate (the 2G mobile codec): a round trip through libsndfile's GSM610 encoder and
  decoder via ``soundfile`` (headerless RAW container), so no ffmpeg is needed.
- Band-limiting: ``scipy.signal.resample_poly`` down to 8 kHz and back, i.e. the anti-alias filter
  of a narrow-band telephone path (nothing above 4 kHz survives).
"""

from __future__ import annotations

import io

import numpy as np

NARROW_SR = 8000


def to_narrowband(x: np.ndarray, sr: int) -> np.ndarray:
    """``x`` at ``sr`` resampled to 8 kHz (float32)."""
    from bench.data.audio import resample_poly

    return x.astype(np.float32) if sr == NARROW_SR else resample_poly(x, sr, NARROW_SR)


def from_narrowband(x: np.ndarray, sr: int) -> np.ndarray:
    from bench.data.audio import resample_poly

    return x.astype(np.float32) if sr == NARROW_SR else resample_poly(x, NARROW_SR, sr)


def gsm_roundtrip(x8k: np.ndarray) -> np.ndarray:
    """8 kHz audio encoded and decoded with GSM 06.10 (libsndfile); same length, float32."""
    import soundfile as sf

    from bench.procs import interrupt_after

    buf = io.BytesIO()
    with interrupt_after():  # libsndfile's virtual IO calls back into Python (see interrupt_after)
        sf.write(buf, np.clip(x8k, -1, 1), NARROW_SR, format="RAW", subtype="GSM610")
        buf.seek(0)
        y, _ = sf.read(buf, format="RAW", subtype="GSM610", samplerate=NARROW_SR, channels=1, dtype="float32")
    out = np.zeros(len(x8k), np.float32)
    out[: min(len(y), len(x8k))] = y[: len(x8k)]
    return out


def mulaw_roundtrip(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law (256 levels) quantisation of ``x`` in [-1, 1] (torchaudio's encoder and decoder)."""
    import torch
    import torchaudio.functional as AF

    t = torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))
    return AF.mu_law_decoding(AF.mu_law_encoding(t, 256), 256).numpy().astype(np.float32)


def alaw_roundtrip(x: np.ndarray, a: float = 87.6) -> np.ndarray:
    """G.711 A-law companding with 8-bit quantisation (ITU-T G.711 formula, A = 87.6)."""
    x = np.clip(x.astype(np.float64), -1, 1)
    ax = np.abs(x)
    ln_a = 1 + np.log(a)
    y = np.where(ax < 1 / a, a * ax / ln_a, (1 + np.log(np.maximum(a * ax, 1e-12))) / ln_a)
    q = np.round(y * 127) / 127  # 7 magnitude bits + sign = 8-bit code
    inv = np.where(q < 1 / ln_a, q * ln_a / a, np.exp(q * ln_a - 1) / a)
    return (np.sign(x) * inv).astype(np.float32)


CODECS = {"gsm": gsm_roundtrip, "mulaw": mulaw_roundtrip, "alaw": alaw_roundtrip}


def telephone(x: np.ndarray, sr: int, codec: str = "gsm") -> np.ndarray:
    """``x`` (at ``sr``) through an 8 kHz telephone path with ``codec`` (gsm | mulaw | alaw | none),
    back at ``sr``."""
    y = to_narrowband(x, sr)
    if codec != "none":
        y = CODECS[codec](y)
    return from_narrowband(y, sr)
