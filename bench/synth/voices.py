"""Persistent synthetic speakers: a :class:`Voice` per speaker, rendered as an eSpeak voice variant.

Identity comes from pitch register, vocal-tract (formant) scaling with per-formant idiosyncrasy,
speaking rate, roughness, breathiness, voicing/consonant strength and accent (the eSpeak language
voice).  Each utterance adds small jitter (:func:`utterance_params`) so no two utterances of a
speaker are identical.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# (eSpeak language voice, weight): mostly English accents; a few foreign phonologies read the
# English text with a strong accent, as non-native speakers do.
ACCENTS: tuple[tuple[str, float], ...] = (
    ("en-us", 0.20), ("en", 0.18), ("en-gb-scotland", 0.09), ("en-gb-x-rp", 0.09), ("en-029", 0.08),
    ("en-us-nyc", 0.07), ("en-gb-x-gbclan", 0.06), ("en-gb-x-gbcwmd", 0.06), ("de", 0.04),
    ("nl", 0.04), ("fr", 0.03), ("es", 0.03), ("it", 0.03),
)  # fmt: skip

# Wider set (SynthConfig.languages = "world"): the languages of the real-voice corpus (KLettres
# readers, telephone prompts) and other common eSpeak voices, each reading its own language.
WORLD_LANGUAGES: tuple[tuple[str, float], ...] = (
    ("en-us", 0.10), ("en", 0.06), ("en-gb-x-rp", 0.03), ("en-gb-scotland", 0.02), ("en-029", 0.02),
    ("es", 0.06), ("fr", 0.06), ("it", 0.06), ("de", 0.05), ("ru", 0.05), ("pt-br", 0.04), ("nl", 0.03),
    ("cs", 0.03), ("da", 0.03), ("nb", 0.03), ("hu", 0.03), ("lt", 0.03), ("uk", 0.03), ("ar", 0.03),
    ("he", 0.02), ("ml", 0.02), ("tn", 0.02), ("pl", 0.03), ("sv", 0.02), ("tr", 0.02), ("el", 0.02),
    ("fi", 0.02), ("hi", 0.03),
)  # fmt: skip

# eSpeak NG's Klatt synthesiser variants (1-6) use other glottal source models than its default
# wave synthesiser (0); "glottal" voices draw one of them, weighted towards the default.
KLATT_CHOICES = (0, 0, 0, 1, 2, 3, 4, 5, 6)

N_FORMANTS = 9


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker's fixed traits (eSpeak variant units: Hz and percentages)."""

    gender: str
    language: str
    pitch_base: float  # Hz, bottom of the speaker's register
    pitch_span: float  # Hz, register width above the base
    tract: float  # vocal-tract scale applied to all formant frequencies (1.0 = eSpeak default)
    formant_freq: tuple[float, ...]  # per-formant idiosyncratic factor on top of ``tract``
    formant_height: tuple[float, ...]  # percent
    formant_width: tuple[float, ...]  # percent
    rate: float  # words per minute
    roughness: int  # 0..7
    flutter: int  # slow pitch wobble, eSpeak units (its default voice uses 64)
    breath: int  # 0..6, aspiration noise mixed into the higher formants
    voicing: int  # percent
    consonants: int  # percent
    expressiveness: float  # eSpeak pitch range parameter 0..100
    klatt: int = 0  # glottal source model: 0 = eSpeak's wave synthesiser, 1-6 = Klatt variants
    tone: tuple[float, ...] = ()  # spectral tilt of the source: eSpeak 'tone' (Hz, percent) pairs


