"""The ``voxceleb`` reader: VoxCeleb1/2 ``id*/<video>/<n>.wav`` (also under ``wav/``), trials
``veri_test2.txt`` and the other official lists (or ``data.trials``)."""

from __future__ import annotations

from pathlib import Path

from bench.config import DataConfig
from bench.data.index import IndexBuilder, Row, audio_files, empty_index
from bench.data.readers.base import Parts, listed_row, register_corpus, trials_path
from bench.data.trials import read_trials, strip_ext
from bench.errors import BenchError


def _speaker_dirs(base: Path) -> bool:
    """``base`` holds VoxCeleb-style ``id*/`` speaker folders."""
    try:
        return base.is_dir() and any(d.is_dir() and d.name.startswith("id") for d in base.iterdir())
    except OSError:
        return False

def _detect_voxceleb(root: Path) -> float:
    return 0.6 if any(_speaker_dirs(b) for b in (root, root / "wav")) else 0.0

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
    tpath = trials_path(cfg, eval_root, VOX_TRIALS)
    trial_spk: set[str] = set()
    if tpath is not None:
        trials = read_trials(tpath)
        ebase = _vox_base(eval_root)
        rows = {}
        for uid in dict.fromkeys(trials.enroll + trials.test):
            rows[uid] = listed_row(ebase, uid + ".wav", uid, uid.split("/")[0], "", (tpath, None))
        index = b.index(list(rows.values()))
        in_enroll = set(trials.enroll)
        parts.enroll = index[index["utt_id"].isin(in_enroll)].reset_index(drop=True)
        parts.test = index[index["utt_id"].isin(set(trials.test))].reset_index(drop=True)
        parts.enroll_map = {u: [u] for u in parts.enroll["utt_id"]}
        parts.enroll_utts = parts.enroll.copy()
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
