"""The ECAPA-TDNN layers as they were before the speed work, kept as the reference the faster
implementations in models/ecapa.py must match at fixed weights (same parameters, same outputs).

Attentive statistics pooling as in the paper (and SpeechBrain): the global context is built as
``[x; mean; std]`` of shape [B, 3M, T] and fed whole to the first 1x1 convolution.
"""

from __future__ import annotations

import torch

from models.layers import uniform_weights, weighted_stats


def pool_forward(pool, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``models.ecapa.AttentiveStatsPool.forward`` before the context was folded into a bias."""
    t = x.shape[-1]
    mean, std = weighted_stats(x, uniform_weights(mask, x))
    ctx = torch.cat([x, mean[..., None].expand(-1, -1, t).to(x.dtype), std[..., None].expand(-1, -1, t).to(x.dtype)], 1)
    logits = pool.conv(torch.tanh(pool.tdnn(ctx, mask))).float()
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, :], torch.finfo(torch.float32).min)
    w = torch.softmax(logits, dim=-1)
    mean, std = weighted_stats(x, w)
    return torch.cat([mean, std], dim=1)


def reference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of a SpeakerModel/ECAPA whose pooling layers run the reference forward."""
    import copy
    import types

    from models.ecapa import AttentiveStatsPool

    ref = copy.deepcopy(model)
    for mod in ref.modules():
        if isinstance(mod, AttentiveStatsPool):
            mod.forward = types.MethodType(pool_forward, mod)
    return ref
