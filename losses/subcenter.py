"""Sub-center AAM softmax with the optional inter-top-k penalty (WeSpeaker's ``ArcMarginProduct_intertopk_subcenter``).

Each class c has K sub-centres ``W[c*K + k]``; a row's cosine to the class is the largest over them,
``cos(theta_c) = max_k cos(x, W_ck)`` (Deng et al., "Sub-center ArcFace", ECCV 2020), so noisy or
multi-modal classes need not collapse onto one centre. The target gets the ArcFace margin,
``s * cos(theta_y + m)`` (with the monotonic fallback of :func:`additive_angular_margin`). The
inter-top-k penalty (Zhao et al., "Multi-query multi-head attention pooling and inter-topK penalty
for speaker verification", ICASSP 2022, arXiv 2110.05042) makes the ``topk`` non-target classes
with the largest cosines harder: their logits become ``s * cos(theta_j - m')`` with
``m' = topk_margin``. With ``subcenters = 1`` and ``topk = 0`` the loss is exactly ``aam``.

Defaults are WeSpeaker's (s = 32, m = 0.2, K = 3, top-5 with m' = 0.06). The margin schedule
multiplies both m and m' (WeSpeaker grows m' in proportion to m).

Example:
    >>> import torch
    >>> from losses import LOSSES
    >>> _ = torch.manual_seed(0)
    >>> loss = LOSSES.build("subcenter_aam", {"topk": 2}, 16, 10)
    >>> tuple(loss.classifier.weight.shape)  # [C * K, D]
    (30, 16)
    >>> out = loss(torch.randn(4, 2, 16), torch.tensor([0, 1, 2, 3]))
    >>> out.loss.shape, sorted(out.parts)
    (torch.Size([]), ['subcenter_aam'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from losses import LOSSES
from losses.base import LossOutput
from losses.classification import (
    _SIN_EPS,
    CosineClassifier,
    _check_angular_margin,
    _check_scale,
    _ScheduledMargin,
    additive_angular_margin,
    check_shapes,
    flatten_views,
    float32_logits,
)


@dataclass
class SubcenterAAMConfig:
    scale: float = 32.0
    margin: float = 0.2
    #: K, the number of sub-centres per class
    subcenters: int = 3
    #: number of hardest non-target classes that get the inter-top-k penalty (0: none)
    topk: int = 5
    #: m', the angular penalty of those classes, radians
    topk_margin: float = 0.06
    easy_margin: bool = False

    def validate(self) -> None:
        _check_scale("subcenter_aam: scale", self.scale)
        _check_angular_margin("subcenter_aam: margin", self.margin)
        _check_angular_margin("subcenter_aam: topk_margin", self.topk_margin)
        if self.subcenters < 1:
            raise BenchError(f"subcenter_aam: subcenters must be >= 1, got {self.subcenters}")
        if self.topk < 0:
            raise BenchError(f"subcenter_aam: topk must be >= 0, got {self.topk}")


def subcenter_cosine(x: torch.Tensor, weight: torch.Tensor, subcenters: int) -> torch.Tensor:
    """``max_k cos(x_n, W_{c*K+k})``: x [N, D], weight [C*K, D] -> [N, C], float32 in [-1, 1]."""
    cos = F.linear(F.normalize(x.float(), dim=1), F.normalize(weight.float(), dim=1))
    if subcenters > 1:
        # max (with indices) rather than amax: its backward is one scatter, amax's compares every
        # element with the maximum; the clamp then runs on C columns instead of C*K
        cos = cos.view(cos.shape[0], -1, subcenters).max(dim=2).values
    return cos.clamp(-1.0, 1.0)


@LOSSES.register(
    "subcenter_aam",
    SubcenterAAMConfig,
    "sub-center AAM (K centres per class) + inter-top-k penalty on the hardest non-targets",
    family="classification",
    paper="Deng et al., Sub-center ArcFace, ECCV 2020; Zhao et al., inter-topK penalty, arXiv 2110.05042",
)
class SubcenterAAMLoss(_ScheduledMargin):
    """Sub-center AAM softmax over all views; ``parts = {"subcenter_aam"}``, accuracy margin-free top-1.

    Logits: target ``s*cos(theta_y + m)``; the ``topk`` non-targets with the largest cosines
    ``s*cos(theta_j - m')``; other classes ``s*cos(theta_j)``. Shapes: embeddings [B, V, D] ->
    cosines [B*V, C*K] -> max over sub-centres [B*V, C] -> scalar loss. Weights ``classifier.weight``
    [C*K, D], class c's sub-centres at rows ``c*K .. c*K+K-1`` (WeSpeaker's and
    pytorch-metric-learning's layout).
    """

    def __init__(self, cfg: SubcenterAAMConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.classifier = CosineClassifier(embed_dim, num_classes * cfg.subcenters)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "subcenter_aam")
        x, y = flatten_views(embeddings, labels)
        c = self.cfg
        m = self.margin
        mp = c.topk_margin * self.margin_factor
        with float32_logits(x.device):
            cos = subcenter_cosine(x, self.classifier.weight, c.subcenters)
            target = cos.gather(1, y[:, None])
            logits = cos
            k = min(c.topk, cos.shape[1] - 1)
            if k > 0 and mp > 0:
                # the hardest non-targets: the target is pushed below every cosine before top-k
                _, idx = torch.topk(cos.detach().scatter(1, y[:, None], -3.0), k, dim=1)
                hard = cos.gather(1, idx)
                sin = torch.sqrt((1.0 - hard * hard).clamp_min(_SIN_EPS))
                # cos(theta - m') = cos cos m' + sin sin m'  (theta in [0, pi], so this only raises the logit)
                logits = logits.scatter(1, idx, hard * math.cos(mp) + sin * math.sin(mp))
            logits = logits.scatter(1, y[:, None], additive_angular_margin(target, m, c.easy_margin))
            loss = F.cross_entropy(logits * c.scale, y)
        acc = (cos.detach().argmax(1) == y).float().mean()
        return LossOutput(loss, {"subcenter_aam": loss.detach()}, acc)
