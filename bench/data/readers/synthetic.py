"""The ``synthetic`` reader: ``bench data synth`` output, the CN-Celeb1 layout plus ``dev/val_trials.lst``."""

from __future__ import annotations

from pathlib import Path

from bench.config import DataConfig
from bench.data.index import IndexBuilder
from bench.data.readers.base import Parts, has_dirs, register_corpus
from bench.data.readers.cnceleb import read_cnceleb


def _detect_synthetic(root: Path) -> float:
    return 0.8 if has_dirs(root, "data") and (root / "dev" / "val_trials.lst").is_file() else 0.0

@register_corpus("synthetic", "bench data synth output (CN-Celeb1 layout + dev/val_trials.lst)",
                 _detect_synthetic)
def read_synthetic(cfg: DataConfig, b: IndexBuilder) -> Parts:
    return read_cnceleb(cfg, b)
