"""``load_corpus``: the :class:`Corpus` of one corpus folder (utterance indexes and trial lists).

``load_corpus(data_cfg)`` picks a reader from :data:`CORPORA` by ``data_cfg.corpus``
(:mod:`bench.data.readers`: ``cnceleb``, ``synthetic``, ``cnceleb2``, ``cnceleb12``, ``voxceleb``,
``kaldi``), checks that every file to be embedded for scoring carries a signal, holds out the
validation speakers when the corpus has no validation list, drops the trials of files left out
(``data.skip_bad``) and checks that every trial names a known id.

Each :data:`CORPORA` entry also carries ``detect(root) -> score`` (0 = not this layout), which
:mod:`bench.data.layout` asks to resolve a ``--corpus DIR`` argument: adding a reader is one entry.
A CN-Celeb folder with only ``eval/`` (enroll, test, lists) is an evaluation-only corpus.

Every index is a DataFrame with columns ``utt_id, path, speaker, genre, duration`` (seconds) and
``sample_rate`` (of the file) (:mod:`bench.data.index`). Durations come from file headers, never
from decoding. Files that are missing or unreadable stop loading with an error naming them, or with
``data.skip_bad`` are left out and listed in ``Corpus.bad_files``.

The index and reader names (``IndexBuilder``, ``Parts``, ``register_corpus``, the readers, ...) are
re-exported here, so ``from bench.data.corpus import ...`` keeps working for all of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import DataConfig
from bench.data.index import (
    COLUMNS,
    SILENCE_PEAK_TO_PEAK,
    BadFile,
    IndexBuilder,
    Row,
    audio_files,
    bad_file_counts,
    empty_index,
    find_audio,
    list_lines,
)
from bench.data.readers import CORPORA, CorpusEntry, Detector, Parts, Reader, register_corpus
from bench.data.readers.cnceleb import (
    CN1_NAMES,
    CN2_NAMES,
    cnceleb_genre,
    read_cnceleb,
    read_cnceleb2,
    read_cnceleb12,
)
from bench.data.readers.kaldi import _kaldi_dir, read_kaldi
from bench.data.readers.synthetic import read_synthetic
from bench.data.readers.voxceleb import VOX_TRIALS, read_voxceleb
from bench.data.trials import Trials
from bench.errors import BenchError
from bench.registry import suggest

__all__ = [
    "COLUMNS", "CN1_NAMES", "CN2_NAMES", "CORPORA", "MAX_VAL_TARGETS", "SILENCE_PEAK_TO_PEAK", "VAL_SPLIT_SEED",
    "VOX_TRIALS", "BadFile", "Corpus", "CorpusEntry", "Detector", "IndexBuilder", "Parts", "Reader", "Row",
    "_kaldi_dir", "audio_files", "bad_file_counts", "cnceleb_genre", "empty_index", "find_audio", "hold_out",
    "list_lines", "load_corpus", "make_val_trials", "read_cnceleb", "read_cnceleb12", "read_cnceleb2",
    "read_kaldi", "read_synthetic", "read_voxceleb", "register_corpus",
]  # fmt: skip

VAL_SPLIT_SEED = 20221030  # fixed so every run and seed of an experiment shares one validation split
MAX_VAL_TARGETS = 5000

@dataclass
class Corpus:
    """Everything a run needs from a corpus. Label of a training utterance = ``speakers.index(spk)``."""

    name: str
    root: Path
    train: pd.DataFrame
    speakers: list[str]
    enroll: pd.DataFrame = field(default_factory=lambda: empty_index())
    enroll_map: dict[str, list[str]] = field(default_factory=dict)  # model id -> utterance ids (mean mode)
    enroll_utts: pd.DataFrame = field(default_factory=lambda: empty_index())  # the utterances enroll_map names
    test: pd.DataFrame = field(default_factory=lambda: empty_index())
    trials: Trials | None = None
    val: pd.DataFrame = field(default_factory=lambda: empty_index())
    val_trials: Trials | None = None
    bad_files: list[BadFile] = field(default_factory=list)
    sample_rate: int = 16000

    def train_labels(self) -> np.ndarray:
        """int64 ``[len(train)]`` speaker label of each training utterance."""
        lookup = {s: i for i, s in enumerate(self.speakers)}
        return self.train["speaker"].map(lookup).to_numpy(dtype=np.int64)

    def summary(self) -> dict[str, dict[str, float]]:
        """Speakers, utterances and hours of each non-empty split."""
        out = {}
        for split in ("train", "val", "enroll", "enroll_utts", "test"):
            df = getattr(self, split)
            if len(df):
                out[split] = {
                    "speakers": int(df["speaker"].nunique()),
                    "utterances": len(df),
                    "hours": float(df["duration"].sum() / 3600.0),
                }
        return out

# ---------------------------------------------------------------------------------- validation split

def make_val_trials(index: pd.DataFrame, max_targets: int = MAX_VAL_TARGETS, seed: int = VAL_SPLIT_SEED) -> Trials:
    """Balanced trials over ``index``: all same-speaker pairs (at most ``max_targets``) and as many
    different-speaker pairs, drawn deterministically."""
    rng = np.random.default_rng(seed)
    ids = index["utt_id"].tolist()
    spk = index["speaker"].to_numpy()
    targets: list[tuple[str, str]] = []
    for s in sorted(set(spk)):
        members = [ids[i] for i in np.flatnonzero(spk == s)]
        targets += [(a, c) for k, a in enumerate(members) for c in members[k + 1:]]
    if len(targets) > max_targets:
        keep = np.sort(rng.choice(len(targets), max_targets, replace=False))
        targets = [targets[k] for k in keep]
    n = len(targets)
    nontargets: set[tuple[str, str]] = set()
    tries = 0
    while len(nontargets) < n and tries < 100 * max(n, 1):
        i, j = rng.integers(0, len(ids), size=2)
        tries += 1
        if spk[i] != spk[j]:
            nontargets.add((ids[i], ids[j]))
    pairs = targets + sorted(nontargets)
    labels = np.array([True] * n + [False] * len(nontargets))
    return Trials([p[0] for p in pairs], [p[1] for p in pairs], labels, path="<generated validation trials>",
                  format="cnceleb", lines=list(range(1, len(pairs) + 1)))


def hold_out(train: pd.DataFrame, n_speakers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``n_speakers`` speakers (with >= 2 utterances) off ``train``, deterministically."""
    counts = train.groupby("speaker").size()
    eligible = sorted(counts[counts >= 2].index)
    if n_speakers >= len(eligible):
        raise BenchError(f"data.val_speakers={n_speakers} but only {len(eligible)} training speakers have "
                         ">= 2 utterances (some must stay for training)")
    rng = np.random.default_rng(VAL_SPLIT_SEED)
    held = set(rng.choice(eligible, n_speakers, replace=False).tolist())
    mask = train["speaker"].isin(held)
    return train[~mask].reset_index(drop=True), train[mask].reset_index(drop=True)


