"""Loader throughput for the benchmark suite (``bench perf``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.config import DataConfig


def write_fixture(root: str | Path) -> Path:
    """A small corpus for loader timing: 16 speakers x 4 utterances of 3-5 s (FLAC) plus MUSAN and
    RIR folders, in CN-Celeb1 layout under ``root``."""
    from bench.data import fixtures

    root = Path(root)
    fixtures.write_cnceleb1(root, train_speakers=16, utts=4, eval_speakers=1, seconds=(3.0, 5.0))
    fixtures.write_musan_rirs(root, files=4, seconds=5.0)
    return root


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
    augment_on: str = "loader",
    device: str = "cpu",
) -> dict:
    """Training views per second through ``make_train_loader`` and, for ``augment_on="device"``, the
    training loop's ``views_on_device`` hook on ``device`` (decode, crop, augment all views).

    Without ``root`` the :func:`write_fixture` corpus is written to a temporary folder. The first
    ``warmup`` batches (worker start, file caches) are not timed. The loader and the device step are
    timed apart: ``loader_cpu_ms_per_crop`` is the CPU the loader spends per crop (with ``workers=0``
    all of it, in this process; robust to other load on the machine), ``device_ms_per_crop`` the wall
    time of making the views on the device (0 on the loader path).

    Returns:
        dict with ``crops_per_s``, ``views_per_s``, ``seconds``, ``cpu_ms_per_crop`` (loader and
        device step together), ``loader_cpu_ms_per_crop``, ``device_ms_per_crop``, ``batches``,
        ``batch_size``, ``views``, ``crop_seconds``, ``workers``, ``augment_on``, ``device``.
    """
    import torch

    from bench.data.corpus import load_corpus
    from bench.data.loader import make_train_loader
    from bench.data.ondevice import views_on_device

    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        if root is None:
            root = write_fixture(tmp)
            corpus = "cnceleb"
        cfg = DataConfig(corpus=corpus, root=str(root), views=views, view_types=list(view_types),
                         crop_seconds=crop_seconds, speakers_per_batch=speakers_per_batch,
                         utts_per_speaker=utts_per_speaker, workers=workers, augment_on=augment_on)
        data = load_corpus(cfg)
        loader = make_train_loader(data, cfg, seed=0, epoch=0, num_batches=batches + warmup)
        it = iter(loader)
        for _ in range(warmup):
            views_on_device(next(it)[0], dev)
        sync()
        n, loader_s, loader_cpu, device_s, device_cpu = 0, 0.0, 0.0, 0.0, 0.0
        while True:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                waves, _ = next(it)
            except StopIteration:
                break
            t1, c1 = time.perf_counter(), time.process_time()
            out = views_on_device(waves, dev)
            sync()
            device_s += time.perf_counter() - t1
            device_cpu += time.process_time() - c1
            loader_s += t1 - t0
            loader_cpu += c1 - c0
            n += out.shape[0]
    seconds = loader_s + device_s

    def per_crop(x: float) -> float:
        return 1000 * x / n if n else float("nan")

    return {
        "crops_per_s": n / seconds if seconds > 0 else float("nan"),
        "views_per_s": n * views / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        "cpu_ms_per_crop": per_crop(loader_cpu + device_cpu),
        "loader_cpu_ms_per_crop": per_crop(loader_cpu),
        "device_ms_per_crop": per_crop(device_s),
        "batches": batches,
        "batch_size": speakers_per_batch * utts_per_speaker,
        "views": views,
        "crop_seconds": crop_seconds,
        "workers": workers,
        "augment_on": augment_on,
        "device": str(dev),
    }
