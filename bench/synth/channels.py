"""Recording conditions: room impulse responses, noise sources, band-limiting, and the genres.

A *genre* (CN-Celeb's "interview", "singing", ...) is a distribution over channels and speaking
styles.  A speaker's *session* draws one :class:`Channel` from its genre (same room, microphone
and noise type for every utterance of the session); each utterance then draws its own SNR, level
and noise excerpt.  Enrolment and test utterances come from different sessions, so they differ
in channel as in CN-Celeb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SR = 16000


# Filtering happens in the frequency domain with numpy alone: whole utterances are short, one FFT
# applies room, band-limit and microphone colour together, and importing scipy.signal costs more
# than generating a demo corpus's worth of filters.
def fft_len(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 1)


def lowpass_gain(f: np.ndarray, fc: float, order: int) -> np.ndarray:
    """Magnitude response of a Butterworth low-pass of ``order`` with corner ``fc`` (Hz)."""
    return 1.0 / np.sqrt(1.0 + (f / fc) ** (2 * order))


def highpass_gain(f: np.ndarray, fc: float, order: int) -> np.ndarray:
    return 1.0 / np.sqrt(1.0 + (fc / np.maximum(f, 1e-3)) ** (2 * order))


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution via FFT."""
    n = len(x) + len(h) - 1
    m = fft_len(n)
    return np.fft.irfft(np.fft.rfft(x, m) * np.fft.rfft(h, m), m)[:n]


