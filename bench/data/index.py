"""The utterance index and its builder, shared by every corpus reader (:mod:`bench.data.readers`).

An index is a DataFrame with columns ``utt_id, path, speaker, genre, duration`` (seconds) and
``sample_rate`` (of the file). :class:`IndexBuilder` turns listed :class:`Row` s into one, reading
durations from file headers (never decoding), and refuses the files that are missing, unreadable,
too short or (enrolment, test, validation sides) silent, or with ``data.skip_bad`` leaves them out
and lists them as :class:`BadFile` s.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import DataConfig
from bench.data.audio import audio_info
from bench.data.trials import AUDIO_EXTENSIONS, strip_ext
from bench.errors import BenchError
from bench.textio import read_lines

COLUMNS = ["utt_id", "path", "speaker", "genre", "duration", "sample_rate"]

@dataclass(frozen=True)
class BadFile:
    """An audio file left out of the corpus (``data.skip_bad``), why, and its kind of fault:
    ``unreadable`` (missing, corrupt, wrong rate), ``too_short`` (< ``data.min_seconds``) or
    ``silent`` (an enrolment, test or validation file whose samples never change)."""

    path: str
    reason: str
    kind: str = "unreadable"


def bad_file_counts(bad: list[BadFile]) -> dict[str, int]:
    """``{"total": n, "unreadable": .., "too_short": .., "silent": ..}`` for the run record."""
    out = {"total": len(bad), "unreadable": 0, "too_short": 0, "silent": 0}
    for b in bad:
        out[b.kind] = out.get(b.kind, 0) + 1
    return out


# one 16-bit step: a file whose samples never differ by more than this has no signal to analyse
SILENCE_PEAK_TO_PEAK = 2.0**-15

def empty_index() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c == "duration" else (int if c == "sample_rate" else str))
                         for c in COLUMNS})


@dataclass
class Row:
    """An utterance before its header is read; ``src`` (file, line) is where it was listed."""

    utt_id: str
    path: Path | None
    speaker: str
    genre: str = ""
    src: tuple[Path, int | None] | None = None
    missing: str = ""  # the path that was looked for when ``path`` is None


class IndexBuilder:
    """Reads headers of listed files into an index, raising or collecting bad files."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.bad: list[BadFile] = []
        self.dropped: set[str] = set()  # utterance ids of the files left out (skip_bad)

    def fail(self, err: BenchError, kind: str = "unreadable") -> None:
        if not self.cfg.skip_bad:
            raise err
        self.bad.append(BadFile(err.path or "", err.message, kind))

    def fail_all(self, problems: list[tuple[str, str]], kind: str, what: str) -> None:
        """Refuse every file of ``problems`` (path, detail) in one error naming each, or skip them all."""
        if not problems:
            return
        if self.cfg.skip_bad:
            self.bad.extend(BadFile(p, f"{what} ({d})", kind) for p, d in problems)
            return
        listing = "; ".join(f"{p} ({d})" for p, d in problems)
        raise BenchError(f"{len(problems)} audio file(s) {what}: {listing} (--skip-bad leaves them out)",
                         path=problems[0][0])

    def check_signal(self, index: pd.DataFrame) -> pd.DataFrame:
        """Decode every file of ``index`` and refuse (or, with skip_bad, drop) the silent ones.

        Used on the files that get an embedding to score (enrolment, test, validation): a file
        without signal gives the same embedding as every other such file, so its trials would score
        a match whoever speaks.
        """
        if not len(index):
            return index
        cfg = self.cfg

        def silent(path: str) -> bool | BenchError:
            from bench.data.audio import read_audio

            try:
                x = read_audio(path, cfg.sample_rate, True)
            except BenchError as e:
                return e
            return bool(np.ptp(x) <= SILENCE_PEAK_TO_PEAK)

        paths = index["path"].tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resampling warnings come again when the file is embedded
            if len(paths) > 16:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    flags = list(pool.map(silent, paths))
            else:
                flags = [silent(p) for p in paths]
        for f in flags:
            if isinstance(f, BenchError):
                self.fail(f)
        bad = [p for p, f in zip(paths, flags) if f is True]
        self.fail_all([(p, "every sample equal") for p in bad], "silent", "are silent")
        drop = set(bad) | {p for p, f in zip(paths, flags) if isinstance(f, BenchError)}
        if not drop:
            return index
        gone = index["path"].isin(drop)
        self.dropped.update(str(u) for u in index.loc[gone, "utt_id"])
        return index[~gone].reset_index(drop=True)

    def index(self, rows: list[Row]) -> pd.DataFrame:
        """Index of ``rows`` with header durations; duplicate ids are an error naming the list."""
        seen: dict[str, Row] = {}
        for r in rows:
            if r.utt_id in seen:
                where = r.src or (None, None)
                raise BenchError(f"utterance id '{r.utt_id}' appears twice", path=where[0], line=where[1])
            seen[r.utt_id] = r
        found = [r for r in rows if r.path is not None]
        for r in rows:
            if r.path is None:
                self.dropped.add(r.utt_id)
                where = f" (listed in {r.src[0]}" + (f" line {r.src[1]})" if r.src[1] else ")") if r.src else ""
                self.fail(BenchError(f"audio file not found{where}", path=r.missing))

        def info(r: Row):
            try:
                return audio_info(r.path)  # type: ignore[arg-type]
            except BenchError as e:
                return e

        # header reads are I/O bound and libsndfile releases the GIL, so threads help on big corpora
        if len(found) > 64:
            with ThreadPoolExecutor(max_workers=8) as pool:
                infos = list(pool.map(info, found))
        else:
            infos = [info(r) for r in found]
        out = []
        short: list[tuple[str, str]] = []
        for r, inf in zip(found, infos):
            if isinstance(inf, BenchError):
                self.fail(inf)
                self.dropped.add(r.utt_id)
                continue
            if inf.sample_rate != self.cfg.sample_rate and not self.cfg.resample:
                self.dropped.add(r.utt_id)
                self.fail(BenchError(
                    f"sample rate is {inf.sample_rate} Hz, expected {self.cfg.sample_rate} Hz (data.resample=false)",
                    path=r.path))
                continue
            if inf.duration < self.cfg.min_seconds:
                short.append((str(r.path), f"{inf.duration:.3f} s"))
                self.dropped.add(r.utt_id)
                continue
            out.append((r.utt_id, str(r.path), r.speaker, r.genre, inf.duration, inf.sample_rate))
        self.fail_all(short, "too_short", f"are shorter than data.min_seconds={self.cfg.min_seconds:g} s, too short "
                      "to analyse")
        if not out:
            return empty_index()
        return pd.DataFrame(out, columns=COLUMNS)


def find_audio(base: Path, rel: str) -> Path | None:
    """``base/rel``, or the same stem with another audio extension (lists say .wav, files are .flac)."""
    p = base / rel
    if p.is_file():
        return p
    stem = base / strip_ext(rel)
    for ext in (".flac", ".wav", *AUDIO_EXTENSIONS):
        q = stem.with_name(stem.name + ext)
        if q.is_file():
            return q
    return None


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted so indexes are reproducible)."""
    exts = set(AUDIO_EXTENSIONS)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())


def list_lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, tokens) of the non-blank, non-comment lines of a list file."""
    if not path.is_file():
        raise BenchError("list file not found", path=path)
    for n, raw in enumerate(read_lines(path, "list file"), start=1):
        tok = raw.split()
        if tok and not tok[0].startswith("#"):
            yield n, tok
