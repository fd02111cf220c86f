"""Corpus validation behind ``bench data check``: missing files, unreadable audio, sample rates,
durations, trial coverage; plus the numbers for a summary table."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.config import DataConfig
from bench.data.audio import read_audio
from bench.data.corpus import Corpus, load_corpus
from bench.errors import BenchError

SPLITS = ("train", "val", "enroll", "enroll_utts", "test")


@dataclass
class CheckReport:
    """What ``check_corpus`` found. ``problems`` non-empty means the corpus needs fixing."""

    corpus: str
    root: str
    splits: dict[str, dict[str, float]]
    genres: dict[str, dict[str, float]]
    trials: dict[str, dict[str, int]]
    durations: dict[str, float]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def detect_corpus(root: str | Path) -> str:
    """The corpus reader for a folder: :func:`bench.data.layout.detect` (``--corpus`` overrides)."""
    from bench.data.layout import detect

    return detect(root).kind


def check_corpus(data_cfg: DataConfig, deep: bool = False) -> CheckReport:
    """Load the corpus collecting (not raising on) bad files, then check rates and durations.

    ``deep`` decodes every file instead of reading headers only (slow on real corpora, but finds
    truncated files whose header is intact).

    Raises:
        BenchError: structural errors that stop reading the corpus at all (missing lists, malformed
            lines), naming file and line.
    """
    cfg = dataclasses.replace(data_cfg, skip_bad=True, resample=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = load_corpus(cfg, require_train=False)
    problems = [f"{b.path}: {b.reason}" for b in corpus.bad_files]
    problems += [str(w.message) for w in caught]
    notes: list[str] = []
    frames = {s: getattr(corpus, s) for s in SPLITS}
    everything = pd.concat([df.assign(split=s) for s, df in frames.items() if len(df)], ignore_index=True)
    wrong = everything[everything["sample_rate"] != data_cfg.sample_rate].drop_duplicates("path")
    for _, row in wrong.iterrows():
        problems.append(f"{row['path']}: sample rate {row['sample_rate']} Hz, expected {data_cfg.sample_rate} Hz")
    if deep:
        for path in everything["path"].drop_duplicates():
            try:
                read_audio(path, data_cfg.sample_rate, resample=True)
            except BenchError as e:
                problems.append(str(e))
    short = corpus.train[corpus.train["duration"] < data_cfg.crop_seconds]
    if len(short):
        notes.append(f"{len(short)} training utterances are shorter than the {data_cfg.crop_seconds:g} s crop "
                     "(they are repeat-padded)")
    if corpus.trials is None:
        notes.append("no evaluation trials found")
    if corpus.val_trials is None:
        notes.append("no validation trials (dev/val_trials.lst) and data.val_speakers = 0")
    return CheckReport(
        corpus=corpus.name,
        root=str(corpus.root),
        splits=corpus.summary(),
        genres=_genres(corpus),
        trials={k: {"trials": len(t), "target": t.n_target, "nontarget": t.n_nontarget}
                for k, t in (("eval", corpus.trials), ("val", corpus.val_trials)) if t is not None},
        durations=_durations(corpus.train),
        problems=problems,
        notes=notes,
    )


def _genres(corpus: Corpus) -> dict[str, dict[str, float]]:
    """Utterances and hours per genre of the training and test sets."""
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "test"):
        df = getattr(corpus, split)
        for genre, g in df.groupby(df["genre"].replace("", "(none)")):
            d = out.setdefault(str(genre), {"train_utts": 0, "train_hours": 0.0, "test_utts": 0, "test_hours": 0.0})
            d[f"{split}_utts"] = len(g)
            d[f"{split}_hours"] = float(g["duration"].sum() / 3600)
    return dict(sorted(out.items()))


def _durations(df: pd.DataFrame) -> dict[str, float]:
    if not len(df):
        return {}
    d = df["duration"]
    return {"min": float(d.min()), "median": float(d.median()), "max": float(d.max()), "total_hours": float(d.sum() / 3600)}
