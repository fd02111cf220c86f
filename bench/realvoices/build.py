"""Build the evaluation-only real-voice corpus in the CN-Celeb1 layout (``bench data real``).

Layout under ``out`` (lists say ``.wav`` where files are ``.flac``, as CN-Celeb1 does)::

    data/<spk>/<cell>-01-<k>.flac              enrolment utterances (listed in enroll.map)
    eval/enroll/<spk>-enroll.flac              their concatenation
    eval/test/<spk>-<cell>-02-<k>.flac         test utterances (disjoint clips from enrolment)
    eval/lists/{enroll.lst,enroll.map,test.lst,trials.lst}
    eval/lists/trials-<cell>.lst               the trials of one cell
    licences/<package>.copyright               each package's Debian copyright file
    licences.json, SOURCES.md                  licence, copyright holder and voices of each package
    corpus.json                                manifest, written last

An utterance is several clips of one reader (KLettres clips are single letters or syllables)
joined by short pauses until it lasts ``min_seconds``..``max_seconds``; clips are used once, so
enrolment and test never share a recording. Trials pair every enrolment model of a cell with every
test utterance of the same cell: a recording source (and, in the telephone cells, a language) is
never the thing that separates a target from a non-target trial. Telephone prompts all go through
one channel (8 kHz, GSM 06.10) so a WAV package and a GSM package of one language sound alike.
Everything is resampled to 16 kHz mono.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json
from bench.realvoices.fetch import fetch, how_to_get
from bench.realvoices.sources import CELLS, VOICES, Licence, Voice, copyright_file, packages, voice_clips, voice_licence

SR = 16000
GENERATOR = "bench.realvoices"
VERSION = 1


class RealVoicesUnavailable(BenchError):
    """No cell could be built: the packages are missing (the message says how to get them)."""


@dataclass(frozen=True)
class RealConfig:
    """How utterances and trials are cut from the clips (recorded in ``corpus.json``)."""

    seed: int = 0
    min_seconds: float = 3.0
    max_seconds: float = 5.0
    gap_seconds: float = 0.15
    enroll_utts: int = 3
    max_test_utts: int = 12
    telephone_test_utts: int = 40  # telephone cells have two speakers each but hundreds of prompts
    rms: float = 0.05  # utterance level (about -26 dBFS)

    def validate(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise BenchError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if min(self.enroll_utts, self.max_test_utts, self.telephone_test_utts) < 1:
            raise BenchError("enroll_utts, max_test_utts and telephone_test_utts must be >= 1")


# ---------------------------------------------------------------------------------- audio


def read_clip(path: Path, v: Voice) -> np.ndarray:
    """One clip at 16 kHz mono float32; telephone voices through the common 8 kHz GSM channel."""
    import soundfile as sf

    from bench.data.audio import resample_poly
    from bench.synth.codecs import NARROW_SR, gsm_roundtrip, to_narrowband

    try:
        if v.fmt == "gsm":
            x, sr = sf.read(path, format="RAW", subtype="GSM610", samplerate=NARROW_SR, channels=1, dtype="float32")
        else:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = x.mean(axis=1)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise BenchError(f"cannot read audio ({e})", path=path) from None
    if v.telephone:
        x = to_narrowband(x, sr)
        if v.fmt != "gsm":  # GSM packages are coded once already
            x = gsm_roundtrip(x)
        sr = NARROW_SR
    return x.astype(np.float32) if sr == SR else resample_poly(x, sr, SR)


def trim(x: np.ndarray, floor_db: float = -35.0, margin_s: float = 0.03) -> np.ndarray:
    """``x`` without leading/trailing frames quieter than ``floor_db`` below its loudest 20 ms frame."""
    hop = int(0.02 * SR)
    n = len(x) // hop
    if n < 2:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    m = int(margin_s * SR)
    return x[max(0, loud[0] * hop - m) : min(len(x), (loud[-1] + 1) * hop + m)]


def utterances(
    v: Voice, clips: list[Path], cfg: RealConfig, root: Path | None = None
) -> list[tuple[np.ndarray, list[str]]]:
    """Clip names are relative to the package ``root`` when given. Up to ``enroll_utts + max_test_utts`` (telephone: ``telephone_test_utts``) utterances of ``v``: (audio, clip names), clips used once."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(v.speaker.encode())])
    want = cfg.enroll_utts + (cfg.telephone_test_utts if v.telephone else cfg.max_test_utts)
    gap = np.zeros(int(cfg.gap_seconds * SR), np.float32)
    out: list[tuple[np.ndarray, list[str]]] = []
    pieces: list[np.ndarray] = []
    names: list[str] = []
    target = rng.uniform(cfg.min_seconds, cfg.max_seconds)
    for i in rng.permutation(len(clips)):
        x = trim(read_clip(clips[i], v))
        if len(x) < int(0.1 * SR):
            continue  # (near) silent clip
        pieces += [x, gap]
        names.append(clips[i].relative_to(root).as_posix() if root else clips[i].name)
        total = sum(len(p) for p in pieces) - len(gap)
        if total >= target * SR:
            y = np.concatenate(pieces[:-1])[: int(cfg.max_seconds * SR)]
            y = y * (cfg.rms / (np.sqrt(np.mean(y**2)) + 1e-9))
            peak = np.abs(y).max()
            out.append(((y / peak * 0.99 if peak > 0.99 else y).astype(np.float32), names))
            pieces, names = [], []
            target = rng.uniform(cfg.min_seconds, cfg.max_seconds)
            if len(out) == want:
                break
    return out


