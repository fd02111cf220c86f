"""The corpus-reader registry :data:`CORPORA` and what readers share.

A reader is ``reader(data_cfg, b: IndexBuilder) -> Parts`` registered with
``@register_corpus(name, summary, detect)``; ``detect(root) -> float`` says how surely a folder has
its layout (0 = not at all; :mod:`bench.data.layout` takes the highest). ``bench.data.corpus.load_corpus``
turns the :class:`Parts` into a ``Corpus``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.config import DataConfig
from bench.data.index import IndexBuilder, Row, empty_index, find_audio
from bench.data.trials import Trials
from bench.errors import BenchError


@dataclass
class Parts:
    """What a reader returns; ``load_corpus`` adds the validation split and speaker labels."""

    train: pd.DataFrame
    enroll: pd.DataFrame = field(default_factory=empty_index)
    enroll_map: dict[str, list[str]] = field(default_factory=dict)
    enroll_utts: pd.DataFrame = field(default_factory=empty_index)
    test: pd.DataFrame = field(default_factory=empty_index)
    trials: Trials | None = None
    val: pd.DataFrame = field(default_factory=empty_index)
    val_trials: Trials | None = None


Reader = Callable[[DataConfig, IndexBuilder], Parts]
# detect(root) -> how surely ``root`` has this reader's layout: 0 = not at all; the highest wins
Detector = Callable[[Path], float]


@dataclass(frozen=True)
class CorpusEntry:
    """A corpus reader, its one-line summary, and how it recognises its own layout."""

    reader: Reader
    summary: str
    detect: Detector


CORPORA: dict[str, CorpusEntry] = {}


def register_corpus(name: str, summary: str, detect: Detector) -> Callable[[Reader], Reader]:
    """Add a reader to :data:`CORPORA`; ``detect`` is what :mod:`bench.data.layout` asks about a folder."""
    def deco(fn: Reader) -> Reader:
        if name in CORPORA:
            raise ValueError(f"corpus '{name}' is registered twice")
        CORPORA[name] = CorpusEntry(fn, summary, detect)
        return fn

    return deco

def has_dirs(root: Path, *names: str) -> bool:
    return any((root / n).is_dir() for n in names)

def listed_row(base: Path, rel: str, uid: str, spk: str, genre: str, src: tuple[Path, int | None] | None) -> Row:
    """A listed utterance ``base/rel`` (another audio extension will do), or a missing one."""
    p = find_audio(base, rel)
    return Row(uid, p, spk, genre, src, missing="" if p else str(base / rel))

def trials_path(cfg: DataConfig, eval_root: Path, defaults: tuple[str, ...]) -> Path | None:
    """``data.trials`` (as given, or under ``eval_root``), else the first of ``defaults`` in ``eval_root``."""
    if cfg.trials:
        p = Path(cfg.trials)
        for cand in (p, eval_root / p):
            if cand.is_file():
                return cand
        raise BenchError("trial list not found", path=p)
    return next((eval_root / n for n in defaults if (eval_root / n).is_file()), None)
