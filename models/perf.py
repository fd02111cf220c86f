"""Throughput of a backbone (with its frontend): training steps and inference, in samples per second.

Used by the perf suite (``bench perf``); not a test. Example (not run as a doctest: it times for a second):
    >>> time_backbone("tiny", {}, batch=4, seconds=1.0, repeats=1)["infer_samples_per_s"] > 0  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.config import ModelConfig

SAMPLE_RATE = 16000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (device synchronised)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def time_module(
    model: nn.Module,
    make_input: Callable[[], tuple[torch.Tensor, ...]],
    batch: int,
    repeats: int = 3,
    device: torch.device | str = "cpu",
    amp: str = "none",
    lr: float = 0.01,
) -> dict[str, Any]:
    """Time an SGD training step (forward, sum-of-squares loss, backward, step) and a no-grad forward.

    ``make_input()`` returns the positional inputs of ``model``; ``batch`` is their batch size. Works for
    any embedding module, e.g. a peer toolkit's ECAPA fed with precomputed features. Numbers are the
    median over ``repeats``; ``*_s`` lists keep every timing for the report.
    """
    device = torch.device(device)
    model = model.to(device)
    inputs = tuple(x.to(device) for x in make_input())
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            emb = model(*inputs)
        # A loss on the embedding alone keeps the timing about the backbone, not a classifier head.
        emb.float().pow(2).mean().backward()
        opt.step()

    @torch.no_grad()
    def infer() -> None:
        with autocast():
            model(*inputs)

    model.train()
    train = time_callable(train_step, device, repeats)
    model.eval()
    inf = time_callable(infer, device, repeats)
    t_train, t_inf = statistics.median(train), statistics.median(inf)
    return {
        "batch": batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "amp": amp,
        "params": sum(p.numel() for p in model.parameters()),
        "train_step_s": train,
        "infer_s": inf,
        "train_samples_per_s": batch / t_train,
        "infer_samples_per_s": batch / t_inf,
    }


def time_backbone(
    name: str,
    params: dict[str, Any] | None = None,
    batch: int = 32,
    seconds: float = 2.0,
    repeats: int = 3,
    device: torch.device | str = "cpu",
    amp: str = "none",
    seed: int = 0,
) -> dict[str, Any]:
    """Training and inference samples/s of registry backbone ``name`` with the fbank frontend.

    Input is ``batch`` random crops of ``seconds`` at 16 kHz, so the frontend's cost is included,
    as in training. Returns time_module's dict plus ``backbone``, ``params_cfg`` and ``seconds``.
    """
    from models import build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone=name, params=dict(params or {})))
    wave = torch.randn(batch, int(seconds * SAMPLE_RATE)) * 0.1
    out = time_module(model, lambda: (wave,), batch, repeats=repeats, device=device, amp=amp)
    return {"backbone": name, "params_cfg": dict(params or {}), "seconds": seconds, **out}
