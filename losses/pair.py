"""Pair-based metric-learning losses on cosine similarities: batch-hard triplet, circle, multi-similarity.

Every entry takes ``embeddings[B, V, D]`` and ``labels[B]``; the ``N = B * V`` rows are
L2-normalised and every row is an anchor, as in ``supcon``: ``S_ij = cos(x_i, x_j)``, P(i) the other
rows of i's speaker (its other views and utterances), N(i) the rows of other speakers. Under DDP the
runner hands the loss the all-gathered global batch (``bench/runner/ddp.py``), so pairs span all ranks.

    triplet (batch-hard; Hermans et al., arXiv 1703.07737; cosine form):
        L_i = max(0, max_{n in N(i)} S_in - min_{p in P(i)} S_ip + m)
        mean over anchors with a positive and a negative
    circle (Sun et al., CVPR 2020, arXiv 2002.10857), O_p = 1 + m, O_n = -m, D_p = 1 - m, D_n = m:
        L_i = softplus( logsumexp_{n} g a_n (S_in - D_n) + logsumexp_{p} -g a_p (S_ip - D_p) )
        a_p = [O_p - S_ip]_+, a_n = [S_in - O_n]_+ (constants: no gradient flows through them)
        mean over anchors with a positive and a negative
    multisimilarity (Wang et al., CVPR 2019, arXiv 1904.06627), all pairs (no mining):
        L_i = 1/alpha log(1 + sum_{p} exp(-alpha (S_ip - lam))) + 1/beta log(1 + sum_{n} exp(beta (S_in - lam)))
        mean over all anchors

Defaults: triplet m = 0.1 (voxceleb_trainer's triplet); circle m = 0.4, gamma = 80 (the paper's
pair-wise setting, pytorch-metric-learning's defaults); multisimilarity alpha = 2, beta = 50,
lam = 0.5 (pytorch-metric-learning's defaults). These match pytorch-metric-learning's
``TripletMarginLoss`` + ``BatchHardMiner`` (with a mean over the mined triplets), ``CircleLoss`` and
``MultiSimilarityLoss`` on the flattened rows. The margin schedule multiplies the triplet and circle
margins; multi-similarity has none.

Example:
    >>> import torch
    >>> from losses import LOSSES
    >>> _ = torch.manual_seed(0)
    >>> x, y = torch.randn(4, 2, 16), torch.tensor([0, 1, 2, 2])
    >>> [round(LOSSES.build(n, {}, 16, 10)(x, y).loss.item(), 3) >= 0 for n in ("triplet", "circle", "multisimilarity")]
    [True, True, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from losses import LOSSES
from losses.base import LossOutput, SpeakerLoss
from losses.classification import _ScheduledMargin, check_shapes, flatten_views, float32_logits


def pair_masks(
    embeddings: torch.Tensor, labels: torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine matrix S [N, N] (float32) and the positive / negative masks [N, N] (no diagonal).

    Raises BenchError when V == 1 and no two rows share a speaker (with V >= 2 every row has one).
    """
    b, v, _ = embeddings.shape
    x, y = flatten_views(embeddings, labels)
    z = F.normalize(x.float(), dim=1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same = y[:, None] == y[None, :]
    pos, neg = same & ~eye, ~same
    if v == 1 and not bool(pos.any()):
        raise BenchError(
            f"{where}: the batch holds no positive pair (B={b} utterances, V={v} view, all speakers "
            "distinct); use more than one view per utterance or more than one utterance per speaker"
        )
    return (z @ z.T).clamp(-1.0, 1.0), pos, neg


def _masked_lse(values: torch.Tensor, mask: torch.Tensor, add_one: bool = False) -> torch.Tensor:
    """Row-wise log(sum_{mask} exp(values)) (+1 inside the log with ``add_one``); -inf-free for empty rows."""
    v = values.masked_fill(~mask, float("-inf"))
    if add_one:
        v = torch.cat([v, torch.zeros_like(v[:, :1])], dim=1)
    out = torch.logsumexp(v, dim=1)
    return out if add_one else torch.where(mask.any(1), out, torch.zeros_like(out))


def _mean_over(per: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    v = valid.float()
    return (per * v).sum() / v.sum().clamp_min(1.0)


class _MarginFactor(_ScheduledMargin):
    """A pair loss whose ``cfg.margin`` follows the margin schedule (``losses.classification._ScheduledMargin``)."""

    needs_positives = True


@dataclass
class TripletConfig:
    margin: float = 0.1

    def validate(self) -> None:
        if not 0.0 <= self.margin <= 2.0:
            raise BenchError(f"triplet: margin must be in [0, 2], got {self.margin}")


@LOSSES.register(
    "triplet",
    TripletConfig,
    "batch-hard triplet on cosine similarity: [max_n S_an - min_p S_ap + m]_+",
    family="pair",
    paper="Hermans et al., In Defense of the Triplet Loss, arXiv 1703.07737",
)
class TripletLoss(_MarginFactor):
    """Batch-hard triplet loss; ``parts = {"triplet"}``, no accuracy.

    Shapes: embeddings [B, V, D] -> similarities [B*V, B*V] -> scalar loss.
    """

    def __init__(self, cfg: TripletConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "triplet")
        with float32_logits(embeddings.device):
            s, pos, neg = pair_masks(embeddings, labels, "triplet")
            hardest_pos = s.masked_fill(~pos, 2.0).amin(1)
            hardest_neg = s.masked_fill(~neg, -2.0).amax(1)
            per = F.relu(hardest_neg - hardest_pos + self.margin)
            loss = _mean_over(per, pos.any(1) & neg.any(1))
        return LossOutput(loss, {"triplet": loss.detach()}, None)


@dataclass
class CircleConfig:
    margin: float = 0.4
    gamma: float = 80.0

    def validate(self) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise BenchError(f"circle: margin must be in [0, 1], got {self.margin}")
        if not self.gamma > 0:
            raise BenchError(f"circle: gamma must be > 0, got {self.gamma}")


@LOSSES.register(
    "circle",
    CircleConfig,
    "circle loss: self-paced weights on within- and between-speaker similarities (m, gamma)",
    family="pair",
    paper="Sun et al., Circle Loss, CVPR 2020 (arXiv 2002.10857)",
)
class CircleLoss(_MarginFactor):
    """Circle loss over all anchors; ``parts = {"circle"}``, no accuracy.

    Shapes: embeddings [B, V, D] -> similarities [B*V, B*V] -> scalar loss.
    """

    def __init__(self, cfg: CircleConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "circle")
        m, g = self.margin, self.cfg.gamma
        with float32_logits(embeddings.device):
            s, pos, neg = pair_masks(embeddings, labels, "circle")
            sd = s.detach()
            logit_p = -g * F.relu(1.0 + m - sd) * (s - (1.0 - m))
            logit_n = g * F.relu(sd + m) * (s - m)
            per = F.softplus(_masked_lse(logit_p, pos) + _masked_lse(logit_n, neg))
            loss = _mean_over(per, pos.any(1) & neg.any(1))
        return LossOutput(loss, {"circle": loss.detach()}, None)


@dataclass
class MultiSimilarityConfig:
    alpha: float = 2.0
    beta: float = 50.0
    #: lambda, the similarity threshold ("base" in pytorch-metric-learning)
    base: float = 0.5

    def validate(self) -> None:
        for name in ("alpha", "beta"):
            if not getattr(self, name) > 0:
                raise BenchError(f"multisimilarity: {name} must be > 0, got {getattr(self, name)}")
        if not -1.0 <= self.base <= 1.0:
            raise BenchError(f"multisimilarity: base must be in [-1, 1], got {self.base}")


@LOSSES.register(
    "multisimilarity",
    MultiSimilarityConfig,
    "multi-similarity loss: soft weighting of all positive and negative pairs (alpha, beta, base)",
    family="pair",
    paper="Wang et al., Multi-Similarity Loss, CVPR 2019 (arXiv 1904.06627)",
)
class MultiSimilarityLoss(SpeakerLoss):
    """Multi-similarity loss over all anchors and pairs; ``parts = {"multisimilarity"}``, no accuracy.

    Shapes: embeddings [B, V, D] -> similarities [B*V, B*V] -> scalar loss.
    """

    needs_positives = True

    def __init__(self, cfg: MultiSimilarityConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "multisimilarity")
        c = self.cfg
        with float32_logits(embeddings.device):
            s, pos, neg = pair_masks(embeddings, labels, "multisimilarity")
            pos_term = _masked_lse(-c.alpha * (s - c.base), pos, add_one=True) / c.alpha
            neg_term = _masked_lse(c.beta * (s - c.base), neg, add_one=True) / c.beta
            loss = (pos_term + neg_term).mean()
        return LossOutput(loss, {"multisimilarity": loss.detach()}, None)
