"""Thin ResNet34 on the (frequency x time) log-mel plane, as in speaker toolkits (e.g. WeSpeaker).

``base_channels`` b (32): Conv3x3(1->b)+BN+ReLU, then BasicBlock stages [3, 4, 6, 3] with widths
b, 2b, 4b, 8b and stride 2 (frequency and time) at the start of stages 2-4. Statistics pooling takes
the masked mean and std over time of the flattened (channel x frequency) map, [B, 8b * F/8 * 2],
followed by one Linear to the embedding. With F=80, b=32, D=256: 6.63 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.errors import BenchError
from models import BACKBONES
from models.base import Backbone
from models.layers import apply_mask, downsample_mask, uniform_weights, weighted_stats


@dataclass
class ResNetConfig:
    """ResNet width, depth and embedding size."""

    base_channels: int = 32
    embed_dim: int = 256
    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])

    def validate(self) -> None:
        if self.base_channels < 1 or self.embed_dim < 1:
            raise BenchError("resnet base_channels and embed_dim must be >= 1")
        if not self.layers or any(n < 1 for n in self.layers):
            raise BenchError(f"resnet layers must be positive block counts, got {self.layers}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with identity (or 1x1 projection) shortcut. [B, Cin, F, T] -> [B, Cout, F/s, T/s]."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = downsample_mask(mask, self.stride)
        y = apply_mask(torch.relu(self.bn1(self.conv1(x))), mask)
        y = self.bn2(self.conv2(y))
        return apply_mask(torch.relu(y + self.shortcut(x)), mask), mask


@BACKBONES.register("resnet34", ResNetConfig, "thin ResNet34 (base 32 channels) with statistics pooling")
class ResNet(Backbone):
    """``forward(feats[B, F, T], mask[B, T] | None) -> embedding[B, embed_dim]`` (float32)."""

    def __init__(self, cfg: ResNetConfig, in_features: int = 80):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        b = cfg.base_channels
        self.stem = nn.Sequential(nn.Conv2d(1, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        blocks: list[BasicBlock] = []
        cin, freq = b, in_features
        for i, n in enumerate(cfg.layers):
            cout, stride = b * 2**i, (1 if i == 0 else 2)
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
            if stride == 2:
                freq = (freq - 1) // 2 + 1
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(2 * cin * freq, cfg.embed_dim)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = apply_mask(self.stem(feats[:, None]), mask)
        for block in self.blocks:
            x, mask = block(x, mask)
        x = x.flatten(1, 2)  # [B, C * F', T']
        mean, std = weighted_stats(x, uniform_weights(mask, x))
        emb: torch.Tensor = self.fc(torch.cat([mean, std], dim=1))
        return emb.float()