def filtered(x: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``x`` through the zero-phase filter whose magnitude response is ``gain(f_hz)``."""
    m = fft_len(len(x))
    f = np.fft.rfftfreq(m, 1 / SR)
    return np.fft.irfft(np.fft.rfft(x, m) * gain(f), m)[: len(x)]


# ---------------------------------------------------------------- room impulse responses
def simulate_rir(rng: np.random.Generator, rt60: float, drr_db: float, sr: int = SR) -> np.ndarray:
    """A room impulse response: direct path, sparse early reflections, exponentially decaying tail.

    High frequencies decay faster than low ones (air and wall absorption), which is what makes
    reverberant speech sound dull rather than merely echoic.  Peak-normalised to 1.
    """
    n = int(min(max(rt60 * 1.1, 0.1), 1.2) * sr)
    t = np.arange(n) / sr
    delay = int(rng.integers(16, 80))
    white = rng.standard_normal(n)
    low = filtered(white, lambda f: lowpass_gain(f, 1500.0, 2))
    high = white - low
    tail = low * np.exp(-6.9 * t / rt60) + high * np.exp(-6.9 * t / (0.55 * rt60))
    tail[: delay + int(0.003 * sr)] = 0.0
    for _ in range(int(rng.integers(6, 14))):
        k = delay + int(rng.uniform(0.002, 0.05) * sr)
        if k < n:
            tail[k] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * np.exp(-6.9 * t[k] / rt60)
    # Scale the reverberant part so the direct-to-reverberant ratio is drr_db.
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    rir = tail
    rir[delay] += 1.0
    return (rir / np.max(np.abs(rir))).astype(np.float32)


ROOM_TYPES: dict[str, tuple[float, float]] = {
    # RIRS_NOISES-style room classes -> RT60 range (s)
    "smallroom": (0.15, 0.4),
    "mediumroom": (0.35, 0.75),
    "largeroom": (0.7, 1.2),
}


# ---------------------------------------------------------------- noise sources
def coloured_noise(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^alpha (0 white, 1 pink, 2 brown), unit RMS."""
    m = fft_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / SR)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (alpha / 2), m)[:n]
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum with harmonics plus a little hiss (cheap electronics)."""
    t = np.arange(n) / SR
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) for k in range(1, 8))
    x = x + 0.05 * rng.standard_normal(n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def ambient(rng: np.random.Generator, n: int) -> np.ndarray:
    """Band-passed coloured noise with slow loudness changes (fans, traffic, rain, crowds far away)."""
    x = coloured_noise(rng, n, rng.uniform(0.0, 2.0))
    lo = rng.uniform(60, 800)
    hi = min(rng.uniform(lo * 2, 7800), 7900)
    x = filtered(x, lambda f: highpass_gain(f, lo, 2) * lowpass_gain(f, hi, 2))
    rate = rng.uniform(0.1, 2.0)
    x = x * (1 + 0.5 * np.sin(2 * np.pi * rate * np.arange(n) / SR + rng.uniform(0, 6.3)))
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def music(rng: np.random.Generator, n: int) -> np.ndarray:
    """Synthetic music: a chord progression of harmonic tones, a bass line and percussive hits."""
    t_beat = 60.0 / rng.uniform(70, 160)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11]) if rng.random() < 0.6 else np.array([0, 2, 3, 5, 7, 8, 10])
    n_harm = int(rng.integers(2, 7))
    beat = int(t_beat * SR)
    out = np.zeros(n, np.float32)
    decay = rng.uniform(0.1, 0.6) * SR
    env = np.exp(-np.arange(min(beat * 2, int(decay * 5))) / decay).astype(np.float32)
    tb = np.arange(len(env)) / SR
    harm = np.arange(1, n_harm + 1)
    harm_w = (1.0 / harm**1.3).astype(np.float32)
    for start in range(0, n, beat):
        length = min(len(env), n - start)
        degree = rng.choice(scale, size=3, replace=False)
        tone = np.zeros(len(env), np.float32)
        for d in degree:
            f = root * 2 ** ((d + 12 * rng.integers(0, 2)) / 12)
            tone += (harm_w @ np.sin(np.outer(2 * np.pi * f * harm, tb))).astype(np.float32)
        tone += 1.5 * np.sin(2 * np.pi * root / 2 * tb).astype(np.float32)
        out[start : start + length] += (tone * env)[:length]
        if rng.random() < 0.7:
            hit = min(int(0.05 * SR), n - start)
            out[start : start + hit] += (
                2.0 * rng.standard_normal(hit).astype(np.float32) * np.exp(-np.arange(hit) / 200)
            )
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


@dataclass
class NoiseContext:
    """Material that noise sources may draw on: the babble pool (speech of held-out speakers)."""

    babble_pool: list[np.ndarray] = field(default_factory=list)


def babble(rng: np.random.Generator, n: int, ctx: NoiseContext) -> np.ndarray:
    """3-7 overlapping talkers drawn from the babble pool (held-out synthetic speakers)."""
    if not ctx.babble_pool:
        return coloured_noise(rng, n, 1.0)
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(3, 8))):
        src = ctx.babble_pool[rng.integers(len(ctx.babble_pool))]
        reps = int(np.ceil((n + len(src)) / max(len(src), 1)))
        tiled = np.tile(src, reps)
        off = int(rng.integers(0, len(src)))
        out += rng.uniform(0.5, 1.0) * tiled[off : off + n]
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


NoiseFn = Callable[[np.random.Generator, int, NoiseContext], np.ndarray]

NOISES: dict[str, NoiseFn] = {
    "white": lambda rng, n, ctx: coloured_noise(rng, n, 0.0),
    "pink": lambda rng, n, ctx: coloured_noise(rng, n, 1.0),
    "brown": lambda rng, n, ctx: coloured_noise(rng, n, 2.0),
    "hum": lambda rng, n, ctx: hum(rng, n),
    "ambient": lambda rng, n, ctx: ambient(rng, n),
    "music": lambda rng, n, ctx: music(rng, n),
    "babble": babble,
}


# ---------------------------------------------------------------- genres
@dataclass(frozen=True)
class Genre:
    """A recording condition family: channel distribution plus speaking style."""

    reverb_prob: float
    rt60: tuple[float, float]
    drr_db: tuple[float, float]
    band_low: tuple[float, float]  # high-pass corner range, Hz
    band_high: tuple[float, float]  # low-pass corner range, Hz
    noises: dict[str, float]  # noise kind -> weight; "none" for no added noise
    snr_db: tuple[float, float]
    rate: tuple[float, float] = (0.95, 1.05)  # speaking-rate factor
    range_boost: float = 0.0  # added to eSpeak's pitch range (expressive or sung speech)
    pitch_shift: tuple[float, float] = (0.0, 0.0)  # relative change of the pitch register
    level_db: tuple[float, float] = (-26.0, -16.0)  # RMS level of the final mix, dBFS


GENRES: dict[str, Genre] = {
    "interview": Genre(0.6, (0.2, 0.5), (4, 12), (60, 200), (5500, 7800), {"none": 1, "ambient": 2, "babble": 1}, (12, 30)),
    "singing": Genre(0.7, (0.4, 1.0), (0, 8), (60, 150), (6000, 7800), {"music": 1}, (0, 10),
                     rate=(0.6, 0.8), range_boost=35, pitch_shift=(0.05, 0.3)),
    "vlog": Genre(0.3, (0.2, 0.5), (5, 12), (150, 350), (3400, 7000), {"ambient": 2, "babble": 1, "hum": 1}, (5, 20),
                  rate=(1.0, 1.2)),
    "drama": Genre(0.8, (0.3, 0.9), (0, 8), (80, 200), (5000, 7800), {"music": 1, "ambient": 1, "none": 1}, (8, 25),
                   range_boost=20, pitch_shift=(-0.05, 0.15)),
    "movie": Genre(0.8, (0.4, 1.2), (-2, 6), (60, 150), (6000, 7800), {"music": 1, "ambient": 1, "babble": 1}, (3, 18),
                   range_boost=10),
    "speech": Genre(0.9, (0.7, 1.2), (-3, 5), (100, 250), (4000, 7000), {"babble": 1, "pink": 1}, (10, 25),
                    rate=(0.8, 0.95)),
    "entertainment": Genre(0.5, (0.3, 0.8), (2, 10), (80, 200), (5000, 7800), {"babble": 2, "music": 1}, (3, 15),
                           rate=(1.05, 1.25), range_boost=15, pitch_shift=(0.0, 0.1)),
    "live_broadcast": Genre(0.4, (0.3, 0.7), (3, 10), (250, 400), (3000, 4000), {"white": 1, "hum": 1, "babble": 1}, (8, 22)),
    "recitation": Genre(0.5, (0.3, 0.8), (4, 12), (60, 120), (6500, 7800), {"none": 2, "pink": 1}, (20, 35),
                        rate=(0.8, 0.95), range_boost=10),
    "advertisement": Genre(0.2, (0.2, 0.4), (8, 15), (100, 250), (5000, 7800), {"music": 2, "none": 1}, (5, 18),
                           rate=(1.1, 1.3), pitch_shift=(0.0, 0.1)),
    "play": Genre(0.9, (0.5, 1.1), (0, 6), (80, 200), (5000, 7800), {"babble": 1, "music": 1}, (5, 18),
                  range_boost=20),
}  # fmt: skip


@dataclass
class Channel:
    """One session's recording chain: room, microphone band and EQ, noise type."""

    genre: str
    rir: np.ndarray | None
    band: tuple[float, float, int]  # microphone / transmission band: low corner, high corner (Hz), order
    peak: tuple[float, float]  # a microphone resonance: centre (Hz), gain (-0.6 dip .. +0.9 boost)
    noise: str
    snr_db: tuple[float, float]
    level_db: tuple[float, float]
    codec: str = ""  # "" = wideband; else an 8 kHz telephone path with this codec (bench.synth.codecs)


