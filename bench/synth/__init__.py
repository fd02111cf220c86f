"""The embedded synthetic speaker corpus (``bench data synth``).

Speakers are persistent eSpeak NG voices (pitch register, formant scaling, rate, roughness,
breathiness, accent); CN-Celeb-like genres apply rooms, band limits and noise per session; the
output has the CN-Celeb1 layout plus MUSAN/RIRS_NOISES-like augmentation banks.

    >>> from bench.synth import generate, make_config
    >>> generate(make_config("demo"), "data/synth-demo", workers=2)  # doctest: +SKIP

(not run as a doctest: it synthesises a ~70 MB corpus for several seconds)
"""

from bench.synth.baseline import run_baseline
from bench.synth.config import GENERATOR_VERSION, PRESETS, SynthConfig, make_config
from bench.synth.corpus import generate, plan

__all__ = ["GENERATOR_VERSION", "PRESETS", "SynthConfig", "generate", "make_config", "plan", "run_baseline"]
