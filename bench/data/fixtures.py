"""Tiny corpora in the real on-disk layouts, for tests and the loader benchmark.

Audio is a per-speaker tone plus white noise (0.5-1 s), so files are small and fast to write while
each speaker still sounds different. All writers are deterministic in ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(rng: np.random.Generator, freq: float, seconds: float, sr: int = SR, noise: float = 0.05) -> np.ndarray:
    """float32 ``[round(seconds*sr)]``: a sine at ``freq`` Hz (random phase) plus white noise."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + noise * rng.standard_normal(n)
    return x.astype(np.float32)


def write(path: Path, wave: np.ndarray, sr: int = SR) -> Path:
    """Write ``wave`` with the format implied by the suffix (.flac, .wav)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr)
    return path


def _seconds(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def write_cnceleb1(
    root: str | Path,
    *,
    train_speakers: int = 4,
    utts: int = 3,
    eval_speakers: int = 2,
    test_utts: int = 2,
    genres: tuple[str, ...] = ("singing", "speech"),
    seconds: tuple[float, float] = (0.5, 1.0),
    val_speakers: int = 0,
    seed: int = 0,
) -> Path:
    """CN-Celeb1 layout; lists and trials name ``.wav`` files while the audio is ``.flac``.

    ``val_speakers`` > 0 adds speakers outside ``dev/dev.lst`` and a ``dev/val_trials.lst`` over them
    (the ``bench data synth`` convention).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_total = train_speakers + val_speakers + eval_speakers
    spks = [f"id{i:05d}" for i in range(n_total)]
    train, val, evals = spks[:train_speakers], spks[train_speakers:train_speakers + val_speakers], spks[-eval_speakers:]
    for k, spk in enumerate(spks):
        freq = 150.0 + 40.0 * k
        for u in range(utts):
            genre = genres[u % len(genres)]
            write(root / "data" / spk / f"{genre}-01-{u + 1:03d}.flac", tone(rng, freq, _seconds(rng, *seconds)))
        if spk in evals:
            write(root / "eval" / "enroll" / f"{spk}-enroll.flac", tone(rng, freq, seconds[1]))
            for u in range(test_utts):
                genre = genres[u % len(genres)]
                write(root / "eval" / "test" / f"{spk}-{genre}-02-{u + 1:03d}.flac",
                      tone(rng, freq, _seconds(rng, *seconds)))
    (root / "dev").mkdir(parents=True, exist_ok=True)
    (root / "dev" / "dev.lst").write_text("".join(f"{s}\n" for s in train))
    lists = root / "eval" / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "enroll.lst").write_text("".join(f"{s}-enroll enroll/{s}-enroll.wav\n" for s in evals))
    (lists / "enroll.map").write_text("".join(
        f"{s}-enroll " + " ".join(f"{s}/{genres[u % len(genres)]}-01-{u + 1:03d}.wav" for u in range(utts)) + "\n"
        for s in evals))
    tests = [f"test/{s}-{genres[u % len(genres)]}-02-{u + 1:03d}.wav" for s in evals for u in range(test_utts)]
    (lists / "test.lst").write_text("".join(f"{t}\n" for t in tests))
    trials = [f"{s}-enroll {t} {int(t.split('/')[1].startswith(s))}\n" for s in evals for t in tests]
    (lists / "trials.lst").write_text("".join(trials))
    if val_speakers:
        ids = [f"{s}/{genres[u % len(genres)]}-01-{u + 1:03d}.wav" for s in val for u in range(utts)]
        lines = [f"{a} {b} {int(a.split('/')[0] == b.split('/')[0])}\n"
                 for i, a in enumerate(ids) for b in ids[i + 1:]]
        (root / "dev" / "val_trials.lst").write_text("".join(lines))
    return root