TELEPHONE_CODECS = ("gsm", "mulaw", "alaw", "none")


def make_channel(genre_name: str, rng: np.random.Generator, telephone: float = 0.0) -> Channel:
    """Draw a session channel from a genre; with probability ``telephone`` it is a phone call
    (300-3400 Hz, 8 kHz, one of :data:`TELEPHONE_CODECS`). That draw comes after the others, so
    ``telephone=0`` gives the channels of the original generator."""
    g = GENRES[genre_name]
    rir = None
    if rng.random() < g.reverb_prob:
        rir = simulate_rir(rng, rng.uniform(*g.rt60), rng.uniform(*g.drr_db))
    band = (float(rng.uniform(*g.band_low)), float(rng.uniform(*g.band_high)), int(rng.integers(2, 5)))
    peak = (float(rng.uniform(300, 3500)), float(rng.uniform(-0.6, 0.9)))
    kinds = list(g.noises)
    w = np.asarray([g.noises[k] for k in kinds], float)
    noise = kinds[rng.choice(len(kinds), p=w / w.sum())]
    codec = ""
    if telephone > 0 and rng.random() < telephone:
        codec = TELEPHONE_CODECS[int(rng.integers(len(TELEPHONE_CODECS)))]
        band = (max(band[0], 300.0), min(band[1], 3400.0), band[2])
    return Channel(genre_name, rir, band, peak, noise, g.snr_db, g.level_db, codec)


def channel_gain(ch: Channel, f: np.ndarray) -> np.ndarray:
    """Magnitude response of the session's microphone and transmission chain."""
    lo, hi, order = ch.band
    fc, g = ch.peak
    # Resonance as a one-octave-wide bump on a log-frequency axis.
    bump = np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / fc) / 0.5) ** 2)
    return highpass_gain(f, lo, order) * lowpass_gain(f, hi, order) * (1.0 + g * bump)


def apply_channel(speech: np.ndarray, ch: Channel, rng: np.random.Generator, ctx: NoiseContext) -> np.ndarray:
    """Speech through the session channel with this utterance's noise excerpt, SNR and level."""
    x = speech.astype(np.float32)
    n = len(x)
    if ch.rir is not None:
        d = int(np.argmax(np.abs(ch.rir)))
        x = convolve(x, ch.rir)[d : d + n].astype(np.float32)
    if ch.noise != "none":
        noise = NOISES[ch.noise](rng, n, ctx)
        active = x[np.abs(x) > 0.05 * np.max(np.abs(x))] if np.any(x) else x
        p_speech = float(np.mean(active**2)) if active.size else 1e-8
        snr = rng.uniform(*ch.snr_db)
        x = x + noise * np.sqrt(p_speech / 10 ** (snr / 10))
    y = filtered(x, lambda f: channel_gain(ch, f))
    level = 10 ** (rng.uniform(*ch.level_db) / 20)
    y = y * level / (np.sqrt(np.mean(y**2)) + 1e-9)
    if ch.codec:
        from bench.synth.codecs import telephone

        y = telephone(np.clip(y, -1, 1), SR, ch.codec)
    peak = np.max(np.abs(y)) if n else 0.0
    if peak > 0.98:
        y = y * 0.98 / peak
    return y.astype(np.float32)
