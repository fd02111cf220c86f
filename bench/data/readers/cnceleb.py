"""CN-Celeb readers: ``cnceleb`` (CN-Celeb1), ``cnceleb2`` (training only) and ``cnceleb12``
(CN-Celeb1 dev + CN-Celeb2 training, CN-Celeb1 evaluation).

CN-Celeb1: ``data/<spk>/<genre>-<session>-<idx>.flac``, ``dev/dev.lst``, ``eval/{enroll,test}``,
``eval/lists/{enroll.lst,enroll.map,test.lst,trials.lst}``; a folder with only ``eval/`` is an
evaluation-only corpus; ``dev/val_trials.lst`` (ids relative to ``data/``) is the validation list.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from bench.config import DataConfig
from bench.data.index import IndexBuilder, Row, audio_files, empty_index, list_lines
from bench.data.readers.base import Parts, has_dirs, listed_row, register_corpus
from bench.data.trials import Trials, read_trials, strip_ext
from bench.errors import BenchError


def cnceleb_genre(name: str) -> str:
    """Genre of ``singing-01-005`` or ``id00800-singing-01-005`` (the field before session and index)."""
    parts = name.split("-")
    if len(parts) >= 4 and parts[0].startswith("id"):
        parts = parts[1:]
    return "-".join(parts[:-2]) if len(parts) >= 3 else ""

CN1_NAMES = ("CN-Celeb_flac", "CN-Celeb", "CN-Celeb1")
CN2_NAMES = ("CN-Celeb2_flac", "CN-Celeb2")


def _detect_cnceleb(root: Path) -> float:
    # training side (data/ with dev/ or eval/) or an evaluation-only copy (eval/lists, enroll, test)
    if (root / "eval" / "lists").is_dir() or (has_dirs(root, "data") and has_dirs(root, "eval", "dev")):
        return 0.7
    return 0.0

def _detect_cnceleb2(root: Path) -> float:
    return 0.5 if has_dirs(root, "data") and not has_dirs(root, "eval", "dev") else 0.0


def _detect_cnceleb12(root: Path) -> float:
    return 0.9 if has_dirs(root, *CN1_NAMES) and has_dirs(root, *CN2_NAMES) else 0.0

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
            enroll_rows.append(listed_row(ev, rel, model, model.removesuffix("-enroll"), "", (enroll_lst, n)))
    else:
        for model in dict.fromkeys(trials.enroll):
            enroll_rows.append(listed_row(ev, f"enroll/{model}.wav", model, model.removesuffix("-enroll"), "",
                                    (trials_path, None)))

    enroll_map: dict[str, list[str]] = {}
    enroll_utt_rows: list[Row] = []
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
                    enroll_utt_rows.append(listed_row(root / "data", rel, uid, uid.split("/")[0], cnceleb_genre(Path(uid).name),
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
        test_rows.append(listed_row(ev, rel, uid, name.split("-")[0], cnceleb_genre(name), src))

    parts.enroll = b.index(enroll_rows)
    parts.enroll_map = enroll_map
    parts.enroll_utts = b.index(enroll_utt_rows)
    parts.test = b.index(test_rows)
    parts.trials = trials
    return parts

def _cn1_val(root: Path, b: IndexBuilder) -> tuple[pd.DataFrame, Trials | None]:
    """``dev/val_trials.lst`` (ids relative to ``data/``) and the index of the utterances it uses."""
    path = root / "dev" / "val_trials.lst"
    if not path.is_file():
        return empty_index(), None
    vt = read_trials(path)
    rows = []
    for uid in dict.fromkeys(vt.enroll + vt.test):
        rel = uid.removeprefix("data/")
        rows.append(listed_row(root / "data", rel + ".wav", uid, rel.split("/")[0], cnceleb_genre(Path(rel).name),
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
