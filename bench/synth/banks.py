"""Augmentation banks in MUSAN / RIRS_NOISES-like folders, generated alongside the corpus.

They come from their own random streams (and their babble talkers from their own held-out
speakers), so training augmentation never replays the exact noises, rooms or talkers that
shaped the evaluation audio, as with real MUSAN and CN-Celeb.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.synth.config import SynthConfig

BANK_SECONDS = {"noise": (6.0, 10.0), "music": (8.0, 14.0), "speech": (8.0, 12.0)}


def bank_tasks(cfg: SynthConfig) -> list[tuple[tuple[str, int], int]]:
    """((kind, index), progress units) for every bank file (RIRs grouped one task per room type)."""
    from bench.synth.channels import ROOM_TYPES

    out: list[tuple[tuple[str, int], int]] = []
    out += [(("speech", k), 2) for k in range(cfg.speech_files)]
    out += [(("noise", k), 1) for k in range(cfg.noise_files)]
    out += [(("music", k), 1) for k in range(cfg.music_files)]
    out += [(("rirs", r), 1) for r in range(len(ROOM_TYPES))]
    return out


def bank_counts(cfg: SynthConfig) -> dict[str, int]:
    from bench.synth.channels import ROOM_TYPES

    return {
        "musan_noise": cfg.noise_files,
        "musan_music": cfg.music_files,
        "musan_speech": cfg.speech_files,
        "rirs": len(ROOM_TYPES) * cfg.rir_rooms * cfg.rirs_per_room,
    }


def run_bank_task(cfg: SynthConfig, out: Path, task: tuple[str, int]) -> int:
    """Write one bank file (or one room type's RIRs) unless already there."""
    from bench.synth import speech as C
    from bench.synth.channels import NOISES, ROOM_TYPES, NoiseContext, simulate_rir

    kind, k = task
    if kind == "rirs":
        room_type = list(ROOM_TYPES)[k]
        lo, hi = ROOM_TYPES[room_type]
        for room in range(1, cfg.rir_rooms + 1):
            # Positions in one room share its RT60; only the direct-to-reverberant ratio moves.
            rt60 = float(C.rng_for(cfg, C.S_RIR, k, room).uniform(lo, hi))
            for j in range(1, cfg.rirs_per_room + 1):
                path = out / "rirs" / "simulated_rirs" / room_type / f"Room{room:03d}-{j:05d}.flac"
                if not path.exists():
                    rng = C.rng_for(cfg, C.S_RIR, k, room, j)
                    rir = simulate_rir(rng, rt60, rng.uniform(-3, 12))
                    C.write_flac(path, C.to_pcm16(rir * 0.99))
        return cfg.rir_rooms * cfg.rirs_per_room
    path = out / "musan" / kind / f"{kind}-{k:04d}.flac"
    if path.exists():
        return 1
    stream = {"speech": C.S_SPEECH_BANK, "noise": C.S_NOISE_BANK, "music": C.S_MUSIC_BANK}[kind]
    rng = C.rng_for(cfg, stream, k)
    seconds = rng.uniform(*BANK_SECONDS[kind])
    if kind == "speech":
        x = C.clean_passage(cfg, rng, seconds)
    else:
        names = ["white", "pink", "brown", "hum", "ambient", "ambient", "ambient"] if kind == "noise" else ["music"]
        x = NOISES[names[rng.integers(len(names))]](rng, int(seconds * C.SR), NoiseContext())
        x = x * 0.1
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.98:
        x = x * 0.98 / peak
    C.write_flac(path, C.to_pcm16(x))
    return 1
