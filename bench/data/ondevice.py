"""Augmentation on the training device (``data.augment_on = "device"``).

The loader workers decode, crop and draw every view's parameters exactly as on the per-utterance
path (:class:`bench.data.augment.MultiViewAugmenter`), then ship the crop and the drawn sources
instead of the finished views. The training loop calls :func:`views_on_device` right after taking a
batch; it moves the batch to the device and applies each view slot batched in torch (FFT
convolution for reverb, scaled additions for noise/music/babble), so the arithmetic that dominates
the loader's CPU time runs where the model does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.data.augment import AUGMENTATIONS


@dataclass
class PendingViews:
    """A training batch whose views are still to be made: ``crops[B, T]`` float32 plus, per view slot,
    the view type and its collated draws (``params[v]``: name -> tensor ``[B, ...]``)."""

    crops: torch.Tensor
    view_types: list[str]
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, V, T)`` of the views this batch becomes."""
        return (self.crops.shape[0], len(self.view_types), self.crops.shape[1])

    def _map(self, fn) -> PendingViews:
        return PendingViews(fn(self.crops), list(self.view_types), [{k: fn(t) for k, t in p.items()} for p in self.params])

    def pin_memory(self) -> PendingViews:
        # called by the DataLoader's pin-memory thread (pin_memory=True on CUDA machines)
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PendingViews:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def views(self) -> torch.Tensor:
        """``views[B, V, T]`` float32 on the batch's device."""
        out = [AUGMENTATIONS.get(name).cls.apply_batch(self.crops, p) for name, p in zip(self.view_types, self.params)]
        return torch.stack(out, dim=1)


def collate_pending(items: list[tuple[np.ndarray, list[dict[str, Any]], int]], view_types: list[str]):
    """Loader items ``(crop[T], draws per view, label)`` -> ``(PendingViews, labels[B] int64)``."""
    crops = torch.from_numpy(np.stack([c for c, _, _ in items]))
    n = crops.shape[1]
    params = [AUGMENTATIONS.get(name).cls.collate([d[v] for _, d, _ in items], n) for v, name in enumerate(view_types)]
    labels = torch.tensor([lab for _, _, lab in items], dtype=torch.int64)
    return PendingViews(crops, list(view_types), params), labels


def views_on_device(waves: torch.Tensor | PendingViews, device: torch.device) -> torch.Tensor:
    """The training loop's hook: ``waves[B, V, T]`` as they are (``augment_on="loader"``), or a
    :class:`PendingViews` batch moved to ``device`` and augmented there. Returns ``[B, V, T]`` float32."""
    if isinstance(waves, PendingViews):
        with torch.no_grad():
            return waves.to(device, non_blocking=True).views()
    return waves
