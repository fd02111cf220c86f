"""Prototypical losses (voxceleb_trainer's family): proto, angleproto, softmaxproto and GE2E.

Every entry takes ``embeddings[B, V, D]`` and ``labels[B]``; the ``N = B * V`` rows are grouped by
speaker, so the views and the utterances of one speaker form its support and query sets, as in a
speaker-balanced batch of ``utts_per_speaker`` utterances x ``V`` views. Rows are taken in batch
order (utterance-major, then view). Speakers with a single row have no support set and are left out
(a batch where no speaker has two rows is a BenchError). Under DDP the runner hands the loss the
all-gathered global batch (``bench/runner/ddp.py``), so prototypes and competitors span all ranks,
as SupCon's negatives do.

With M_k rows of speaker k, the query of ``proto`` / ``angleproto`` is the speaker's first row and its
prototype the mean of the other M_k - 1 rows (voxceleb_trainer: ``x[:, 0]`` against
``mean(x[:, 1:])``); each query is classified against every speaker's prototype:

    proto      (Snell et al., NeurIPS 2017, arXiv 1703.05175):  S_jk = -|| q_j - c_k ||^2
    angleproto (Chung et al., Interspeech 2020, arXiv 2003.11982): S_jk = w cos(q_j, c_k) + b, w > 0
    L = mean_j CE(S_j, j)

``ge2e`` (Wan et al., ICASSP 2018, arXiv 1710.10467, softmax variant) makes every row a query:
with e the L2-normalised rows and c_k the mean of speaker k's rows, ``S_ji,k = w cos(e_ji, c_k) + b``,
except that the own centroid leaves the query out, ``c_j^(-i) = (sum_m e_jm - e_ji) / (M_j - 1)``;
``L = mean_ji CE(S_ji, j)``. w and b are learnable scalars (initialised 10 and -5, as both papers);
w is clamped to >= 1e-6 (the papers require w > 0).

``softmaxproto`` (Chung et al. 2020; voxceleb_trainer's ``softmaxproto``) is ``softmax`` (a linear
classifier + cross-entropy over all rows) + ``weight * angleproto``.

Example:
    >>> import torch
    >>> from losses import LOSSES
    >>> _ = torch.manual_seed(0)
    >>> x, y = torch.randn(4, 2, 16), torch.tensor([0, 1, 2, 2])
    >>> out = LOSSES.build("ge2e", {}, 16, 10)(x, y)
    >>> out.loss.shape, sorted(out.parts)
    (torch.Size([]), ['ge2e'])
    >>> sorted(LOSSES.build("softmaxproto", {}, 16, 10)(x, y).parts)
    ['angleproto', 'ce']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from losses import LOSSES
from losses.base import LossOutput, SpeakerLoss
from losses.classification import SoftmaxConfig, SoftmaxLoss, check_shapes, flatten_views, float32_logits

#: floor of the learnable logit scale w (the papers constrain w > 0)
_MIN_W = 1e-6


def speaker_groups(
    embeddings: torch.Tensor, labels: torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of the speakers that have >= 2 of them, grouped.

    [B, V, D], [B] -> (x [N', D] float32, group [N'] in 0..K-1, counts [K], first [K]) where
    ``first[k]`` is the index in x of speaker k's first row. Raises BenchError when no speaker has
    two rows.
    """
    b, v, _ = embeddings.shape
    x, y = flatten_views(embeddings, labels)
    _, inv, counts = torch.unique(y, return_inverse=True, return_counts=True)
    keep = counts[inv] >= 2
    if not bool(keep.any()):
        raise BenchError(
            f"{where}: no speaker has two rows in the batch (B={b} utterances, V={v} views, all speakers "
            "distinct); use more than one view per utterance or more than one utterance per speaker"
        )
    if not bool(keep.all()):
        x, y = x[keep], y[keep]
        _, inv, counts = torch.unique(y, return_inverse=True, return_counts=True)
    idx = torch.arange(x.shape[0], device=x.device)
    first = torch.full_like(counts, x.shape[0]).scatter_reduce(0, inv, idx, reduce="amin")
    return x.float(), inv, counts, first


