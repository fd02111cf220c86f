"""What the synthetic corpus and its augmentation banks share: the seeded random streams, clean
read speech of a voice, and atomic 16 kHz 16-bit FLAC output.

A module of its own so that ``bench.synth.corpus`` (speakers) and ``bench.synth.banks`` (MUSAN /
RIR folders) both import it instead of each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.io import atomic_open
from bench.synth.config import SynthConfig

SR = 16000

# Independent random streams: the second element of every seed sequence.
S_VOICE, S_PLAN, S_UTT, S_SESSION, S_CORPUS_BABBLE, S_SPEECH_BANK, S_NOISE_BANK, S_MUSIC_BANK, S_RIR, S_VAL = range(
    1, 11
)


def rng_for(cfg: SynthConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *key])


def clean_passage(cfg: SynthConfig, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A held-out speaker reading for about ``seconds`` (no channel), at -20 dBFS RMS."""
    from bench.synth.voices import sample_voice

    voice = sample_voice(rng, cfg.spread, cfg.languages, cfg.glottal)
    x = speak(voice, "recitation", rng, seconds, cfg.jitter, cfg.prosody, cfg.languages)
    return (x * 0.1 / (np.sqrt(np.mean(x**2)) + 1e-9)).astype(np.float32)


def speak(
    voice,
    genre: str,
    rng: np.random.Generator,
    seconds: float,
    jitter: float,
    prosody: float = 0.0,
    languages: str = "english",
) -> np.ndarray:
    """``seconds`` of clean speech by ``voice`` in the genre's speaking style, faded out at the cut.

    With ``prosody`` > 0 each phrase (one synthesiser call) gets its own pitch register, pitch
    range and rate around the utterance's, so F0 contours and tempo move within an utterance as in
    read and spontaneous speech. With ``languages="world"`` a voice reads text of its own language
    (:func:`bench.synth.text.items`: letters, syllables, numbers), English voices sometimes too.
    """
    from bench.synth.channels import GENRES
    from bench.synth.espeak import engine
    from bench.synth.text import items, passage
    from bench.synth.voices import utterance_params

    g = GENRES[genre]
    uv = utterance_params(voice, rng, jitter, rng.uniform(*g.rate), g.range_boost, rng.uniform(*g.pitch_shift))
    n_target = int(seconds * SR)
    n_words = int(np.ceil(seconds * uv.rate / 60 * 0.9)) + 2
    pieces: list[np.ndarray] = []
    total = 0
    for _ in range(6):
        text = passage(rng, n_words)
        rate, pitch, prange = uv.rate, uv.pitch, uv.prange
        if languages != "english" and (not uv.language.startswith("en") or rng.random() < 0.3):
            text = items(rng, n_words)
        if prosody > 0:
            rate = int(np.clip(rate * np.exp(0.12 * prosody * rng.standard_normal()), 80, 400))
            pitch = int(np.clip(pitch + 9 * prosody * rng.standard_normal(), 5, 95))
            prange = int(np.clip(prange * np.exp(0.3 * prosody * rng.standard_normal()), 5, 100))
        w = engine().synth(text, uv.language, uv.variant, rate, pitch, prange, int(rng.integers(1, 2**31)))
        loud = np.nonzero(np.abs(w) > 1e-3)[0]
        if loud.size:
            # Keep ~50 ms of the synthesiser's lead-in so pieces join like pauses, not clicks.
            w = w[max(0, loud[0] - 800) : loud[-1] + 1600]
        pieces.append(w)
        total += len(w)
        if total >= n_target:
            break
    x = np.concatenate(pieces)[:n_target]
    fade = min(160, len(x))
    x[len(x) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    return x


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def write_flac(path: Path, pcm: np.ndarray) -> None:
    """Atomically write 16 kHz 16-bit FLAC (a crash never leaves a truncated file under ``path``)."""
    import soundfile as sf

    from bench.procs import interrupt_after

    # a Ctrl-C inside libsndfile's write callback is swallowed: the file would be committed short
    with interrupt_after(), atomic_open(path, "wb") as fh:
        sf.write(fh, pcm, SR, format="FLAC", subtype="PCM_16")
