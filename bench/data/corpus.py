"""Corpus readers: one utterance index (and trial lists) per corpus layout.

``load_corpus(data_cfg)`` picks a reader from :data:`CORPORA` by ``data_cfg.corpus``:

=============  ==========================================================================
``cnceleb``    CN-Celeb1: ``data/<spk>/<genre>-<session>-<idx>.flac``, ``dev/dev.lst``,
               ``eval/{enroll,test}``, ``eval/lists/{enroll.lst,enroll.map,test.lst,trials.lst}``
``synthetic``  the CN-Celeb1 reader on ``bench data synth`` output (plus ``dev/val_trials.lst``)
``cnceleb2``   CN-Celeb2: ``data/<spk>/*.flac`` (training only)
``cnceleb12``  CN-Celeb1 dev + CN-Celeb2 for training, CN-Celeb1 eval: ``<root>/CN-Celeb_flac``
               and ``<root>/CN-Celeb2_flac``, or the two roots given in ``data.train_lists``
``voxceleb``   ``id*/<video>/<n>.wav`` (also under ``wav/``); trials ``veri_test2.txt`` etc.
``kaldi``      a Kaldi data dir: ``wav.scp``, ``utt2spk``, ``trials``
=============  ==========================================================================

Each :data:`CORPORA` entry also carries ``detect(root) -> score`` (0 = not this layout), which
:mod:`bench.data.layout` asks to resolve a ``--corpus DIR`` argument: adding a reader is one entry.
A CN-Celeb folder with only ``eval/`` (enroll, test, lists) is an evaluation-only corpus.

Every index is a DataFrame with columns ``utt_id, path, speaker, genre, duration`` (seconds) and
``sample_rate`` (of the file). Durations come from file headers, never from decoding. Files that
are missing or unreadable stop loading with an error naming them, or with ``data.skip_bad`` are
left out and listed in ``Corpus.bad_files``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import DataConfig
from bench.data.audio import audio_info
from bench.data.trials import AUDIO_EXTENSIONS, Trials, read_trials, strip_ext
from bench.errors import BenchError
from bench.registry import suggest
from bench.textio import read_lines

COLUMNS = ["utt_id", "path", "speaker", "genre", "duration", "sample_rate"]
VAL_SPLIT_SEED = 20221030  # fixed so every run and seed of an experiment shares one validation split
MAX_VAL_TARGETS = 5000


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


@dataclass
class Corpus:
    """Everything a run needs from a corpus. Label of a training utterance = ``speakers.index(spk)``."""

    name: str
    root: Path
    train: pd.DataFrame
    speakers: list[str]
    enroll: pd.DataFrame = field(default_factory=lambda: empty_index())
    enroll_map: dict[str, list[str]] = field(default_factory=dict)
    extra: pd.DataFrame = field(default_factory=lambda: empty_index())
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
        for split in ("train", "val", "enroll", "extra", "test"):
            df = getattr(self, split)
            if len(df):
                out[split] = {
                    "speakers": int(df["speaker"].nunique()),
                    "utterances": len(df),
                    "hours": float(df["duration"].sum() / 3600.0),
                }
        return out


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


def cnceleb_genre(name: str) -> str:
    """Genre of ``singing-01-005`` or ``id00800-singing-01-005`` (the field before session and index)."""
    parts = name.split("-")
    if len(parts) >= 4 and parts[0].startswith("id"):
        parts = parts[1:]
    return "-".join(parts[:-2]) if len(parts) >= 3 else ""


# ---------------------------------------------------------------------------------- readers

@dataclass
class Parts:
    """What a reader returns; ``load_corpus`` adds the validation split and speaker labels."""

    train: pd.DataFrame
    enroll: pd.DataFrame = field(default_factory=empty_index)
    enroll_map: dict[str, list[str]] = field(default_factory=dict)
    extra: pd.DataFrame = field(default_factory=empty_index)
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


def _has_dirs(root: Path, *names: str) -> bool:
    return any((root / n).is_dir() for n in names)


def _speaker_dirs(base: Path) -> bool:
    """``base`` holds VoxCeleb-style ``id*/`` speaker folders."""
    try:
        return base.is_dir() and any(d.is_dir() and d.name.startswith("id") for d in base.iterdir())
    except OSError:
        return False


CN1_NAMES = ("CN-Celeb_flac", "CN-Celeb", "CN-Celeb1")
CN2_NAMES = ("CN-Celeb2_flac", "CN-Celeb2")


def _detect_cnceleb(root: Path) -> float:
    # training side (data/ with dev/ or eval/) or an evaluation-only copy (eval/lists, enroll, test)
    if (root / "eval" / "lists").is_dir() or (_has_dirs(root, "data") and _has_dirs(root, "eval", "dev")):
        return 0.7
    return 0.0


def _detect_synthetic(root: Path) -> float:
    return 0.8 if _has_dirs(root, "data") and (root / "dev" / "val_trials.lst").is_file() else 0.0


def _detect_cnceleb2(root: Path) -> float:
    return 0.5 if _has_dirs(root, "data") and not _has_dirs(root, "eval", "dev") else 0.0


def _detect_cnceleb12(root: Path) -> float:
    return 0.9 if _has_dirs(root, *CN1_NAMES) and _has_dirs(root, *CN2_NAMES) else 0.0


def _detect_voxceleb(root: Path) -> float:
    return 0.6 if any(_speaker_dirs(b) for b in (root, root / "wav")) else 0.0


def _detect_kaldi(root: Path) -> float:
    return 1.0 if (root / "wav.scp").is_file() else 0.0


def _cn1_train_rows(root: Path, exclude: set[str]) -> list[Row]:
    """CN-Celeb1 training rows: speakers of ``dev/dev.lst`` (or all of ``data/`` minus ``exclude``)."""
    data = root / "data"
    if not data.is_dir():
        raise BenchError("not a CN-Celeb corpus: data/ folder missing", path=root)
    dev = root / "dev" / "dev.lst"
    if dev.is_file():
        spk_src = [(tok[0].strip("/").split("/")[-1], (dev, n)) for n, tok in list_lines(dev)]
    else:
        spk_src = [(d.name, None) for d in sorted(data.iterdir()) if d.is_dir() and d.name not in exclude]
    rows = []
    for spk, src in spk_src:
        folder = data / spk
        if not folder.is_dir():
            raise BenchError(f"speaker folder {folder} not found", path=src[0] if src else folder,
                             line=src[1] if src else None)
        for f in audio_files(folder):
            rel = f.relative_to(data)
            rows.append(Row(strip_ext(rel.as_posix()), f, spk, cnceleb_genre(f.stem), src))
    return rows


def _cn1_eval(cfg: DataConfig, b: IndexBuilder, root: Path) -> Parts:
    """CN-Celeb1 evaluation lists under ``root/eval/lists``; empty Parts when there are none."""
    ev = root / "eval"
    lists = ev / "lists"
    trials_path = Path(cfg.trials) if cfg.trials else lists / "trials.lst"
    if not trials_path.is_absolute() and cfg.trials and not trials_path.exists():
        trials_path = root / cfg.trials
    parts = Parts(train=empty_index())
    if not trials_path.is_file():
        if cfg.trials:
            raise BenchError("trial list not found", path=trials_path)
        return parts
    trials = read_trials(trials_path)

    enroll_rows: list[Row] = []
    enroll_lst = lists / "enroll.lst"
    if enroll_lst.is_file():
        for n, tok in list_lines(enroll_lst):
            rel = tok[-1]
            model = tok[0] if len(tok) >= 2 else Path(strip_ext(rel)).name
            enroll_rows.append(_row(ev, rel, model, model.removesuffix("-enroll"), "", (enroll_lst, n)))
    else:
        for model in dict.fromkeys(trials.enroll):
            enroll_rows.append(_row(ev, f"enroll/{model}.wav", model, model.removesuffix("-enroll"), "",
                                    (trials_path, None)))

    enroll_map: dict[str, list[str]] = {}
    extra_rows: list[Row] = []
    map_path = lists / "enroll.map"
    # the map names utterances under data/; an evaluation-only copy has none (concat enrolment only)
    if map_path.is_file() and (root / "data").is_dir():
        seen: set[str] = set()
        for n, tok in list_lines(map_path):
            if len(tok) < 2:
                raise BenchError("enroll.map line needs a model id and at least one utterance", path=map_path, line=n)
            enroll_map[tok[0]] = [strip_ext(t) for t in tok[1:]]
            for rel in tok[1:]:
                uid = strip_ext(rel)
                if uid not in seen:
                    seen.add(uid)
                    extra_rows.append(_row(root / "data", rel, uid, uid.split("/")[0], cnceleb_genre(Path(uid).name),
                                           (map_path, n)))

    test_rows: list[Row] = []
    test_lst = lists / "test.lst"
    if test_lst.is_file():
        items = [(tok[-1], (test_lst, n)) for n, tok in list_lines(test_lst)]
    else:
        items = [(t + ".wav", (trials_path, None)) for t in dict.fromkeys(trials.test)]
    for rel, src in items:
        uid = strip_ext(rel)
        name = Path(uid).name
        test_rows.append(_row(ev, rel, uid, name.split("-")[0], cnceleb_genre(name), src))

    parts.enroll = b.index(enroll_rows)
    parts.enroll_map = enroll_map
    parts.extra = b.index(extra_rows)
    parts.test = b.index(test_rows)
    parts.trials = trials
    return parts


def _row(base: Path, rel: str, uid: str, spk: str, genre: str, src: tuple[Path, int | None] | None) -> Row:
    p = find_audio(base, rel)
    return Row(uid, p, spk, genre, src, missing="" if p else str(base / rel))


def _cn1_val(root: Path, b: IndexBuilder) -> tuple[pd.DataFrame, Trials | None]:
    """``dev/val_trials.lst`` (ids relative to ``data/``) and the index of the utterances it uses."""
    path = root / "dev" / "val_trials.lst"
    if not path.is_file():
        return empty_index(), None
    vt = read_trials(path)
    rows = []
    for uid in dict.fromkeys(vt.enroll + vt.test):
        rel = uid.removeprefix("data/")
        rows.append(_row(root / "data", rel + ".wav", uid, rel.split("/")[0], cnceleb_genre(Path(rel).name),
                         (path, None)))
    return b.index(rows), vt


def _read_cn1(cfg: DataConfig, b: IndexBuilder, root: Path, eval_root: Path) -> Parts:
    parts = _cn1_eval(cfg, b, eval_root)
    if parts.trials is not None and not (root / "data").is_dir():
        return parts  # evaluation-only (eval/enroll, eval/test, eval/lists): enough for eval, embed, scoring
    eval_speakers = set(parts.enroll["speaker"]) | set(parts.test["speaker"])
    train_rows = _cn1_train_rows(root, exclude=eval_speakers)
    val, val_trials = _cn1_val(root, b)
    if len(val):
        held = set(val["speaker"])
        overlap = sorted(held & {r.speaker for r in train_rows})
        if overlap:
            warnings.warn(f"{root}/dev/val_trials.lst: {len(overlap)} validation speakers are also in dev.lst; "
                          "they are held out of training", stacklevel=3)
            train_rows = [r for r in train_rows if r.speaker not in held]
    parts.train = b.index(train_rows)
    parts.val, parts.val_trials = val, val_trials
    return parts


@register_corpus("cnceleb", "CN-Celeb1: data/, dev/dev.lst, eval/{enroll,test,lists}",
                 _detect_cnceleb)
def read_cnceleb(cfg: DataConfig, b: IndexBuilder) -> Parts:
    root = Path(cfg.root)
    return _read_cn1(cfg, b, root, Path(cfg.eval_root) if cfg.eval_root else root)


@register_corpus("synthetic", "bench data synth output (CN-Celeb1 layout + dev/val_trials.lst)",
                 _detect_synthetic)
def read_synthetic(cfg: DataConfig, b: IndexBuilder) -> Parts:
    return read_cnceleb(cfg, b)


@register_corpus("cnceleb2", "CN-Celeb2: data/<spk>/*.flac (training only; eval from data.eval_root)",
                 _detect_cnceleb2)
def read_cnceleb2(cfg: DataConfig, b: IndexBuilder) -> Parts:
    root = Path(cfg.root)
    parts = _cn1_eval(cfg, b, Path(cfg.eval_root)) if cfg.eval_root else Parts(train=empty_index())
    parts.train = b.index(_cn2_rows(root))
    return parts


def _cn2_rows(root: Path) -> list[Row]:
    data = root / "data"
    if not data.is_dir():
        raise BenchError("not a CN-Celeb2 corpus: data/ folder missing", path=root)
    rows = []
    for spk_dir in sorted(d for d in data.iterdir() if d.is_dir()):
        for f in audio_files(spk_dir):
            rows.append(Row(strip_ext(f.relative_to(data).as_posix()), f, spk_dir.name, cnceleb_genre(f.stem)))
    return rows


@register_corpus("cnceleb12", "CN-Celeb1 dev + CN-Celeb2 training, CN-Celeb1 eval (CN-Celeb_flac/, CN-Celeb2_flac/)",
                 _detect_cnceleb12)
def read_cnceleb12(cfg: DataConfig, b: IndexBuilder) -> Parts:
    root = Path(cfg.root)
    if cfg.train_lists:
        if len(cfg.train_lists) != 2:
            raise BenchError("data.train_lists for cnceleb12 must be [CN-Celeb1 root, CN-Celeb2 root]")
        cn1, cn2 = (Path(p) for p in cfg.train_lists)
    else:
        cn1 = next((root / n for n in CN1_NAMES if (root / n).is_dir()), None)
        cn2 = next((root / n for n in CN2_NAMES if (root / n).is_dir()), None)
        if cn1 is None or cn2 is None:
            missing = " and ".join(n for n, d in (("CN-Celeb_flac/", cn1), ("CN-Celeb2_flac/", cn2)) if d is None)
            raise BenchError(f"cnceleb12 corpus needs {missing} under the root (or data.train_lists)", path=root)
    parts = _cn1_eval(cfg, b, Path(cfg.eval_root) if cfg.eval_root else cn1)
    eval_speakers = set(parts.enroll["speaker"]) | set(parts.test["speaker"])
    parts.train = b.index(_cn1_train_rows(cn1, exclude=eval_speakers) + _cn2_rows(cn2))
    return parts


VOX_TRIALS = ("veri_test2.txt", "veri_test.txt", "list_test_all2.txt", "list_test_hard2.txt")


def _vox_base(root: Path) -> Path:
    for cand in (root, root / "wav", root / "dev" / "wav", root / "test" / "wav"):
        if cand.is_dir() and any(d.is_dir() and d.name.startswith("id") for d in cand.iterdir()):
            return cand
    raise BenchError("not a VoxCeleb corpus: no id*/ speaker folders (also looked in wav/)", path=root)


@register_corpus("voxceleb", "VoxCeleb1/2: id*/<video>/<n>.wav, trials veri_test2.txt (or data.trials)",
                 _detect_voxceleb)
def read_voxceleb(cfg: DataConfig, b: IndexBuilder) -> Parts:
    root = Path(cfg.root)
    eval_root = Path(cfg.eval_root) if cfg.eval_root else root
    base = _vox_base(root)
    parts = Parts(train=empty_index())
    tpath = _trials_path(cfg, eval_root, VOX_TRIALS)
    trial_spk: set[str] = set()
    if tpath is not None:
        trials = read_trials(tpath)
        ebase = _vox_base(eval_root)
        rows = {}
        for uid in dict.fromkeys(trials.enroll + trials.test):
            rows[uid] = _row(ebase, uid + ".wav", uid, uid.split("/")[0], "", (tpath, None))
        index = b.index(list(rows.values()))
        in_enroll = set(trials.enroll)
        parts.enroll = index[index["utt_id"].isin(in_enroll)].reset_index(drop=True)
        parts.test = index[index["utt_id"].isin(set(trials.test))].reset_index(drop=True)
        parts.enroll_map = {u: [u] for u in parts.enroll["utt_id"]}
        parts.extra = parts.enroll.copy()
        parts.trials = trials
        if ebase == base:
            trial_spk = {u.split("/")[0] for u in rows}
    train_rows = []
    for spk_dir in sorted(d for d in base.iterdir() if d.is_dir() and d.name.startswith("id")):
        if spk_dir.name in trial_spk:
            continue
        for f in audio_files(spk_dir):
            train_rows.append(Row(strip_ext(f.relative_to(base).as_posix()), f, spk_dir.name, ""))
    parts.train = b.index(train_rows)
    return parts


def _trials_path(cfg: DataConfig, eval_root: Path, defaults: tuple[str, ...]) -> Path | None:
    if cfg.trials:
        p = Path(cfg.trials)
        for cand in (p, eval_root / p):
            if cand.is_file():
                return cand
        raise BenchError("trial list not found", path=p)
    return next((eval_root / n for n in defaults if (eval_root / n).is_file()), None)


def _kaldi_dir(d: Path) -> tuple[dict[str, Row], dict[str, list[str]]]:
    """Rows of ``wav.scp`` + ``utt2spk`` and the speaker -> utterances map."""
    scp, u2s = d / "wav.scp", d / "utt2spk"
    for f in (scp, u2s):
        if not f.is_file():
            raise BenchError(f"not a Kaldi data dir: {f.name} missing", path=d)
    spk_of: dict[str, str] = {}
    for n, tok in list_lines(u2s):
        if len(tok) != 2:
            raise BenchError("utt2spk lines must be 'utt spk'", path=u2s, line=n)
        spk_of[tok[0]] = tok[1]
    rows: dict[str, Row] = {}
    for n, tok in list_lines(scp):
        if len(tok) < 2:
            raise BenchError("wav.scp lines must be 'utt path'", path=scp, line=n)
        if tok[-1] == "|" or tok[-1].endswith("|"):
            raise BenchError("piped wav.scp commands are not supported; give audio file paths", path=scp, line=n)
        if len(tok) != 2:
            raise BenchError("wav.scp lines must be 'utt path' (no spaces in paths)", path=scp, line=n)
        uid, rel = tok
        if uid in rows:
            raise BenchError(f"utterance id '{uid}' appears twice", path=scp, line=n)
        if uid not in spk_of:
            raise BenchError(f"utterance '{uid}' has no speaker in utt2spk", path=scp, line=n)
        p = Path(rel) if Path(rel).is_absolute() else d / rel
        rows[uid] = Row(uid, p if p.is_file() else None, spk_of[uid], "", (scp, n), missing=str(p))
    spk2utt: dict[str, list[str]] = {}
    for uid in rows:
        spk2utt.setdefault(spk_of[uid], []).append(uid)
    return rows, spk2utt


@register_corpus("kaldi", "Kaldi data dir: wav.scp, utt2spk, trials (eval dir = data.eval_root or root)",
                 _detect_kaldi)
def read_kaldi(cfg: DataConfig, b: IndexBuilder) -> Parts:
    root = Path(cfg.root)
    eval_root = Path(cfg.eval_root) if cfg.eval_root else root
    rows, _ = _kaldi_dir(root)
    parts = Parts(train=empty_index())
    tpath = _trials_path(cfg, eval_root, ("trials",))
    used: set[str] = set()
    if tpath is not None:
        trials = read_trials(tpath)
        erows, espk2utt = (rows, _kaldi_dir(root)[1]) if eval_root == root else _kaldi_dir(eval_root)
        enroll_ids, extra_ids, enroll_map = [], [], {}
        for i, e in enumerate(trials.enroll):
            if e in enroll_map:
                continue
            if e in erows:
                enroll_ids.append(e)
                enroll_map[e] = [e]
            elif e in espk2utt:
                enroll_map[e] = espk2utt[e]
                extra_ids.extend(espk2utt[e])
            else:
                raise BenchError(f"enrolment id '{e}' is neither an utterance in wav.scp nor a speaker in utt2spk",
                                 path=tpath, line=trials.lines[i])
        for i, t in enumerate(trials.test):
            if t not in erows:
                raise BenchError(f"test utterance '{t}' is not in wav.scp", path=tpath, line=trials.lines[i])
        test_ids = list(dict.fromkeys(trials.test))
        parts.enroll = b.index([erows[u] for u in dict.fromkeys(enroll_ids)])
        parts.extra = b.index([erows[u] for u in dict.fromkeys(extra_ids)])
        parts.test = b.index([erows[u] for u in test_ids])
        parts.enroll_map = enroll_map
        parts.trials = trials
        if eval_root == root:
            used = set(enroll_ids) | set(extra_ids) | set(test_ids)
    parts.train = b.index([r for u, r in rows.items() if u not in used])
    return parts


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
                  trials.path, trials.format, [trials.lines[i] for i in idx])


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
    parts.enroll, parts.extra, parts.test, parts.val = (
        b.check_signal(parts.enroll), b.check_signal(parts.extra), b.check_signal(parts.test),
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
                  enroll_map=parts.enroll_map, extra=parts.extra, test=parts.test, trials=trials, val=val,
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
