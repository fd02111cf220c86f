"""The ``kaldi`` reader: a Kaldi data dir (``wav.scp``, ``utt2spk``, ``trials``); the evaluation
dir is ``data.eval_root`` or the root itself."""

from __future__ import annotations

from pathlib import Path

from bench.config import DataConfig
from bench.data.index import IndexBuilder, Row, empty_index, list_lines
from bench.data.readers.base import Parts, register_corpus, trials_path
from bench.data.trials import read_trials
from bench.errors import BenchError


def _detect_kaldi(root: Path) -> float:
    return 1.0 if (root / "wav.scp").is_file() else 0.0

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
    tpath = trials_path(cfg, eval_root, ("trials",))
    used: set[str] = set()
    if tpath is not None:
        trials = read_trials(tpath)
        erows, espk2utt = (rows, _kaldi_dir(root)[1]) if eval_root == root else _kaldi_dir(eval_root)
        enroll_ids, enroll_utt_ids, enroll_map = [], [], {}
        for i, e in enumerate(trials.enroll):
            if e in enroll_map:
                continue
            if e in erows:
                enroll_ids.append(e)
                enroll_map[e] = [e]
            elif e in espk2utt:
                enroll_map[e] = espk2utt[e]
                enroll_utt_ids.extend(espk2utt[e])
            else:
                raise BenchError(f"enrolment id '{e}' is neither an utterance in wav.scp nor a speaker in utt2spk",
                                 path=tpath, line=trials.lines[i])
        for i, t in enumerate(trials.test):
            if t not in erows:
                raise BenchError(f"test utterance '{t}' is not in wav.scp", path=tpath, line=trials.lines[i])
        test_ids = list(dict.fromkeys(trials.test))
        parts.enroll = b.index([erows[u] for u in dict.fromkeys(enroll_ids)])
        parts.enroll_utts = b.index([erows[u] for u in dict.fromkeys(enroll_utt_ids)])
        parts.test = b.index([erows[u] for u in test_ids])
        parts.enroll_map = enroll_map
        parts.trials = trials
        if eval_root == root:
            used = set(enroll_ids) | set(enroll_utt_ids) | set(test_ids)
    parts.train = b.index([r for u, r in rows.items() if u not in used])
    return parts
