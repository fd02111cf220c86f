"""Cost of one loss step (forward + backward) for each registry loss, for the perf suite.

Not a test: it measures. Inputs are random ``embeddings[B, V, D]`` with a speaker-balanced label
layout (``utts_per_speaker`` utterances of each of ``B / utts_per_speaker`` speakers), as the
training sampler produces. The backward pass reaches both the embeddings and the loss's own
parameters (classifier centres), as in training.

Example:
    >>> rows = time_losses(["supcon"], batch=8, views=2, embed_dim=16, num_classes=10, repeats=1)
    >>> rows[0]["loss"], rows[0]["fwd_bwd_ms"] > 0
    ('supcon', True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from losses import LOSSES
from losses.base import LossOutput


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_losses(
    names: Sequence[str] | None = None,
    *,
    batch: int = 256,
    views: int = 5,
    embed_dim: int = 192,
    num_classes: int = 2793,
    utts_per_speaker: int = 2,
    repeats: int = 5,
    warmup: int = 2,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Median forward+backward wall time of each loss in ``names`` (default: every registry entry).

    ``dtype`` is the embedding dtype (fp16/bf16 mimic an AMP backbone output); ``params`` maps a
    loss name to registry parameter overrides. Each row: ``loss``, ``fwd_bwd_ms`` (median wall),
    ``min_ms`` (fastest wall), ``cpu_ms`` (median process CPU time), ``times_ms`` (all repeats),
    ``batch``, ``views``, ``embed_dim``, ``num_classes``, ``device``, ``dtype``, ``threads``,
    ``loss_value``.
    """
    device = torch.device(device)
    names = list(names) if names is not None else LOSSES.names()
    g = torch.Generator().manual_seed(seed)
    n_spk = max(1, batch // utts_per_speaker)
    speakers = torch.randperm(num_classes, generator=g)[:n_spk]
    labels = speakers.repeat_interleave(utts_per_speaker)[:batch]
    if labels.numel() < batch:
        labels = torch.cat([labels, speakers[: batch - labels.numel()]])
    base = torch.randn(batch, views, embed_dim, generator=g)
    labels = labels.to(device)
    rows = []
    for name in names:
        torch.manual_seed(seed)
        loss_fn = LOSSES.build(name, (params or {}).get(name, {}), embed_dim, num_classes).to(device)
        emb = base.to(device=device, dtype=dtype).requires_grad_(True)

        def step(loss_fn: torch.nn.Module = loss_fn, emb: torch.Tensor = emb) -> torch.Tensor:
            emb.grad = None
            loss_fn.zero_grad(set_to_none=True)
            out: LossOutput = loss_fn(emb, labels)
            out.loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            return out.loss.detach()

        for _ in range(warmup):
            step()
        _sync(device)
        times, cpu_times = [], []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            value = step()
            _sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
            cpu_times.append((time.process_time() - c0) * 1000.0)
        rows.append(
            {
                "loss": name,
                "fwd_bwd_ms": statistics.median(times),
                "min_ms": min(times),
                # CPU seconds of this process: on a shared machine far steadier than wall time
                "cpu_ms": statistics.median(cpu_times),
                "times_ms": times,
                "batch": batch,
                "views": views,
                "embed_dim": embed_dim,
                "num_classes": num_classes,
                "device": str(device),
                "dtype": str(dtype).replace("torch.", ""),
                "threads": torch.get_num_threads(),
                "loss_value": float(value),
            }
        )
    return rows


if __name__ == "__main__":
    from bench.io import to_json

    torch.set_num_threads(1)
    for row in time_losses():
        print(to_json({k: v for k, v in row.items() if k != "times_ms"}, indent=None, sort_keys=False))
