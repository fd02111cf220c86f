"""The training loader: random fixed-length crops, V augmented views, speaker-balanced batches.

Each item's randomness (crop offset, speed factor, every view's augmentation) comes from a
generator seeded with ``(seed, epoch, global batch, position in batch)``, so a batch is the same
whatever ``data.workers``, the world size, or the batch a resumed run starts from.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.config import DataConfig
from bench.data import cache
from bench.data.augment import MultiViewAugmenter, repeat_pad, speed_perturb
from bench.data.corpus import Corpus
from bench.data.sampler import SpeakerBalancedBatchSampler
from bench.errors import BenchError
from bench.procs import die_with_parent


class CropDataset(Dataset):
    """``ds[(batch, position, utt)] -> (views[V, T] float32, label)`` for one epoch; with
    ``data.augment_on="device"`` ``(crop[T] float32, the views' draws, label)`` instead.

    On an unreadable file with ``data.skip_bad`` the next utterance of the same speaker is used
    (and a warning names the file); otherwise the BenchError propagates.
    """

    def __init__(self, corpus: Corpus, data_cfg: DataConfig, *, seed: int, epoch: int,
                 augmenter: MultiViewAugmenter | None = None):
        train = corpus.train
        self.paths = train["path"].tolist()
        self.frames = np.round(train["duration"].to_numpy() * data_cfg.sample_rate).astype(np.int64)
        self.labels = corpus.train_labels()
        self.cfg = data_cfg
        self.seed, self.epoch = seed, epoch
        self.length = int(round(data_cfg.crop_seconds * data_cfg.sample_rate))
        self.augmenter = augmenter if augmenter is not None else MultiViewAugmenter(data_cfg)

    def __len__(self) -> int:
        return len(self.paths)

    def crop(self, utt: int, rng: np.random.Generator) -> np.ndarray:
        """float32 ``[T]``: a random window of ``crop_seconds``, repeat-padded when shorter."""
        path, total, sr = self.paths[utt], int(self.frames[utt]), self.cfg.sample_rate

        def read(n: int) -> np.ndarray:
            if total > n:
                off = int(rng.integers(0, total - n + 1))
                x = cache.cached_read(path, sr, self.cfg.resample, offset=off, frames=n)
            else:
                x = cache.cached_read(path, sr, self.cfg.resample)
            return repeat_pad(x, n)

        if self.cfg.speed_perturb:
            return speed_perturb(read, self.length, rng)
        return read(self.length)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[np.ndarray, int]:
        b, j, utt = item
        rng = np.random.default_rng([self.seed, self.epoch, b, j])
        label = int(self.labels[utt])
        try:
            crop = self.crop(utt, rng)
        except BenchError as e:
            if not self.cfg.skip_bad:
                raise
            warnings.warn(f"skipping unreadable training file: {e}", stacklevel=2)
            crop = self.crop(self._substitute(utt), rng)
        draws = self.augmenter.draw(len(crop), rng)
        if self.cfg.augment_on == "device":
            return crop, draws, label  # the views are made on the training device (bench.data.ondevice)
        return self.augmenter.apply(crop, draws), label

    def _substitute(self, utt: int) -> int:
        same = np.flatnonzero(self.labels == self.labels[utt])
        return int(same[(np.searchsorted(same, utt) + 1) % len(same)])


def collate(items: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items into ``waves[B, V, T]`` float32 and ``labels[B]`` int64."""
    waves = torch.from_numpy(np.stack([w for w, _ in items]))
    labels = torch.tensor([lab for _, lab in items], dtype=torch.int64)
    return waves, labels


def _collate_fn(data_cfg: DataConfig, view_types: list[str]):
    if data_cfg.augment_on == "device":
        from bench.data.ondevice import collate_pending

        return functools.partial(collate_pending, view_types=view_types)
    return collate


def _worker_init(parent_pid: int, _: int) -> None:
    # a worker dies with the main process (never an orphan holding its files or its run lock)
    die_with_parent(parent_pid)
    # augmentation is numpy/scipy work per item: one thread for torch and the BLAS pools
    from bench.threads import worker_init

    worker_init()


def make_train_loader(
    corpus: Corpus,
    data_cfg: DataConfig,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    num_batches: int | None = None,
) -> DataLoader:
    """A DataLoader yielding ``(waves[B/world_size, V, T] float32, labels[B/world_size] int64)``;
    with ``data.augment_on="device"`` ``waves`` is a :class:`bench.data.ondevice.PendingViews` that
    ``views_on_device`` turns into those views on the training device.

    ``len(loader)`` is the number of batches it yields: the epoch (``num_batches`` or about one pass
    over the training utterances) minus ``start_batch``. Extra attributes: ``loader.num_batches``
    (whole epoch), ``loader.bad_files`` (``corpus.bad_files``), ``loader.view_types``.

    Raises:
        BenchError: at once (not mid-epoch) for missing noise/RIR folders, unknown view types or a
            batch shape the corpus or world size cannot provide.
    """
    data_cfg.validate()
    cache.configure(data_cfg.cache_mb)
    augmenter = MultiViewAugmenter(data_cfg)
    dataset = CropDataset(corpus, data_cfg, seed=seed, epoch=epoch, augmenter=augmenter)
    sampler = SpeakerBalancedBatchSampler(
        dataset.labels, data_cfg.speakers_per_batch, data_cfg.utts_per_speaker, seed=seed, epoch=epoch,
        rank=rank, world_size=world_size, start_batch=start_batch, num_batches=num_batches)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=data_cfg.workers,
        collate_fn=_collate_fn(data_cfg, augmenter.view_types),
        worker_init_fn=functools.partial(_worker_init, os.getpid()) if data_cfg.workers > 0 else None,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if data_cfg.workers > 0 else None,
    )
    loader.num_batches = sampler.num_batches
    loader.bad_files = list(corpus.bad_files)
    loader.view_types = list(augmenter.view_types)
    return loader
