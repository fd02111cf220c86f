"""Atomic training checkpoints: everything needed to continue a run bit-for-bit.

A checkpoint is a dict saved with ``torch.save`` through :func:`bench.io.atomic_save`, so a kill
during the write leaves the previous checkpoint intact. Keys: ``model``, ``loss`` (classifier
weights), ``optimizer``, ``scheduler``, ``scaler``, ``margin`` (margin scheduler), ``rng``
(python/numpy/torch/cuda generator states), ``state`` (epoch, batch position in the epoch = the
sampler position, counters, history) and ``config`` (the resolved config as a dict); under
``train.ema_decay > 0`` also ``ema`` (the averaged weights, the ones validated and scored) and
``ema_updates`` (how many steps they average).
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.io import atomic_save

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """States of every random generator the training step may touch."""
    out: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temp file + fsync + rename)."""
    data = dict(payload, format_version=FORMAT_VERSION)
    atomic_save(path, lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file is a BenchError naming it."""
    p = Path(path)
    if not p.exists():
        raise BenchError("checkpoint not found", path=p)
    try:
        # weights_only=False: the payload holds numpy/python RNG states and plain-python history.
        data = torch.load(p, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
        raise BenchError(f"unreadable checkpoint ({type(e).__name__}: {str(e)[:200]})", path=p) from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "model" not in data:
        raise BenchError("not a bench run checkpoint (missing keys or other format version)", path=p)
    return data


def scored_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The model weights a checkpoint's run validates and scores: the averaged ones (``ema``) when
    the run kept a weight average (``train.ema_decay > 0``), else the trained ones (``model``)."""
    weights = ckpt.get("ema")
    return weights if weights is not None else ckpt["model"]
