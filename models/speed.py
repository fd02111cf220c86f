"""Per-device speed settings of a training model, switched on automatically only where they were
measured to help (:data:`SPEEDUPS`): today ``torch.compile`` for long ECAPA runs on CPU.

Measurements (CPU: 2-core AVX-512 Xeon shared with other jobs, 1 torch thread, training-step medians
of interleaved A/B runs in one process, batch 8-16 of 2 s crops):

* ECAPA C=512, ``torch.compile``: 1.24x and 1.31x per step (CPU time, batch 16) once compiled, outputs
  equal within float32 tolerance; the first compiled step took 100 s and each later one saved 0.17 s
  or more (more at larger batches), so compilation is chosen for runs of 1,000 steps or more.
* ResNet34, channels-last memory format: 1.16x and 1.26x per step, but NOT used. With torch 2.11 its
  CPU backward pass gives gradients 1 % away from the contiguous layout's (thread-count noise: 1e-6)
  at ``base_channels=16`` and crashes the process (segfault, "double free") at 4 and 8. ECAPA's
  layers are 1D convolutions, which have no channels-last layout.

No GPU figures yet, so on CUDA nothing is switched on automatically (``train.compile=true`` still
compiles on any device). A new entry needs a measurement, not a belief.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn


@dataclass(frozen=True)
class Speedup:
    """What helps one backbone on one device type. ``compile_min_steps``: compile automatically when
    the run has at least this many training steps (compile time over time saved per step, rounded up
    generously); None: never automatically."""

    compile_min_steps: int | None = None
    evidence: str = ""


SPEEDUPS: dict[tuple[str, str], Speedup] = {
    ("ecapa", "cpu"): Speedup(compile_min_steps=1000, evidence="compiled training step 1.24-1.31x; compile 100 s"),
}


def should_compile(backbone: str, device: torch.device | str, *, steps: int, compile: bool = False) -> bool:
    """Whether to compile ``backbone`` for ``steps`` training steps on ``device``; ``compile=True``
    (``train.compile``) forces it whatever the table says."""
    s = SPEEDUPS.get((backbone, torch.device(device).type), Speedup())
    return compile or (s.compile_min_steps is not None and steps >= s.compile_min_steps)


def prepare_for_training(
    model: nn.Module, backbone: str, device: torch.device | str, *, steps: int, compile: bool = False
) -> nn.Module:
    """What the training loop calls: ``torch.compile``'s wrapper of ``model`` where
    :func:`should_compile` says so, else ``model`` itself."""
    if not should_compile(backbone, device, steps=steps, compile=compile):
        return model
    # torch.compile's stub types its result as a plain callable; given a Module it returns an
    # OptimizedModule, which is an nn.Module
    return cast(nn.Module, torch.compile(model))