def query_and_support(
    x: torch.Tensor, group: torch.Tensor, counts: torch.Tensor, first: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each speaker's first row (the query) [K, D] and the mean of its other rows (the prototype) [K, D]."""
    queries = x[first]
    support_sum = torch.zeros(counts.shape[0], x.shape[1], device=x.device, dtype=x.dtype).index_add(0, group, x)
    prototypes = (support_sum - queries) / (counts - 1).unsqueeze(1).to(x.dtype)
    return queries, prototypes


def _ce_diag(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target), (logits.detach().argmax(1) == target).float().mean()


@dataclass
class ProtoConfig:
    pass


@LOSSES.register(
    "proto",
    ProtoConfig,
    "prototypical: first row of each speaker vs the mean of its other rows, -squared Euclidean logits",
    family="prototypical",
    paper="Snell et al., Prototypical Networks, NeurIPS 2017 (arXiv 1703.05175)",
)
class ProtoLoss(SpeakerLoss):
    """Prototypical loss; ``parts = {"proto"}``, accuracy = top-1 of the queries among the prototypes.

    Shapes: embeddings [B, V, D] -> K speakers -> queries, prototypes [K, D] -> logits [K, K] -> scalar.
    Raw (unnormalised) embeddings, as in the paper and voxceleb_trainer.
    """

    needs_positives = True
    row_order_invariant = False

    def __init__(self, cfg: ProtoConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "proto")
        with float32_logits(embeddings.device):
            q, c = query_and_support(*speaker_groups(embeddings, labels, "proto"))
            # ||q - c||^2 expanded: one [K, K] matmul instead of a [K, K, D] difference tensor
            sq = (q * q).sum(1, keepdim=True) + (c * c).sum(1)[None, :] - 2.0 * q @ c.T
            loss, acc = _ce_diag(-sq)
        return LossOutput(loss, {"proto": loss.detach()}, acc)


@dataclass
class AngleProtoConfig:
    #: initial value of the learnable logit scale w
    init_scale: float = 10.0
    #: initial value of the learnable logit bias b
    init_bias: float = -5.0

    def validate(self) -> None:
        if not self.init_scale > 0:
            raise BenchError(f"angleproto: init_scale must be > 0, got {self.init_scale}")


class _LearnedScale(SpeakerLoss):
    """Learnable scalars w (clamped > 0) and b of the cosine logits ``w cos + b``."""

    needs_positives = True

    def _init_wb(self, cfg: Any) -> None:  # a config with init_scale and init_bias
        self.w = nn.Parameter(torch.tensor(float(cfg.init_scale)))
        self.b = nn.Parameter(torch.tensor(float(cfg.init_bias)))

    def _affine(self, cos: torch.Tensor) -> torch.Tensor:
        return cos * self.w.float().clamp_min(_MIN_W) + self.b.float()


@LOSSES.register(
    "angleproto",
    AngleProtoConfig,
    "angular prototypical: first row of each speaker vs the mean of its others, w*cos + b logits",
    family="prototypical",
    paper="Chung et al., In defence of metric learning for speaker recognition, Interspeech 2020 (arXiv 2003.11982)",
)
class AngleProtoLoss(_LearnedScale):
    """Angular prototypical loss; ``parts = {"angleproto"}``, accuracy = top-1 of the queries.

    Shapes: embeddings [B, V, D] -> queries, prototypes [K, D] -> logits [K, K] -> scalar loss.
    Parameters: the scalars ``w`` and ``b``.
    """

    row_order_invariant = False

    def __init__(self, cfg: AngleProtoConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self._init_wb(cfg)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "angleproto")
        with float32_logits(embeddings.device):
            q, c = query_and_support(*speaker_groups(embeddings, labels, "angleproto"))
            cos = F.normalize(q, dim=1) @ F.normalize(c, dim=1).T
            loss, acc = _ce_diag(self._affine(cos))
        return LossOutput(loss, {"angleproto": loss.detach()}, acc)


@dataclass
class SoftmaxProtoConfig:
    init_scale: float = 10.0
    init_bias: float = -5.0
    #: weight of the angular prototypical term
    weight: float = 1.0
    bias: bool = True

    def validate(self) -> None:
        if not self.init_scale > 0:
            raise BenchError(f"softmaxproto: init_scale must be > 0, got {self.init_scale}")
        if self.weight < 0:
            raise BenchError(f"softmaxproto: weight must be >= 0, got {self.weight}")


@LOSSES.register(
    "softmaxproto",
    SoftmaxProtoConfig,
    "softmax (linear classifier + CE over all rows) + weight * angleproto",
    family="prototypical",
    paper="Chung et al., In defence of metric learning for speaker recognition, Interspeech 2020 (arXiv 2003.11982)",
)
class SoftmaxProtoLoss(SpeakerLoss):
    """``softmax + weight * angleproto``; ``parts = {"ce", "angleproto"}`` (unweighted), accuracy the classifier's.

    Shapes: embeddings [B, V, D] -> logits [B*V, C] and [K, K] -> scalar loss.
    """

    needs_positives = True
    row_order_invariant = False

    def __init__(self, cfg: SoftmaxProtoConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.softmax = SoftmaxLoss(SoftmaxConfig(bias=cfg.bias), embed_dim, num_classes)
        self.angleproto = AngleProtoLoss(AngleProtoConfig(cfg.init_scale, cfg.init_bias), embed_dim, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "softmaxproto")
        ce = self.softmax(embeddings, labels)
        ap = self.angleproto(embeddings, labels)
        loss = ce.loss + self.cfg.weight * ap.loss
        return LossOutput(loss, {"ce": ce.loss.detach(), "angleproto": ap.loss.detach()}, ce.accuracy)


@dataclass
class GE2EConfig:
    init_scale: float = 10.0
    init_bias: float = -5.0

    def validate(self) -> None:
        if not self.init_scale > 0:
            raise BenchError(f"ge2e: init_scale must be > 0, got {self.init_scale}")


@LOSSES.register(
    "ge2e",
    GE2EConfig,
    "generalised end-to-end (softmax): every row vs all centroids, own centroid without the row",
    family="prototypical",
    paper="Wan et al., Generalized End-to-End Loss for Speaker Verification, ICASSP 2018 (arXiv 1710.10467)",
)
class GE2ELoss(_LearnedScale):
    """GE2E softmax loss; ``parts = {"ge2e"}``, accuracy = top-1 of the rows among the centroids.

    Shapes: embeddings [B, V, D] -> rows [N, D], centroids [K, D] -> logits [N, K] -> scalar loss.
    Parameters: the scalars ``w`` and ``b``.
    """

    def __init__(self, cfg: GE2EConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self._init_wb(cfg)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "ge2e")
        with float32_logits(embeddings.device):
            x, group, counts, _ = speaker_groups(embeddings, labels, "ge2e")
            e = F.normalize(x, dim=1)
            sums = torch.zeros(counts.shape[0], e.shape[1], device=e.device).index_add(0, group, e)
            centroids = sums / counts.unsqueeze(1).float()
            own = (sums[group] - e) / (counts[group] - 1).unsqueeze(1).float()
            cos = e @ F.normalize(centroids, dim=1).T
            cos_own = F.cosine_similarity(e, own, dim=1, eps=1e-8)
            logits = self._affine(cos.scatter(1, group[:, None], cos_own[:, None]))
            loss = F.cross_entropy(logits, group)
        acc = (logits.detach().argmax(1) == group).float().mean()
        return LossOutput(loss, {"ge2e": loss.detach()}, acc)