def sample_voice(
    rng: np.random.Generator, spread: float = 1.0, languages: str = "english", glottal: bool = False
) -> Voice:
    """Draw a speaker.  ``spread`` scales how far speakers differ (1.0 = the presets' default).

    ``languages="world"`` draws the language from :data:`WORLD_LANGUAGES`; ``glottal`` draws a
    glottal source model and spectral tilt. Both draw after every default draw, so the default
    voices are unchanged by the options' existence.
    """
    female = bool(rng.random() < 0.5)
    names, weights = zip(*ACCENTS)
    p = np.asarray(weights) / sum(weights)
    language = names[rng.choice(len(names), p=p)]
    if female:
        base, span, tract = rng.uniform(150, 215), rng.uniform(55, 105), rng.uniform(1.04, 1.18)
    else:
        base, span, tract = rng.uniform(72, 125), rng.uniform(30, 65), rng.uniform(0.88, 1.02)
    tract = 1.0 + (tract - 1.0) * spread
    voice = Voice(
        gender="female" if female else "male",
        language=language,
        pitch_base=float(base),
        pitch_span=float(span),
        tract=float(tract),
        formant_freq=tuple(float(1 + 0.045 * spread * rng.standard_normal()) for _ in range(N_FORMANTS)),
        formant_height=tuple(
            float(np.clip(100 + 14 * spread * rng.standard_normal(), 60, 150)) for _ in range(N_FORMANTS)
        ),
        formant_width=tuple(
            float(np.clip(100 + 16 * spread * rng.standard_normal(), 60, 160)) for _ in range(N_FORMANTS)
        ),
        rate=float(np.clip(rng.normal(165, 22 * spread), 110, 240)),
        roughness=int(rng.integers(0, 6)),
        flutter=int(rng.integers(0, 60)),
        breath=int(rng.integers(0, 5)) if female else int(rng.integers(0, 3)),
        voicing=int(np.clip(rng.normal(100, 12 * spread), 70, 130)),
        consonants=int(np.clip(rng.normal(100, 15 * spread), 60, 140)),
        expressiveness=float(np.clip(rng.normal(50, 12 * spread), 15, 90)),
    )
    if languages == "world":
        names, weights = zip(*WORLD_LANGUAGES)
        p = np.asarray(weights) / sum(weights)
        voice = dataclasses.replace(voice, language=names[rng.choice(len(names), p=p)])
    if glottal:
        # tilt: source energy at 0.6/1.2/2/3 kHz relative to eSpeak's default (100 %), so voices
        # range from breathy-dark (falling) to pressed-bright (rising)
        slope = rng.normal(0, 25 * spread)
        tone = tuple(
            v for k, f in enumerate((600, 1200, 2000, 3000)) for v in (f, float(np.clip(100 + slope * k, 40, 220)))
        )
        voice = dataclasses.replace(voice, klatt=int(rng.choice(KLATT_CHOICES)), tone=tone)
    return voice


@dataclass(frozen=True)
class UtteranceVoice:
    """What one utterance is spoken with: the eSpeak variant text and the runtime parameters."""

    language: str
    variant: str
    rate: int
    pitch: int
    prange: int


def utterance_params(
    voice: Voice,
    rng: np.random.Generator,
    jitter: float = 1.0,
    rate_factor: float = 1.0,
    range_boost: float = 0.0,
    pitch_shift: float = 0.0,
) -> UtteranceVoice:
    """The voice with per-utterance jitter and a speaking style (rate factor, range boost, pitch shift)."""
    j = jitter
    tract = voice.tract * (1 + 0.012 * j * rng.standard_normal())
    base = voice.pitch_base * (1 + 0.05 * j * rng.standard_normal() + pitch_shift)
    lines = [
        "language variant",
        "name synthetic",
        f"gender {voice.gender}",
        f"pitch {base:.0f} {base + voice.pitch_span:.0f}",
        f"flutter {voice.flutter}",
        f"roughness {voice.roughness}",
        f"voicing {voice.voicing}",
        f"consonants {voice.consonants} {voice.consonants}",
    ]
    for k in range(N_FORMANTS):
        freq = 100 * tract * voice.formant_freq[k] * (1 + 0.01 * j * rng.standard_normal())
        lines.append(f"formant {k} {freq:.0f} {voice.formant_height[k]:.0f} {voice.formant_width[k]:.0f}")
    if voice.klatt:
        lines.append(f"klatt {voice.klatt}")
    if voice.tone:
        lines.append("tone " + " ".join(f"{v:.0f}" for v in voice.tone))
    if voice.breath:
        b = voice.breath
        lines.append(f"breath 0 {b} {b} {b} {b + 1} {b + 1} {b + 1} {b}")
    rate = voice.rate * rate_factor * (1 + 0.06 * j * rng.standard_normal())
    prange = voice.expressiveness + range_boost + 8 * j * rng.standard_normal()
    return UtteranceVoice(
        language=voice.language,
        variant="\n".join(lines) + "\n",
        rate=int(np.clip(rate, 80, 400)),
        pitch=int(np.clip(50 + 6 * j * rng.standard_normal(), 20, 80)),
        prange=int(np.clip(prange, 5, 100)),
    )
