"""Masked helpers shared by the backbones.

A mask is ``[B, T] bool`` with True on valid frames (a prefix of each row), or None when every frame
is valid. Backbones zero padded positions before every convolution with a temporal kernel, so a
padded batch gives the same embeddings as utterances run one by one (eval mode; in train mode
BatchNorm's batch statistics include padding, which the fixed-length training crops never have).
Statistics are taken in float32 so AMP cannot overflow the variance.
"""

from __future__ import annotations

import torch


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero padded frames of x [B, C, T] (or [B, C, F, T]); identity when mask is None."""
    if mask is None:
        return x
    shape = (mask.shape[0],) + (1,) * (x.dim() - 2) + (mask.shape[1],)
    return x * mask.view(shape).to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last (time) axis of x [B, C, T] restricted to valid frames -> [B, C]."""
    if mask is None:
        return x.mean(dim=-1)
    m = mask[:, None, :].to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def weighted_stats(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std over time. x, w [B, C, T] (w sums to 1 over T) -> ([B, C], [B, C]), float32."""
    x, w = x.float(), w.float()
    mean = (x * w).sum(-1)
    var = ((x - mean[..., None]).pow(2) * w).sum(-1)
    return mean, var.clamp_min(eps).sqrt()


def uniform_weights(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Weights [B, 1, T] equal to 1/valid on valid frames and 0 on padding (float32)."""
    b, t = like.shape[0], like.shape[-1]
    if mask is None:
        return torch.full((b, 1, t), 1.0 / t, device=like.device)
    m = mask[:, None, :].float()
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def downsample_mask(mask: torch.Tensor | None, stride: int) -> torch.Tensor | None:
    """Mask after a stride-``stride`` convolution with padding k // 2 (keeps ceil(len / stride) frames)."""
    if mask is None or stride == 1:
        return mask
    return mask[:, ::stride]