def write_cnceleb2(root: str | Path, *, speakers: int = 3, utts: int = 2, first_id: int = 10000, seed: int = 1) -> Path:
    """CN-Celeb2 layout: ``data/<spk>/<genre>-<session>-<idx>.flac`` only."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in range(speakers):
        for u in range(utts):
            write(root / "data" / f"id{first_id + k:05d}" / f"vlog-01-{u + 1:03d}.flac",
                  tone(rng, 300.0 + 30 * k, _seconds(rng, 0.5, 1.0)))
    return root


def write_voxceleb(root: str | Path, *, train_speakers: int = 3, test_speakers: int = 2, videos: int = 2,
                   seed: int = 2) -> Path:
    """VoxCeleb1 layout ``wav/id*/<video>/<n>.wav`` with a ``veri_test2.txt`` over the test speakers."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    test_ids = []
    for k in range(train_speakers + test_speakers):
        spk = f"id{10001 + k}"
        for v in range(videos):
            uid = f"{spk}/vid{v:08d}/{1:05d}"
            write(root / "wav" / f"{uid}.wav", tone(rng, 200.0 + 25 * k, _seconds(rng, 0.5, 1.0)))
            if k >= train_speakers:
                test_ids.append(uid)
    lines = [f"{int(a.split('/')[0] == b.split('/')[0])} {a}.wav {b}.wav\n"
             for i, a in enumerate(test_ids) for b in test_ids[i + 1:]]
    (root / "veri_test2.txt").write_text("".join(lines))
    return root


def write_kaldi(d: str | Path, *, speakers: int = 3, utts: int = 2, trials: bool = True, seed: int = 3) -> Path:
    """A Kaldi data dir (``wav.scp`` with relative paths, ``utt2spk``, optional ``trials``)."""
    d = Path(d)
    rng = np.random.default_rng(seed)
    scp, u2s, ids = [], [], []
    for k in range(speakers):
        spk = f"spk{k}"
        for u in range(utts):
            uid = f"{spk}-utt{u}"
            write(d / "wav" / f"{uid}.wav", tone(rng, 180.0 + 35 * k, _seconds(rng, 0.5, 1.0)))
            scp.append(f"{uid} wav/{uid}.wav\n")
            u2s.append(f"{uid} {spk}\n")
            ids.append(uid)
    (d / "wav.scp").write_text("".join(scp))
    (d / "utt2spk").write_text("".join(u2s))
    if trials:
        tested = [u for u in ids if u.endswith("utt1")]
        enrolled = [u for u in ids if u.endswith("utt0")]
        lines = [f"{e} {t} {'target' if e.split('-')[0] == t.split('-')[0] else 'nontarget'}\n"
                 for e in enrolled for t in tested]
        (d / "trials").write_text("".join(lines))
    return d


def write_musan_rirs(root: str | Path, *, files: int = 2, seconds: float = 1.0, seed: int = 4) -> tuple[Path, Path]:
    """``musan/{noise,music,speech}/<subset>/*.wav`` and ``rirs/simulated_rirs/<room>/<Room>/*.wav`` +
    ``rirs/real_rirs_isotropic_noises/*.wav`` (RIRS_NOISES layout). Returns (musan, rirs)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    musan, rirs = root / "musan", root / "rirs"
    for kind, subset in (("noise", "free-sound"), ("music", "fma"), ("speech", "librivox")):
        for i in range(files):
            if kind == "noise":
                x = 0.1 * rng.standard_normal(int(seconds * SR))
            else:
                x = tone(rng, 220.0 * (i + 1) + (0 if kind == "music" else 37), seconds, noise=0.02)
            write(musan / kind / subset / f"{kind}-{subset}-{i:04d}.wav", np.asarray(x, dtype=np.float32))
    for i in range(files):
        n = int(0.25 * SR)
        decay = np.exp(-np.arange(n) / (0.03 * SR))
        rir = (rng.standard_normal(n) * decay).astype(np.float32)
        rir[0] = 1.0
        write(rirs / "simulated_rirs" / "smallroom" / f"Room{i + 1:03d}" / f"Room{i + 1:03d}-00001.wav", rir)
    write(rirs / "real_rirs_isotropic_noises" / "RVB2014_type1_rir_largeroom1_near_angla.wav",
          (np.r_[1.0, np.zeros(400)] + 0.01).astype(np.float32))
    write(rirs / "real_rirs_isotropic_noises" / "RVB2014_type1_noise_largeroom1_1.wav",
          (0.1 * rng.standard_normal(SR // 2)).astype(np.float32))
    return musan, rirs
