"""Loader throughput for the benchmark suite (``bench perf``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.config import DataConfig


def loader_throughput(
    root: str | Path | None = None,
    *,
    corpus: str = "synthetic",
    views: int = 5,
    view_types: tuple[str, ...] = ("reverb", "babble", "music", "noise", "clean"),
    crop_seconds: float = 2.0,
    speakers_per_batch: int = 8,
    utts_per_speaker: int = 2,
    workers: int = 0,
    batches: int = 10,
    warmup: int = 1,
) -> dict:
    """Training crops per second through ``make_train_loader`` (decode, crop, augment all views).

    Without ``root`` a small fixture corpus (16 speakers x 4 utterances of 3-5 s, FLAC, with MUSAN
    and RIR folders) is written to a temporary folder. The first ``warmup`` batches (worker start,
    file caches) are not timed.

    Returns:
        dict with ``crops_per_s``, ``views_per_s``, ``seconds``, ``cpu_ms_per_crop``, ``batches``, ``batch_size``,
        ``views``, ``crop_seconds``, ``workers``.
    """
    from bench.data.corpus import load_corpus
    from bench.data.loader import make_train_loader

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        if root is None:
            from bench.data import fixtures

            root = Path(tmp)
            fixtures.write_cnceleb1(root, train_speakers=16, utts=4, eval_speakers=1, seconds=(3.0, 5.0))
            fixtures.write_musan_rirs(root, files=4, seconds=5.0)
            corpus = "cnceleb"
        cfg = DataConfig(corpus=corpus, root=str(root), views=views, view_types=list(view_types),
                         crop_seconds=crop_seconds, speakers_per_batch=speakers_per_batch,
                         utts_per_speaker=utts_per_speaker, workers=workers)
        data = load_corpus(cfg)
        loader = make_train_loader(data, cfg, seed=0, epoch=0, num_batches=batches + warmup)
        n = 0
        it = iter(loader)
        for _ in range(warmup):
            next(it)
        start, cpu = time.perf_counter(), time.process_time()
        for waves, _ in it:
            n += waves.shape[0]
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return {
        "crops_per_s": n / seconds if seconds > 0 else float("nan"),
        "views_per_s": n * views / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        # main-process CPU per crop: with workers=0 the whole cost, robust to other load on the machine
        "cpu_ms_per_crop": 1000 * cpu / n if n else float("nan"),
        "batches": batches,
        "batch_size": speakers_per_batch * utts_per_speaker,
        "views": views,
        "crop_seconds": crop_seconds,
        "workers": workers,
    }
