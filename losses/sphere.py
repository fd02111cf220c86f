"""The SphereFace family: multiplicative angular margin (SphereFace) and binary one-vs-all (SphereFace2).

``sphereface`` (Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017,
arXiv 1704.08063; A-softmax) multiplies the target angle by an integer m::

    psi(theta) = (-1)^k cos(m theta) - 2k,   theta in [k pi / m, (k+1) pi / m],  k = 0 .. m-1
    f_y = ||x|| * (lambda cos(theta_y) + psi(theta_y)) / (1 + lambda),   f_j = ||x|| cos(theta_j)

with the annealing of the authors' code (kept by WeSpeaker's ``SphereProduct``):
``lambda = max(lambda_min, lambda_base * (1 + lambda_gamma * iteration) ** -lambda_power)``, which
starts near softmax and moves to the margin as training goes on. ``cos(m theta)`` is the Chebyshev
polynomial T_m(cos theta) and k is taken from a detached ``acos``, so no ``acos`` gradient (infinite at
+-1) is ever needed. The iteration counter (training-mode forward calls) is in the module's
``state_dict`` (extra state), so it is saved with and restored from checkpoints.

``sphereface2`` (Wen et al., "SphereFace2: Binary Classification is All You Need for Deep Face
Recognition", ICLR 2022, arXiv 2108.01513; for speakers Han et al., ICASSP 2023, as in WeSpeaker)
trains C binary classifiers, one per speaker, with a learnable bias b and the similarity adjustment
``g(z) = 2 ((z + 1) / 2) ** t - 1``::

    L = lambda * log(1 + exp(-z_y)) + (1 - lambda) * sum_{j != y} log(1 + exp(z_j))
    "C": z_y = s (g(cos theta_y) - m) + b,      z_j = s (g(cos theta_j) + m) + b
    "A": z_y = s g(cos(theta_y + m)) + b,        z_j = s g(cos(theta_j - m)) + b

    "M": z_y = s (cos theta_y + sg[g(cos(min(m theta_y, pi))) - cos theta_y]) + b,   z_j = s g(cos theta_j) + b

(averaged over rows). "C" and "A" are WeSpeaker's forms; "A" falls back to ``cos(theta) - (1 - cos m)``
for theta > pi - m, as WeSpeaker. "M" (multiplicative, m >= 1, e.g. 1.5) is the authors' OpenSphere
form: the margin offset sg[...] is a constant (no gradient), which keeps the gradient finite where
``acos`` is not differentiable; its schedule grows m from 1 (no margin) to the configured value.

Example:
    >>> import torch
    >>> from losses import LOSSES
    >>> _ = torch.manual_seed(0)
    >>> x, y = torch.randn(4, 2, 16), torch.tensor([0, 1, 2, 3])
    >>> LOSSES.build("sphereface2", {"margin_type": "A"}, 16, 10)(x, y).loss.shape
    torch.Size([])
    >>> loss = LOSSES.build("sphereface", {}, 16, 10)
    >>> _ = loss(x, y); loss.iteration, round(loss.current_lambda(), 1)
    (1, 892.9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from losses import LOSSES
from losses.base import LossOutput, SpeakerLoss
from losses.classification import (
    _SIN_EPS,
    CosineClassifier,
    _check_cosine_margin,
    _check_margin_factor,
    _check_scale,
    _ScheduledMargin,
    check_shapes,
    flatten_views,
    float32_logits,
)


def chebyshev(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m theta) from cos(theta) by the recursion T_{n+1} = 2 c T_n - T_{n-1} (any shape, m >= 0)."""
    prev, cur = torch.ones_like(cos), cos
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos * cur - prev
    return cur


