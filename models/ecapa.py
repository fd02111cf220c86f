"""ECAPA-TDNN (Desplanques et al., Interspeech 2020).

Layout for width C (``channels``), input F mel bins, ``mfa_channels`` M (1536 in the paper for both
C=512 and C=1024), embedding D:

    Conv1d(F->C, k=5)+ReLU+BN -> 3 x SE-Res2Block(k=3, dilation 2/3/4, Res2Net scale 8, SE bottleneck 128)
    -> concat of the three block outputs [B, 3C, T] -> Conv1d(3C->M, k=1)+ReLU+BN
    -> attentive statistics pooling with global context (mean/std over time appended to every frame)
    -> BN(2M) -> Linear(2M->D) -> BN(D)

Parameter counts with F=80, D=192: C=512 6.19 M, C=1024 14.66 M (paper: 6.2 M and 14.7 M).
Convolutions use zero padding and every temporal convolution's input is masked, so padded frames
never reach valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import BenchError
from models import BACKBONES
from models.base import Backbone
from models.layers import apply_mask, masked_mean, uniform_weights, weighted_stats


@dataclass
class ECAPAConfig:
    """ECAPA-TDNN width and head sizes."""

    channels: int = 512  # C: width of the SE-Res2Blocks
    embed_dim: int = 192
    attention_channels: int = 128  # bottleneck of the attentive pooling
    scale: int = 8  # Res2Net scale (channel groups per block)
    se_channels: int = 128  # squeeze-excitation bottleneck
    mfa_channels: int = 1536  # output of the multi-layer feature aggregation

    def validate(self) -> None:
        for name in ("channels", "embed_dim", "attention_channels", "se_channels", "mfa_channels"):
            if getattr(self, name) < 1:
                raise BenchError(f"ecapa.{name} must be >= 1, got {getattr(self, name)}")
        if self.scale < 2 or self.channels % self.scale:
            raise BenchError(f"ecapa.channels ({self.channels}) must be divisible by scale ({self.scale}) >= 2")


class TDNNBlock(nn.Module):
    """Conv1d + ReLU + BatchNorm, output masked. [B, Cin, T] -> [B, Cout, T]."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return apply_mask(self.bn(torch.relu(self.conv(x))), mask)


class Res2Conv(nn.Module):
    """Res2Net hierarchy: split C into ``scale`` groups; group i>0 is convolved after adding group i-1's output."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        outs = [chunks[0]]
        y = chunks[0]
        for i, conv in enumerate(self.convs):
            y = conv(chunks[i + 1] if i == 0 else chunks[i + 1] + y, mask)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the masked time average. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, bottleneck)
        self.fc2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(masked_mean(x, mask)))))
        return x * s[:, :, None].to(x.dtype)


class SERes2Block(nn.Module):
    """1x1 TDNN -> Res2 dilated conv -> 1x1 TDNN -> SE, plus identity residual. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, se_channels: int):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1)
        self.res2 = Res2Conv(channels, kernel, dilation, scale)
        self.tdnn2 = TDNNBlock(channels, channels, 1)
        self.se = SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        y = self.tdnn2(self.res2(self.tdnn1(x, mask), mask), mask)
        out: torch.Tensor = self.se(y, mask) + x
        return out


class AttentiveStatsPool(nn.Module):
    """Channel- and context-dependent attentive statistics pooling. [B, M, T] -> [B, 2M] float32.

    Each frame's attention logits see the frame plus the utterance's (masked) mean and std, so the
    weights depend on global properties such as noise level or duration.

    The context is never materialised as the paper's ``[x; mean; std]`` of shape [B, 3M, T]: the
    mean and std columns are constant over time, so their share of the first 1x1 convolution is a
    per-utterance bias, ``W_x x + (W_m mean + W_s std)``. Same function and parameters (the
    convolution keeps its [A, 3M, 1] weight), two thirds fewer multiply-adds in that layer and no
    [B, 3M, T] tensor to build and back-propagate through (1.2x the whole C=512 training step on CPU).
    """

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNNBlock(3 * channels, attention_channels, 1)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        m = x.shape[1]
        mean, std = weighted_stats(x, uniform_weights(mask, x))
        conv = self.tdnn.conv
        w = conv.weight[:, :, 0]  # [A, 3M]: frame, mean and std columns
        ctx = nn.functional.linear(torch.cat([mean, std], 1).to(x.dtype), w[:, m:], conv.bias)  # [B, A]
        h = nn.functional.conv1d(x, conv.weight[:, :m]) + ctx[:, :, None]
        h = apply_mask(self.tdnn.bn(torch.relu(h)), mask)
        logits = self.conv(torch.tanh(h)).float()
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, :], torch.finfo(torch.float32).min)
        w = torch.softmax(logits, dim=-1)
        mean, std = weighted_stats(x, w)
        return torch.cat([mean, std], dim=1)


@BACKBONES.register("ecapa", ECAPAConfig, "ECAPA-TDNN: SE-Res2Blocks, multi-layer aggregation, attentive stats pooling")
class ECAPA(Backbone):
    """ECAPA-TDNN. ``forward(feats[B, F, T], mask[B, T] | None) -> embedding[B, embed_dim]`` (float32)."""

    def __init__(self, cfg: ECAPAConfig, in_features: int = 80):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        c = cfg.channels
        self.layer1 = TDNNBlock(in_features, c, kernel=5)
        self.blocks = nn.ModuleList(SERes2Block(c, 3, d, cfg.scale, cfg.se_channels) for d in (2, 3, 4))
        self.mfa = TDNNBlock(3 * c, cfg.mfa_channels, 1)
        self.pool = AttentiveStatsPool(cfg.mfa_channels, cfg.attention_channels)
        self.pool_bn = nn.BatchNorm1d(2 * cfg.mfa_channels)
        self.fc = nn.Linear(2 * cfg.mfa_channels, cfg.embed_dim)
        self.out_bn = nn.BatchNorm1d(cfg.embed_dim)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.layer1(feats, mask)
        outs = []
        for block in self.blocks:
            x = block(x, mask)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1), mask)
        emb: torch.Tensor = self.out_bn(self.fc(self.pool_bn(self.pool(x, mask))))
        return emb.float()
