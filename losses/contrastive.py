"""Contrastive losses over all views: SupCon, AAM-SupCon (the reference recipe) and margin-in-contrast.

All take ``embeddings[B, V, D]`` and ``labels[B]``; the ``N = B * V`` view embeddings are
L2-normalised and every view is an anchor (Khosla et al.'s "all" mode). For anchor i, with P(i) the
other rows of the same speaker and A(i) all rows but i::

    L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(l_ip) / sum_{a in A(i)} exp(l_ia) )

with ``l_ij = cos(theta_ij) / tau`` (supcon) or, for ``marginsupcon``, ``l_ip = s*cos(theta_ip + m)/tau``
on positive pairs and ``l_in = s*cos(theta_in)/tau`` on negatives. The loss is the mean of L_i over
the anchors that have at least one positive; anchors with none are left out (never NaN), and a batch
with no positive pair at all is a BenchError. With V >= 2 every anchor has a positive (its other views).

Example:
    >>> import torch
    >>> from losses import LOSSES
    >>> _ = torch.manual_seed(0)
    >>> loss = LOSSES.build("aamsupcon", {}, 16, 10)
    >>> out = loss(torch.randn(4, 5, 16), torch.tensor([0, 1, 1, 3]))
    >>> sorted(out.parts), out.loss.shape
    (['aam', 'supcon'], torch.Size([]))
    >>> bool(torch.isclose(out.loss, out.parts["supcon"] + out.parts["aam"]))
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from losses import LOSSES
from losses.base import LossOutput, SpeakerLoss
from losses.classification import (
    AAMConfig,
    AAMSoftmaxLoss,
    _check_angular_margin,
    _check_margin_factor,
    _check_scale,
    additive_angular_margin,
    check_shapes,
    flatten_views,
    float32_logits,
)


def supervised_contrastive(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    *,
    scale: float = 1.0,
    margin: float = 0.0,
    easy_margin: bool = False,
    where: str = "supcon",
) -> torch.Tensor:
    """SupCon ("all" anchors) over ``embeddings[B, V, D]``, optional angular margin on positive pairs.

    Returns the scalar loss (float32). Logits are ``scale * cos / temperature``; with ``margin > 0``
    positive pairs use ``cos(theta + margin)`` (:func:`additive_angular_margin`).
    """
    b, v, _ = embeddings.shape
    x, y = flatten_views(embeddings, labels)
    n = x.shape[0]
    with float32_logits(x.device):
        z = F.normalize(x.float(), dim=1)
        self_mask = torch.eye(n, dtype=torch.bool, device=x.device)
        pos = (y[:, None] == y[None, :]) & ~self_mask
        # With V >= 2 every anchor has its other views as positives, so only V == 1 can lack them;
        # testing only then avoids a host-device sync on every multi-view step.
        if v == 1 and not bool(pos.any()):
            raise BenchError(
                f"{where}: the batch holds no positive pair (B={b} utterances, V={v} view, all speakers "
                "distinct); use more than one view per utterance or more than one utterance per speaker"
            )
        factor = scale / temperature
        # The factor is folded into one operand so no [N, N] pass is spent on scaling.
        logits = (z * factor) @ z.T
        if margin > 0:
            # Positives are ~V*utts/N of the pairs, so the margin is computed on them alone, not on [N, N].
            ii, jj = pos.nonzero(as_tuple=True)
            cos_pos = (logits[ii, jj] / factor).clamp(-1.0, 1.0)
            logits = logits.index_put((ii, jj), additive_angular_margin(cos_pos, margin, easy_margin) * factor)
        log_denom = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1)
        # mean_p log_prob_ip = (sum_p l_ip) / |P(i)| - log_denom_i
        n_pos = pos.sum(1)
        mean_log_prob_pos = (logits * pos).sum(1) / n_pos.clamp_min(1) - log_denom
        has_pos = (n_pos > 0).float()
        return -(mean_log_prob_pos * has_pos).sum() / has_pos.sum().clamp_min(1.0)


def _check_temperature(name: str, value: float) -> None:
    if not value > 0:
        raise BenchError(f"{name} must be > 0, got {value}")


def _check_views(name: str, views: list[int]) -> None:
    if not views:
        raise BenchError(f"{name} must name at least one view index")
    if len(set(views)) != len(views):
        raise BenchError(f"{name} has repeated view indices: {views}")


def _select_views(embeddings: torch.Tensor, views: list[int], where: str) -> torch.Tensor:
    """[B, V, D] -> [B, len(views), D]; indices may be negative (-1 = last view, e.g. "clean")."""
    v = embeddings.shape[1]
    bad = [i for i in views if not -v <= i < v]
    if bad:
        raise BenchError(f"{where}: classifier_views {views} out of range for V={v} views")
    if list(views) == list(range(v)):
        return embeddings
    return embeddings[:, list(views), :]


@dataclass
class SupConConfig:
    temperature: float = 0.07

    def validate(self) -> None:
        _check_temperature("supcon: temperature", self.temperature)


@LOSSES.register(
    "supcon",
    SupConConfig,
    "supervised contrastive loss over all views (tau=0.07)",
    family="contrastive",
    paper="Khosla et al., Supervised Contrastive Learning, NeurIPS 2020 (arXiv 2004.11362)",
)
class SupConLoss(SpeakerLoss):
    """Supervised contrastive loss (Khosla et al. 2020), no classifier; ``parts = {"supcon"}``.

    ``num_classes`` is accepted for the common constructor and ignored.
    Shapes: embeddings [B, V, D] -> similarities [B*V, B*V] -> scalar loss.
    """

    needs_positives = True

    def __init__(self, cfg: SupConConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "supcon")
        loss = supervised_contrastive(embeddings, labels, self.cfg.temperature)
        return LossOutput(loss, {"supcon": loss.detach()}, None)


@dataclass
class AAMSupConConfig:
    temperature: float = 0.07
    weight: float = 1.0
    #: scale and margin of the AAM head: the only margin of this loss, so it keeps the plain names
    #: that `aam` uses (one `--set loss.params.margin=...` then moves both in a comparison)
    scale: float = 32.0
    margin: float = 0.3
    easy_margin: bool = False
    #: views (positions in data.view_types) fed to the AAM classifier; the reference uses one augmented view
    classifier_views: list[int] = field(default_factory=lambda: [0])

    def validate(self) -> None:
        _check_temperature("aamsupcon: temperature", self.temperature)
        if self.weight < 0:
            raise BenchError(f"aamsupcon: weight must be >= 0, got {self.weight}")
        _check_scale("aamsupcon: scale", self.scale)
        _check_angular_margin("aamsupcon: margin", self.margin)
        _check_views("aamsupcon: classifier_views", self.classifier_views)


class _WithAAM(SpeakerLoss):
    """Shared part of the combined losses: an AAM head on ``classifier_views``."""

    needs_positives = True
    cfg: Any  # the subclass's config dataclass (it has ``classifier_views``)

    def _init_aam(self, cfg: Any, embed_dim: int, num_classes: int, scale: float, margin: float) -> None:
        aam_cfg = AAMConfig(scale=scale, margin=margin, easy_margin=cfg.easy_margin)
        self.aam = AAMSoftmaxLoss(aam_cfg, embed_dim, num_classes)

    def _aam_part(self, embeddings: torch.Tensor, labels: torch.Tensor, where: str) -> LossOutput:
        out: LossOutput = self.aam(_select_views(embeddings, self.cfg.classifier_views, where), labels)
        return out


@LOSSES.register(
    "aamsupcon",
    AAMSupConConfig,
    "SupCon over all views + weight * AAM on classifier_views",
    family="contrastive",
    paper="Li & Mak, AAM-SupCon, arXiv 2210.16636",
)
class AAMSupConLoss(_WithAAM):
    """The reference recipe: ``supcon(all views) + weight * aam(classifier_views)``.

    ``parts = {"supcon", "aam"}`` (the aam part unweighted); accuracy is the AAM classifier's.
    Shapes: embeddings [B, V, D] -> supcon on [B*V, B*V], aam on [B*len(classifier_views), C].
    """

    def __init__(self, cfg: AAMSupConConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self._init_aam(cfg, embed_dim, num_classes, cfg.scale, cfg.margin)

    def set_margin_factor(self, factor: float) -> None:
        self.aam.set_margin_factor(factor)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "aamsupcon")
        sc = supervised_contrastive(embeddings, labels, self.cfg.temperature, where="aamsupcon")
        aam = self._aam_part(embeddings, labels, "aamsupcon")
        loss = sc + self.cfg.weight * aam.loss
        return LossOutput(loss, {"supcon": sc.detach(), "aam": aam.loss.detach()}, aam.accuracy)


@dataclass
class MarginSupConConfig:
    scale: float = 10.0
    margin: float = 0.2
    temperature: float = 0.07
    easy_margin: bool = False
    with_aam: bool = False
    weight: float = 1.0
    aam_scale: float = 32.0
    aam_margin: float = 0.3
    classifier_views: list[int] = field(default_factory=lambda: [0])

    def validate(self) -> None:
        _check_scale("marginsupcon: scale", self.scale)
        _check_angular_margin("marginsupcon: margin", self.margin)
        _check_temperature("marginsupcon: temperature", self.temperature)
        if self.weight < 0:
            raise BenchError(f"marginsupcon: weight must be >= 0, got {self.weight}")
        _check_scale("marginsupcon: aam_scale", self.aam_scale)
        _check_angular_margin("marginsupcon: aam_margin", self.aam_margin)
        _check_views("marginsupcon: classifier_views", self.classifier_views)


@LOSSES.register(
    "marginsupcon",
    MarginSupConConfig,
    "SupCon with the angular margin inside: positives s*cos(theta+m)/tau (+ optional AAM)",
    family="contrastive",
    paper="ablation of Li & Mak, arXiv 2210.16636: the margin inside the contrastive term (m=0.2, s=10)",
)
class MarginSupConLoss(_WithAAM):
    """Margin-in-contrast ablation: positives ``s*cos(theta_ip + m)/tau``, negatives ``s*cos(theta_in)/tau``.

    ``easy_margin`` applies to both the contrastive margin and the AAM head. With ``with_aam`` the
    loss adds ``weight * aam(classifier_views)`` and reports its accuracy; ``parts`` holds
    ``marginsupcon`` (and ``aam``). Shapes: embeddings [B, V, D] -> [B*V, B*V] -> scalar loss.
    """

    def __init__(self, cfg: MarginSupConConfig, embed_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.margin_factor = 1.0
        if cfg.with_aam:
            self._init_aam(cfg, embed_dim, num_classes, cfg.aam_scale, cfg.aam_margin)

    def set_margin_factor(self, factor: float) -> None:
        _check_margin_factor(factor)
        self.margin_factor = float(factor)
        if self.cfg.with_aam:
            self.aam.set_margin_factor(factor)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        check_shapes(embeddings, labels, "marginsupcon")
        c = self.cfg
        sc = supervised_contrastive(
            embeddings,
            labels,
            c.temperature,
            scale=c.scale,
            margin=c.margin * self.margin_factor,
            easy_margin=c.easy_margin,
            where="marginsupcon",
        )
        if not c.with_aam:
            return LossOutput(sc, {"marginsupcon": sc.detach()}, None)
        aam = self._aam_part(embeddings, labels, "marginsupcon")
        loss = sc + c.weight * aam.loss
        return LossOutput(loss, {"marginsupcon": sc.detach(), "aam": aam.loss.detach()}, aam.accuracy)
