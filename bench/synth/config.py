"""Typed configuration of the synthetic corpus and its presets (``demo``, ``full``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.errors import BenchError

GENERATOR_VERSION = 1
LANGUAGE_SETS = ("english", "world")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated files (together with the generator version)."""

    preset: str = "demo"
    seed: int = 0
    train_speakers: int = 40
    val_speakers: int = 10  # held out from dev.lst, used by dev/val_trials.lst
    eval_speakers: int = 20
    utts: int = 12  # per training / validation speaker
    enroll_utts: int = 3  # per evaluation speaker, concatenated into eval/enroll/<spk>-enroll.flac
    test_utts: int = 8  # per evaluation speaker
    min_seconds: float = 2.0
    max_seconds: float = 5.0
    genres_per_speaker: tuple[int, int] = (2, 4)
    sessions_per_genre: tuple[int, int] = (1, 3)
    spread: float = 1.0  # how far speakers differ (voice traits)
    jitter: float = 1.0  # how much one speaker's utterances differ
    corpus_babble_speakers: int = 8  # talkers of in-corpus babble noise (disjoint from all others)
    noise_files: int = 8  # musan/noise
    music_files: int = 8  # musan/music
    speech_files: int = 8  # musan/speech: one held-out speaker each
    rir_rooms: int = 4  # rooms per room type
    rirs_per_room: int = 3
    val_nontarget_ratio: int = 10  # non-target to target trials in dev/val_trials.lst
    # Speakers that transfer to real voices (defaults keep the original generator bit for bit):
    languages: str = "english"  # english: English accents | world: many languages, each its own text
    telephone: float = 0.0  # probability that a session goes through an 8 kHz telephone codec path
    prosody: float = 0.0  # phrase-level F0 register, range and rate variation within an utterance
    glottal: bool = False  # per-speaker glottal source model (eSpeak Klatt variants) and spectral tilt

    def validate(self) -> SynthConfig:
        """Return self, or raise BenchError naming the first out-of-range option."""
        checks = [
            (self.train_speakers >= 2, "--speakers must be at least 2"),
            (self.val_speakers >= 2, "validation speakers must be at least 2"),
            (self.eval_speakers >= 2, "evaluation speakers must be at least 2"),
            (self.utts >= 2, "--utts must be at least 2"),
            (self.enroll_utts >= 1 and self.test_utts >= 1, "enrolment and test utterances must be at least 1"),
            (0.5 <= self.min_seconds <= self.max_seconds, "need 0.5 <= --min-seconds <= --max-seconds"),
            (self.max_seconds <= 60, "--max-seconds must be at most 60"),
            (self.train_speakers + self.val_speakers + self.eval_speakers <= 99999, "at most 99,999 speakers"),
            (self.languages in LANGUAGE_SETS, f"languages must be one of {', '.join(LANGUAGE_SETS)}"),
            (0.0 <= self.telephone <= 1.0, "telephone must be a probability in [0, 1]"),
            (0.0 <= self.prosody <= 3.0, "prosody must be in [0, 3]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BenchError(msg)
        return self

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, SynthConfig] = {
    # Small enough to generate in under a minute on 2 cores; a real (if easy-to-learn) SV task.
    "demo": SynthConfig(preset="demo"),
    # At least 1,000 training speakers, CN-Celeb-like eval size (200 enrolment speakers).
    "full": SynthConfig(
        preset="full", train_speakers=1000, val_speakers=100, eval_speakers=200, utts=20, enroll_utts=4,
        test_utts=15, min_seconds=2.0, max_seconds=8.0, corpus_babble_speakers=24, noise_files=60,
        music_files=60, speech_files=60, rir_rooms=20, rirs_per_room=10,
    ),
    # demo sizes with more speakers and the transfer options: many languages reading their own
    # text, telephone codecs, phrase-level prosody, glottal source variety, wider vocal tracts
    "transfer": SynthConfig(
        preset="transfer", train_speakers=80, val_speakers=10, eval_speakers=20, utts=10,
        languages="world", telephone=0.3, prosody=1.0, glottal=True, spread=1.2,
    ),
}  # fmt: skip

# Options whose default reproduces the original generator: left out of the manifest at their default,
# so corpora made before they existed are still recognised as complete.
TRANSFER_DEFAULTS = {"languages": "english", "telephone": 0.0, "prosody": 0.0, "glottal": False}


def make_config(preset: str, **overrides) -> SynthConfig:
    """A preset with the given non-None overrides (any :class:`SynthConfig` field, or ``speakers``:
    training speakers, with validation/evaluation speakers and bank sizes scaled in proportion)."""
    if preset not in PRESETS:
        raise BenchError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "speakers" in changes:
        # Everything scales with the training speakers so a small --speakers gives a small corpus.
        n = int(changes.pop("speakers"))
        ratio = n / base.train_speakers

        def scaled(value: int, least: int) -> int:
            return max(least, round(value * ratio))

        changes = {
            "train_speakers": n,
            "val_speakers": scaled(base.val_speakers, 2),
            "eval_speakers": scaled(base.eval_speakers, 2),
            "corpus_babble_speakers": scaled(base.corpus_babble_speakers, 3),
            "noise_files": scaled(base.noise_files, 2),
            "music_files": scaled(base.music_files, 2),
            "speech_files": scaled(base.speech_files, 2),
            "rir_rooms": scaled(base.rir_rooms, 1),
            **changes,
        }
    return dataclasses.replace(base, **changes).validate()