def write_flac(path: Path, x: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16), SR, format="FLAC", subtype="PCM_16")


# ---------------------------------------------------------------------------------- corpus


@dataclass
class Speaker:
    voice: Voice
    enroll: list[str]  # utterance names (data/<spk>/<name>)
    test: list[str]  # ids test/<spk>-<cell>-02-<k>
    clips: dict[str, list[str]]  # utterance file (relative to the corpus) -> source clip names


def _manifest_params(cfg: RealConfig, voices: list[Voice]) -> dict:
    return {"version": VERSION, **asdict(cfg), "voices": sorted(v.speaker for v in voices)}


def build_real(
    out: str | Path,
    cache: str | Path,
    *,
    cfg: RealConfig | None = None,
    download: bool = True,
    force: bool = False,
    voices: list[Voice] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Fetch the packages into ``cache`` and write the corpus to ``out``; returns the manifest.

    A finished corpus built with the same settings is reused (``"reused": True``). The corpus is
    written into a sibling temporary folder and renamed into place, so an interruption never leaves
    a half-built corpus under ``out``.

    Raises:
        RealVoicesUnavailable: no cell has two usable speakers (packages missing: the message says
            how to get them).
        BenchError: ``out`` holds something else (or a corpus built differently, without ``force``).
    """
    cfg = cfg or RealConfig()
    cfg.validate()
    out, cache = Path(out), Path(cache)
    voices = list(VOICES.values()) if voices is None else voices
    params = _manifest_params(cfg, voices)
    old = out / "corpus.json"
    if old.exists():
        try:
            m = json.loads(old.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BenchError(f"unreadable corpus manifest ({e})", path=old) from None
        if m.get("generator") != GENERATOR:
            raise BenchError("this folder holds another corpus; choose another --out", path=out)
        if m.get("params") == params and not force:
            return {**m, "reused": True}
        if not force:
            raise BenchError("a real-voice corpus built with other settings is here; pass --force to rebuild", path=old)
    elif out.exists() and any(out.iterdir()):
        raise BenchError("output folder is not empty and holds no real-voice corpus; choose another --out", path=out)

    t0 = time.perf_counter()
    got = fetch(packages(voices), cache, download=download)
    usable: list[tuple[Voice, list[Path], Licence]] = []
    skipped: dict[str, str] = {}
    for v in voices:
        root = got.roots.get(v.package)
        if root is None:
            skipped[v.speaker] = f"package {v.package} unavailable: {got.missing.get(v.package, '')}"
            continue
        try:
            lic = voice_licence(v, root)
        except ValueError as e:
            skipped[v.speaker] = f"no licence record: {e}"
            continue
        clips = voice_clips(v, root)
        if not clips:
            skipped[v.speaker] = f"no clips matching {v.clip_glob} in {v.package}"
            continue
        usable.append((v, clips, lic))
    usable = _cells_with_two(usable, skipped)
    if not usable:
        missing = sorted(got.missing)
        hint = how_to_get(missing or packages(voices), cache)
        raise RealVoicesUnavailable(
            "no real-voice cell has two usable speakers"
            + (
                f" (missing packages: {', '.join(missing)}: {'; '.join(sorted(set(got.missing.values())))})"
                if missing
                else ""
            )
            + f"; {hint}"
        )

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        speakers: list[Speaker] = []
        licences: dict[str, Licence] = {}
        for n, (v, clips, lic) in enumerate(usable):
            utts = utterances(v, clips, cfg, got.roots[v.package])
            if len(utts) < cfg.enroll_utts + 1:
                skipped[v.speaker] = f"only {len(utts)} utterances of {cfg.min_seconds:g}+ s from {len(clips)} clips"
            else:
                speakers.append(_write_speaker(tmp, v, utts, cfg))
                lic_rec = licences.setdefault(v.package, lic)
                lic_rec.voices.append(f"{v.speaker} ({v.person}, {v.language})")
            if progress:
                progress(n + 1, len(usable))
        per_cell: dict[str, int] = {}
        for s in speakers:
            per_cell[s.voice.cell] = per_cell.get(s.voice.cell, 0) + 1
        for s in [s for s in speakers if per_cell[s.voice.cell] < 2]:
            # its cell partner had too little audio: without a non-target partner it cannot be scored
            skipped[s.voice.speaker] = f"alone in cell '{s.voice.cell}' once the other speakers were left out"
            _remove_speaker(tmp, s)
            licences[s.voice.package].voices = [e for e in licences[s.voice.package].voices
                                                if not e.startswith(s.voice.speaker + " ")]  # fmt: skip
        speakers = [s for s in speakers if per_cell[s.voice.cell] >= 2]
        licences = {k: lic for k, lic in licences.items() if lic.voices}
        if not speakers:
            raise RealVoicesUnavailable("too few utterances: no cell kept two speakers; " + "; ".join(
                f"{k}: {why}" for k, why in skipped.items()))  # fmt: skip
        counts, cells = _write_lists(tmp, speakers)
        _write_licences(tmp, speakers, licences, got.roots)
        manifest = {
            "generator": GENERATOR,
            "kind": "real",
            "eval_only": True,
            "params": params,
            "counts": counts,
            "cells": cells,
            "speakers": {s.voice.speaker: {"person": s.voice.person, "package": s.voice.package, "cell": s.voice.cell,
                                           "language": s.voice.language, "enroll_utts": len(s.enroll),
                                           "test_utts": len(s.test), "clips": s.clips} for s in speakers},
            "skipped": skipped,
            "missing_packages": got.missing,
            "build_seconds": round(time.perf_counter() - t0, 2),
        }  # fmt: skip
        atomic_write_json(tmp / "corpus.json", manifest)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**manifest, "reused": False}


def _cells_with_two(items: list, skipped: dict[str, str]) -> list:
    """Items whose voice's cell has at least two speakers (others recorded in ``skipped``)."""
    per: dict[str, int] = {}
    for v, *_ in items:
        per[v.cell] = per.get(v.cell, 0) + 1
    keep = []
    for it in items:
        v = it[0]
        if per[v.cell] >= 2:
            keep.append(it)
        else:
            skipped.setdefault(v.speaker, f"alone in cell '{v.cell}' (no non-target trials possible)")
    return keep


def _remove_speaker(root: Path, s: Speaker) -> None:
    shutil.rmtree(root / "data" / s.voice.speaker, ignore_errors=True)
    (root / "eval" / "enroll" / f"{s.voice.speaker}-enroll.flac").unlink(missing_ok=True)
    for t in s.test:
        (root / "eval" / f"{t}.flac").unlink(missing_ok=True)


def _write_speaker(root: Path, v: Voice, utts: list[tuple[np.ndarray, list[str]]], cfg: RealConfig) -> Speaker:
    enroll, test = utts[: cfg.enroll_utts], utts[cfg.enroll_utts :]
    names = [f"{v.cell}-01-{k + 1:03d}" for k in range(len(enroll))]
    for name, (x, _) in zip(names, enroll):
        write_flac(root / "data" / v.speaker / f"{name}.flac", x)
    gap = np.zeros(int(cfg.gap_seconds * SR), np.float32)
    joined = np.concatenate([p for x, _ in enroll for p in (x, gap)][:-1])
    write_flac(root / "eval" / "enroll" / f"{v.speaker}-enroll.flac", joined)
    test_ids = []
    clips = {f"data/{v.speaker}/{n}.flac": c for n, (_, c) in zip(names, enroll)}
    for k, (x, c) in enumerate(test):
        name = f"{v.speaker}-{v.cell}-02-{k + 1:03d}"
        write_flac(root / "eval" / "test" / f"{name}.flac", x)
        test_ids.append(f"test/{name}")
        clips[f"eval/test/{name}.flac"] = c
    return Speaker(v, names, test_ids, clips)


def _write_lists(root: Path, speakers: list[Speaker]) -> tuple[dict, dict]:
    lists = root / "eval" / "lists"
    atomic_write(lists / "enroll.lst", "".join(f"{s.voice.speaker}-enroll enroll/{s.voice.speaker}-enroll.wav\n"
                                               for s in speakers))  # fmt: skip
    atomic_write(lists / "enroll.map", "".join(
        f"{s.voice.speaker}-enroll " + " ".join(f"{s.voice.speaker}/{n}.wav" for n in s.enroll) + "\n"
        for s in speakers))  # fmt: skip
    atomic_write(lists / "test.lst", "".join(f"{t}.wav\n" for s in speakers for t in s.test))
    all_lines: list[str] = []
    cells: dict[str, dict] = {}
    for name in sorted({s.voice.cell for s in speakers}):
        members = [s for s in speakers if s.voice.cell == name]
        lines = [f"{e.voice.speaker}-enroll {t}.wav {int(e is o)}\n" for e in members for o in members for t in o.test]
        atomic_write(lists / f"trials-{name}.lst", "".join(lines))
        all_lines += lines
        c = CELLS[name]
        cells[name] = {
            "family": c.family,
            "language_varies": c.language_varies,
            "languages": sorted({s.voice.language for s in members}),
            "description": c.description,
            "speakers": len(members),
            "test_utts": sum(len(s.test) for s in members),
            "trials": len(lines),
            "target_trials": sum(len(s.test) for s in members),
        }
    atomic_write(lists / "trials.lst", "".join(all_lines))
    counts = {
        "speakers": len(speakers),
        "enroll_utts": sum(len(s.enroll) for s in speakers),
        "test_utts": sum(len(s.test) for s in speakers),
        "trials": len(all_lines),
        "target_trials": sum(len(s.test) for s in speakers),
    }
    return counts, cells


def _write_licences(root: Path, speakers: list[Speaker], licences: dict[str, Licence], roots: dict[str, Path]) -> None:
    recs = {}
    for pkg, lic in sorted(licences.items()):
        src = copyright_file(roots[pkg], pkg)
        assert src is not None  # voice_licence found it
        dest = root / "licences" / f"{pkg}.copyright"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        marker = roots[pkg] / ".unpacked"
        recs[pkg] = {
            "licence": lic.licence,
            "copyright": lic.copyright,
            "copyright_file": f"licences/{pkg}.copyright",
            "deb": marker.read_text().strip() if marker.is_file() else "",
            "voices": lic.voices,
        }
    atomic_write_json(root / "licences.json", recs)
    rows = [
        "# Sources of this real-voice evaluation corpus",
        "",
        "Built by `bench data real` from Debian packages (unpacked with `dpkg -x`, never installed).",
        "Evaluation only: these recordings keep their own licences, listed here; the copyright files",
        "are copied under `licences/`. Redistributing this folder means honouring each of them",
        "(attribution, share-alike, GPL source offers).",
        "",
        "| package | licence | copyright | voices |",
        "|---|---|---|---|",
    ]
    for pkg, r in recs.items():
        rows.append(f"| `{pkg}` ({r['deb']}) | {r['licence']} | {r['copyright'] or '-'} | {'; '.join(r['voices'])} |")
    rows += ["", "Trials stay inside one cell (a source, and for telephone prompts a language):", ""]
    for name in sorted({s.voice.cell for s in speakers}):
        c = CELLS[name]
        rows.append(f"- `{name}`: {c.description}" + (" — language varies with the speaker, so language is a "
                                                     "cue here; read this cell's EER with that in mind"
                                                     if c.language_varies else ""))  # fmt: skip
    atomic_write(root / "SOURCES.md", "\n".join(rows) + "\n")