def sphereface_psi(cos: torch.Tensor, m: int) -> torch.Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi): monotonically decreasing on [0, pi]."""
    with torch.no_grad():
        k = torch.floor(m * torch.acos(cos.clamp(-1.0, 1.0)) / math.pi).clamp(0, m - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * chebyshev(cos, m) - 2.0 * k


@dataclass
class SphereFaceConfig:
    #: integer angular multiplier m (WeSpeaker's default 2; the paper's face models use 4)
    margin: int = 2
    #: logit scale; None = the row's embedding norm ||x||, as in the paper
    scale: float | None = None
    lambda_base: float = 1000.0
    lambda_gamma: float = 0.12
    lambda_power: float = 1.0
    lambda_min: float = 5.0

    def validate(self) -> None:
        if not 1 <= self.margin <= 8:
            raise BenchError(f"sphereface: margin must be an integer in [1, 8], got {self.margin}")
        if self.scale is not None:
            _check_scale("sphereface: scale", self.scale)
        for name in ("lambda_base", "lambda_gamma", "lambda_power", "lambda_min"):
            if getattr(self, name) < 0:
                raise BenchError(f"sphereface: {name} must be >= 0, got {getattr(self, name)}")


@LOSSES.register(
    "sphereface",
    SphereFaceConfig,
    "multiplicative angular margin (A-softmax): cos(m*theta_y), annealed from softmax",
    family="classification",
    paper="Liu et al., SphereFace, CVPR 2017 (arXiv 1704.08063)",
)
class SphereFaceLoss(SpeakerLoss):
    """A-softmax over all views; ``parts = {"sphereface"}``, accuracy margin-free top-1.

    The margin schedule's factor f blends the target logit between plain cosine (f = 0) and the
    annealed A-softmax target (f = 1): ``cos + f * (psi - cos) / (1 + lambda)``.
    Shapes: embeddings [B, V, D] -> cosines [B*V, C] -> scalar loss.
    """

    def __init__(self, cfg: SphereFaceConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.classifier = CosineClassifier(embed_dim, num_classes)
        self.iteration = 0
        self.margin_factor = 1.0

    def current_lambda(self) -> float:
        c = self.cfg
        lam: float = max(c.lambda_min, c.lambda_base * (1.0 + c.lambda_gamma * self.iteration) ** (-c.lambda_power))
        return lam

    def set_margin_factor(self, factor: float) -> None:
        _check_margin_factor(factor)
        self.margin_factor = float(factor)

    def get_extra_state(self) -> Any:
        return {"iteration": self.iteration}

    def set_extra_state(self, state: Any) -> None:
        self.iteration = int(state["iteration"])

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "sphereface")
        x, y = flatten_views(embeddings, labels)
        if self.training:
            self.iteration += 1
        lam = self.current_lambda()
        with float32_logits(x.device):
            xf = x.float()
            cos = self.classifier.cosine(xf)
            target = cos.gather(1, y[:, None])
            psi = sphereface_psi(target, self.cfg.margin)
            new_target = target + self.margin_factor * (psi - target) / (1.0 + lam)
            logits = cos.scatter(1, y[:, None], new_target)
            norm = xf.norm(dim=1, keepdim=True) if self.cfg.scale is None else self.cfg.scale
            loss = F.cross_entropy(logits * norm, y)
        acc = (cos.detach().argmax(1) == y).float().mean()
        return LossOutput(loss, {"sphereface": loss.detach()}, acc)


@dataclass
class SphereFace2Config:
    scale: float = 32.0
    margin: float = 0.2
    #: "C" (additive cosine margin), "A" (additive angular margin) or "M" (multiplicative, margin >= 1)
    margin_type: str = "C"
    #: lambda, the weight of the positive (target) binary term; 1 - lambda weighs the negatives
    positive_weight: float = 0.7
    #: t of the similarity adjustment g(z) = 2((z+1)/2)^t - 1
    t: float = 3.0

    def validate(self) -> None:
        _check_scale("sphereface2: scale", self.scale)
        if self.margin_type not in ("C", "A", "M"):
            raise BenchError(f"sphereface2: margin_type must be 'C', 'A' or 'M', got {self.margin_type!r}")
        if self.margin_type == "M":
            if not 1.0 <= self.margin <= 8.0:
                raise BenchError(f"sphereface2: margin must be in [1, 8] for type M, got {self.margin}")
        else:
            _check_cosine_margin("sphereface2: margin", self.margin)
        if self.margin_type == "A" and not self.margin < math.pi / 2:
            raise BenchError(f"sphereface2: margin must be in [0, pi/2) radians for type A, got {self.margin}")
        if not 0.0 < self.positive_weight < 1.0:
            raise BenchError(f"sphereface2: positive_weight must be in (0, 1), got {self.positive_weight}")
        if not self.t > 0:
            raise BenchError(f"sphereface2: t must be > 0, got {self.t}")


def similarity_adjust(z: torch.Tensor, t: float) -> torch.Tensor:
    """SphereFace2's g(z) = 2 ((z + 1) / 2) ** t - 1 on cosines z in [-1, 1].

    The "A" fallback can go slightly below -1; an integer t (the default 3) is an odd/even power
    defined there, a fractional t is not, so only then is the base clamped at 0.
    """
    base = (z + 1.0) / 2.0
    if t != int(t):
        base = base.clamp_min(0.0)
    return 2.0 * base**t - 1.0


@LOSSES.register(
    "sphereface2",
    SphereFace2Config,
    "binary one-vs-all classifiers with margin (types C and A) and similarity adjustment",
    family="classification",
    paper="Wen et al., SphereFace2, ICLR 2022 (arXiv 2108.01513); Han et al., ICASSP 2023 (speakers)",
)
class SphereFace2Loss(_ScheduledMargin):
    """SphereFace2 over all views; ``parts = {"sphereface2"}``, accuracy margin-free top-1.

    Parameters: ``classifier.weight`` [C, D] and the scalar bias ``bias`` (initialised to 0, as WeSpeaker).
    Shapes: embeddings [B, V, D] -> cosines [B*V, C] -> C binary losses per row -> scalar loss.
    """

    def __init__(self, cfg: SphereFace2Config, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.classifier = CosineClassifier(embed_dim, num_classes)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "sphereface2")
        x, y = flatten_views(embeddings, labels)
        c, m = self.cfg, self.margin
        with float32_logits(x.device):
            cos = self.classifier.cosine(x)
            b = self.bias.float()
            if c.margin_type == "C":
                g = similarity_adjust(cos, c.t)
                z_pos, z_neg = c.scale * (g - m) + b, c.scale * (g + m) + b
            elif c.margin_type == "M":
                mult = 1.0 + (c.margin - 1.0) * self.margin_factor
                with torch.no_grad():
                    theta = torch.acos(cos.clamp(-1.0, 1.0))
                    offset = similarity_adjust(torch.cos((mult * theta).clamp(max=math.pi)), c.t) - cos
                z_pos = c.scale * (cos + offset) + b
                z_neg = c.scale * similarity_adjust(cos, c.t) + b
            else:
                sin = torch.sqrt((1.0 - cos * cos).clamp_min(_SIN_EPS))
                plus = torch.where(
                    cos > math.cos(math.pi - m), cos * math.cos(m) - sin * math.sin(m), cos - (1.0 - math.cos(m))
                )
                minus = cos * math.cos(m) + sin * math.sin(m)
                z_pos = c.scale * similarity_adjust(plus, c.t) + b
                z_neg = c.scale * similarity_adjust(minus, c.t) + b
            target = F.one_hot(y, cos.shape[1]).bool()
            per = torch.where(
                target, c.positive_weight * F.softplus(-z_pos), (1.0 - c.positive_weight) * F.softplus(z_neg)
            )
            loss = per.sum(1).mean()
        acc = (cos.detach().argmax(1) == y).float().mean()
        return LossOutput(loss, {"sphereface2": loss.detach()}, acc)