def _drop_bad_trials(trials: Trials | None, bad: set[str], what: str) -> Trials | None:
    """With skip_bad, trials whose enrolment model or test utterance was left out are dropped (counted
    in a warning)."""
    if trials is None:
        return None
    keep = np.array([e not in bad and t not in bad for e, t in zip(trials.enroll, trials.test)], dtype=bool)
    if keep.all():
        return trials
    warnings.warn(f"{trials.path}: {int((~keep).sum())} {what} trials use skipped bad files and were dropped",
                  stacklevel=3)
    idx = np.flatnonzero(keep)
    return Trials([trials.enroll[i] for i in idx], [trials.test[i] for i in idx], trials.labels[idx],
                  trials.path, trials.format, [trials.lines[i] for i in idx], sha256=trials.sha256)


def load_corpus(data_cfg: DataConfig, *, require_train: bool = True) -> Corpus:
    """Build the :class:`Corpus` of ``data_cfg.corpus`` rooted at ``data_cfg.root``.

    ``require_train=False`` accepts evaluation-only corpora (``bench data check``, ``bench eval``).

    Raises:
        BenchError: unknown corpus name, missing root or layout pieces, malformed lists, and (unless
            ``data_cfg.skip_bad``) missing or unreadable audio, each naming the file and line.
    """
    name = data_cfg.corpus
    if name not in CORPORA:
        raise BenchError(f"unknown corpus '{name}'{suggest(name, sorted(CORPORA))}; known: {', '.join(sorted(CORPORA))}")
    root = Path(data_cfg.root)
    if not root.is_dir():
        raise BenchError("corpus root not found", path=root)
    b = IndexBuilder(data_cfg)
    parts = CORPORA[name].reader(data_cfg, b)
    # every file that gets an embedding to score must carry a signal (training crops need not)
    parts.enroll, parts.enroll_utts, parts.test, parts.val = (
        b.check_signal(parts.enroll), b.check_signal(parts.enroll_utts), b.check_signal(parts.test),
        b.check_signal(parts.val))
    train, val, val_trials = parts.train, parts.val, parts.val_trials
    if val_trials is None and data_cfg.val_speakers > 0:
        train, val = hold_out(train, data_cfg.val_speakers)
        val = b.check_signal(val)
        val_trials = make_val_trials(val)
    if len(train) == 0 and require_train:
        raise BenchError(f"corpus '{name}' has no training utterances here (an evaluation-only corpus serves "
                         "bench eval, bench embed and bench score, not training)", path=root)
    speakers = sorted(train["speaker"].unique().tolist())
    trials = parts.trials
    if b.bad:
        # mean-mode enrolment: a model keeps its usable utterances; one with none left is dropped, as is
        # one whose concatenated enrolment file was left out (either mode could be asked for)
        kept = {m: [u for u in us if u not in b.dropped] for m, us in parts.enroll_map.items()}
        parts.enroll_map = {m: us for m, us in kept.items() if us}
        gone = b.dropped | {m for m, us in kept.items() if not us}
        trials = _drop_bad_trials(trials, gone, "evaluation")
        val_trials = _drop_bad_trials(val_trials, b.dropped, "validation")
    # what is left must still name known ids: leaving bad files out never excuses an unknown one
    _check_trial_ids(trials, parts)
    return Corpus(name=name, root=root, train=train, speakers=speakers, enroll=parts.enroll,
                  enroll_map=parts.enroll_map, enroll_utts=parts.enroll_utts, test=parts.test, trials=trials, val=val,
                  val_trials=val_trials, bad_files=list(b.bad), sample_rate=data_cfg.sample_rate)


def _check_trial_ids(trials: Trials | None, parts: Parts) -> None:
    """Every trial must name a known enrolment model and test utterance."""
    if trials is None:
        return
    enroll = set(parts.enroll["utt_id"]) | set(parts.enroll_map)
    test = set(parts.test["utt_id"])
    for i, (e, t) in enumerate(zip(trials.enroll, trials.test)):
        if e not in enroll:
            raise BenchError(f"unknown enrolment id '{e}' (not in enroll.lst / enroll.map)", path=trials.path,
                             line=trials.lines[i])
        if t not in test:
            raise BenchError(f"unknown test utterance '{t}' (not in test.lst)", path=trials.path, line=trials.lines[i])
