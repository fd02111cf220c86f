"""Shared helpers of the runner tests: a tiny CN-Celeb-layout corpus and a rank-aware stand-in loader.

The stand-in loader draws the global batch from (seed, epoch, batch) alone and gives rank r rows
``[r*b, (r+1)*b)`` of it, so single-process and 2-process training see the same global batch; it
keeps the runner tests independent of the augmentation pipeline.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch

from bench.config import DataConfig, ExperimentConfig, load_config

CROP = 4000  # 0.25 s at 16 kHz: enough frames for the tiny ECAPA, cheap on one core


def make_corpus(root: Path):
    from bench.data.corpus import load_corpus
    from bench.data.fixtures import write_cnceleb1

    if not (root / "dev").exists():
        write_cnceleb1(root, train_speakers=6, utts=4, eval_speakers=3, test_utts=2, val_speakers=3, seed=0)
    return load_corpus(DataConfig(corpus="cnceleb", root=str(root)))


#: the `tiny` ECAPA narrowed further, shared by every test that trains: seconds per run on one core
TINY_MODEL = [
    "model.params.channels=32",
    "model.params.embed_dim=16",
    "model.params.attention_channels=8",
    "model.params.se_channels=8",
    "model.params.mfa_channels=96",
    "model.frontend.n_mels=24",
]

TINY_SETS = [
    *TINY_MODEL,
    "model.frontend.specaug=false",
    "data.speakers_per_batch=4",
    "data.utts_per_speaker=2",
    "data.views=2",
    "optim.optimizer=sgd",
    "optim.lr=0.05",
    "optim.scheduler=cosine",
    "train.epochs=2",
    "train.steps_per_epoch=3",
    "train.log_every=1",
    "eval.batch_size=8",
]


def tiny_config(**over) -> ExperimentConfig:
    """A config whose training steps take ~0.1 s on one core: tiny ECAPA narrowed further, no SpecAugment."""
    return load_config(overrides=TINY_SETS + [f"{k}={v}" for k, v in over.items()])


_WAVES: dict[str, np.ndarray] = {}


def _wave(path: str) -> np.ndarray:
    if path not in _WAVES:
        from bench.data.audio import read_audio

        _WAVES[path] = read_audio(path)
    return _WAVES[path]


class FakeLoader:
    """Yields ``(waves[b, V, CROP], labels[b])`` for batches ``start_batch..steps-1`` of one epoch."""

    def __init__(
        self, corpus, cfg: ExperimentConfig, *, epoch: int, rank: int, world: int, start_batch: int, steps: int
    ):
        self.corpus, self.cfg, self.epoch = corpus, cfg, epoch
        self.rank, self.world, self.start, self.steps = rank, world, start_batch, steps

    def __len__(self) -> int:
        return self.steps

    def global_batch(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.data
        rng = np.random.default_rng([self.cfg.train.seed, self.epoch, batch])
        train = self.corpus.train
        spk = rng.choice(len(self.corpus.speakers), d.speakers_per_batch, replace=False)
        waves, labels = [], []
        for s in spk:
            rows = train[train["speaker"] == self.corpus.speakers[s]]
            for i in rng.choice(len(rows), d.utts_per_speaker, replace=False):
                w = _wave(rows.iloc[i]["path"])
                w = np.tile(w, -(-CROP // len(w)) + 1)
                off = int(rng.integers(0, len(w) - CROP))
                crop = w[off : off + CROP]
                views = [crop + 0.01 * rng.standard_normal(CROP).astype(np.float32) for _ in range(d.views)]
                waves.append(np.stack(views))
                labels.append(int(s))
        return torch.from_numpy(np.stack(waves)).float(), torch.tensor(labels, dtype=torch.int64)

    def __iter__(self):
        for b in range(self.start, self.steps):
            w, y = self.global_batch(b)
            n = len(y) // self.world
            yield w[self.rank * n : (self.rank + 1) * n], y[self.rank * n : (self.rank + 1) * n]


def fake_loader(corpus, cfg, *, epoch, info, start_batch):
    return FakeLoader(
        corpus,
        cfg,
        epoch=epoch,
        rank=info.rank,
        world=info.world_size,
        start_batch=start_batch,
        steps=max(cfg.train.steps_per_epoch, 1),
    )


class Crash(Exception):
    """What :func:`crashing_loader` raises: a simulated kill of the training process."""


def crashing_loader(after: int):
    """A :func:`fake_loader` that raises :class:`Crash` once ``after`` batches have been served in
    total, over all epochs (a kill mid-run; a resumed run then continues from its checkpoint)."""
    served = [0]

    def fn(corpus, cfg, *, epoch, info, start_batch):
        for item in fake_loader(corpus, cfg, epoch=epoch, info=info, start_batch=start_batch):
            if served[0] == after:
                raise Crash
            served[0] += 1
            yield item

    return fn


def ensure_metrics() -> None:
    """Install a brute-force stand-in for bench.metrics while the real module is not in the tree."""
    try:
        import bench.metrics  # noqa: F401

        return
    except ImportError:
        pass

    def compute_metrics(scores, labels, p_targets=(0.01, 0.05)):
        s, y = np.asarray(scores, float), np.asarray(labels, bool)
        best = (2.0, 0.0)
        for t in np.unique(s):
            fr, fa = np.mean(s[y] < t), np.mean(s[~y] >= t)
            if abs(fr - fa) < best[0]:
                best = (abs(fr - fa), (fr + fa) / 2)
        out = {"eer": 100 * best[1], "n_target": int(y.sum()), "n_nontarget": int((~y).sum())}
        for p in p_targets:
            out[f"mindcf@{p}"] = 0.0
        return out

    mod = types.ModuleType("bench.metrics")
    mod.compute_metrics = compute_metrics
    sys.modules["bench.metrics"] = mod


def register_probe_backbone() -> str:
    """A BatchNorm-free backbone (conv + mean pooling + linear) for the DDP equality test.

    BatchNorm normalises with per-rank statistics under DDP (SyncBatchNorm has no CPU kernel), so a
    model with BatchNorm is not expected to match single-process training on the global batch.
    """
    from dataclasses import dataclass

    from models import BACKBONES
    from models.base import Backbone

    name = "_ddp_probe"
    if name in BACKBONES:
        return name

    @dataclass
    class ProbeConfig:
        channels: int = 16
        embed_dim: int = 8

    @BACKBONES.register(name, ProbeConfig, "test-only BatchNorm-free backbone")
    class Probe(Backbone):
        def __init__(self, cfg, in_features: int):
            super().__init__()
            self.conv = torch.nn.Conv1d(in_features, cfg.channels, 3, padding=1)
            self.out = torch.nn.Linear(cfg.channels, cfg.embed_dim)
            self.embed_dim = cfg.embed_dim

        def forward(self, feats, mask=None):
            return self.out(torch.relu(self.conv(feats)).mean(-1))

    return name
