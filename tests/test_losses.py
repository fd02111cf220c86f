"""Loss registry tests: each loss against a slow loop written from its published formula and, where
conventions match, pytorch-metric-learning as an independent oracle.

PML convention differences handled here: ArcFaceLoss takes its margin in degrees and stores W as
[D, C] (ours is [C, D]); SupConLoss takes flat [N, D] rows, so our [B, V, D] views are flattened
with labels repeated per view; its AvgNonZeroReducer skips zero-loss anchors, which matches our
exclusion of anchors without positives (no anchor with positives has exactly zero loss here).
"""

from __future__ import annotations

import doctest
import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import losses.classification
import losses.contrastive
import losses.perf
import losses.schedule
from bench.cli import app
from bench.errors import BenchError
from losses import LOSSES
from losses.schedule import MarginScheduler

# every registry entry: a loss added to the registry is under the contract tests without editing this file
ALL = LOSSES.names()
ORIGINAL = ["softmax", "am", "aam", "supcon", "aamsupcon", "marginsupcon"]


def _data(b=6, v=3, d=8, c=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, v, d, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, c, (b,), generator=g)
    y[1] = y[0]  # at least one cross-utterance positive
    return x, y


# ---------------------------------------------------------------- slow references, from the formulas


def _cos(a, b):
    a, b = a.double(), b.double()
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _arc(c, m, easy=False):
    """ArcFace target in angle form: cos(theta + m) while theta + m <= pi, else cos(theta) - m sin(m)."""
    theta = math.acos(max(-1.0, min(1.0, c)))
    if easy:
        return math.cos(theta + m) if c > 0 else c
    return math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)


def _ref_margin_softmax(x, w, y, s, target):
    """Mean over rows of -log softmax(s * logits)[y] with target(cos) on the label column. x [N, D], w [C, D]."""
    total = 0.0
    for i in range(x.shape[0]):
        logits = []
        for j in range(w.shape[0]):
            c = _cos(x[i], w[j])
            logits.append(s * (target(c) if j == int(y[i]) else c))
        mx = max(logits)
        lse = mx + math.log(sum(math.exp(v - mx) for v in logits))
        total += lse - logits[int(y[i])]
    return total / x.shape[0]


def _ref_supcon(x, y, tau, s=1.0, m=0.0, easy=False):
    """Khosla et al. 'all' anchors, loop form; x [N, D] flat rows, y [N]. Anchors without positives skipped."""
    n = x.shape[0]
    losses_, count = 0.0, 0
    for i in range(n):
        pos = [p for p in range(n) if p != i and int(y[p]) == int(y[i])]
        if not pos:
            continue

        def logit(a, i=i):
            c = _cos(x[i], x[a])
            return s * (_arc(c, m, easy) if int(y[a]) == int(y[i]) else c) / tau

        others = [logit(a) for a in range(n) if a != i]
        mx = max(others)
        lse = mx + math.log(sum(math.exp(v - mx) for v in others))
        losses_ += -sum(logit(p) - lse for p in pos) / len(pos)
        count += 1
    return losses_ / count


def _flat(x, y):
    b, v, d = x.shape
    return x.reshape(b * v, d), y.repeat_interleave(v)


# ---------------------------------------------------------------- registry and CLI


def test_registry_has_every_entry_with_issue_defaults():
    assert set(ORIGINAL) <= set(LOSSES.names())
    defaults = {e.name: {n: d for n, _, d in e.parameters()} for e in LOSSES}
    assert defaults["am"] == {"scale": 30.0, "margin": 0.2}
    assert defaults["aam"] == {"scale": 32.0, "margin": 0.2, "easy_margin": False}
    assert defaults["supcon"] == {"temperature": 0.07}
    a = defaults["aamsupcon"]
    assert (a["temperature"], a["weight"], a["scale"], a["margin"], a["classifier_views"]) == (
        0.07,
        1.0,
        32.0,
        0.3,
        [0],
    )
    ms = defaults["marginsupcon"]
    assert (ms["scale"], ms["margin"], ms["temperature"], ms["with_aam"]) == (10.0, 0.2, 0.07, False)
    for entry in LOSSES:
        loss = LOSSES.build(entry.name, {}, 8, 5)
        # every loss without a class-centre matrix learns from same-speaker pairs
        assert loss.needs_positives == (entry.family != "classification"), entry.name
        assert entry.family in ("classification", "contrastive", "prototypical", "pair"), entry.name
        assert entry.paper or entry.name == "softmax", entry.name


def test_cli_lists_every_loss_as_json():
    res = CliRunner().invoke(app, ["list", "losses", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert set(ALL) == set(rows)
    assert (
        rows["subcenter_aam"]["family"] == "classification" and "Sub-center ArcFace" in rows["subcenter_aam"]["paper"]
    )
    assert {p["name"] for p in rows["marginsupcon"]["parameters"]} >= {
        "scale",
        "margin",
        "temperature",
        "easy_margin",
        "with_aam",
        "weight",
        "aam_scale",
        "aam_margin",
        "classifier_views",
    }


def test_cli_table_shows_family_and_paper():
    res = CliRunner().invoke(app, ["list", "losses"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "family" in res.output and "prototypical" in res.output and "Circle Loss" in res.output


def test_docstring_examples_run():
    for mod in (losses.classification, losses.contrastive, losses.schedule, losses.perf):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("supcon", {"temperature": 0.0}, "temperature must be > 0"),
        ("supcon", {"temperature": -0.1}, "temperature must be > 0"),
        ("aamsupcon", {"temperature": 0}, "temperature must be > 0"),
        ("marginsupcon", {"temperature": -1}, "temperature must be > 0"),
        ("am", {"margin": -0.1}, "margin must be in"),
        ("aam", {"margin": -0.1}, "margin must be in"),
        ("aam", {"margin": 2.0}, "margin must be in"),
        ("aamsupcon", {"margin": -0.3}, "aamsupcon: margin must be in"),
        ("marginsupcon", {"margin": -0.2}, "margin must be in"),
        ("aam", {"scale": 0}, "scale must be > 0"),
        ("aamsupcon", {"weight": -1}, "weight must be >= 0"),
        ("aamsupcon", {"classifier_views": []}, "at least one view"),
        ("aamsupcon", {"classifier_views": [0, 0]}, "repeated"),
        ("aam", {"marign": 0.2}, "did you mean 'margin'"),
    ],
)
def test_invalid_params_raise(name, params, match):
    with pytest.raises(BenchError, match=match):
        LOSSES.build(name, params, 8, 5)


def test_classifier_view_out_of_range_is_clear():
    loss = LOSSES.build("aamsupcon", {"classifier_views": [3]}, 8, 5)
    x, y = _data(v=2)
    with pytest.raises(BenchError, match=r"classifier_views \[3\] out of range for V=2"):
        loss(x, y)


def test_bad_shapes_raise():
    loss = LOSSES.build("supcon", {}, 8, 5)
    with pytest.raises(BenchError, match=r"\[B, V, D\]"):
        loss(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(BenchError, match="labels must be"):
        loss(torch.randn(4, 2, 8), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------- classification losses


@pytest.mark.parametrize("m", [0.0, 0.2, 0.5])
def test_am_matches_loop_and_pml(m):
    from pytorch_metric_learning.losses import CosFaceLoss

    x, y = _data()
    loss = LOSSES.build("am", {"scale": 30.0, "margin": m}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    w = loss.classifier.weight.detach()
    ref = _ref_margin_softmax(xf, w, yf, 30.0, lambda c: c - m)
    assert out.loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-5)
    pml = CosFaceLoss(num_classes=5, embedding_size=8, margin=m, scale=30.0)
    pml.W.data = w.t().clone()
    assert out.loss.item() == pytest.approx(pml(xf, yf).item(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("m", [0.0, 0.2, 0.5])
def test_aam_matches_loop_and_pml(m):
    from pytorch_metric_learning.losses import ArcFaceLoss

    x, y = _data(seed=1)
    loss = LOSSES.build("aam", {"scale": 32.0, "margin": m}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    w = loss.classifier.weight.detach()
    ref = _ref_margin_softmax(xf, w, yf, 32.0, lambda c: _arc(c, m))
    assert out.loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-5)
    pml = ArcFaceLoss(num_classes=5, embedding_size=8, margin=math.degrees(m), scale=32.0)
    pml.W.data = w.t().clone()
    assert out.loss.item() == pytest.approx(pml(xf, yf).item(), rel=1e-5, abs=1e-5)


def test_aam_fallback_and_easy_margin_follow_loop():
    # Embeddings pointing away from their class centre exercise theta + m > pi (fallback) and cos < 0.
    torch.manual_seed(3)
    m = 0.5
    for easy in (False, True):
        loss = LOSSES.build("aam", {"scale": 16.0, "margin": m, "easy_margin": easy}, 4, 3)
        w = loss.classifier.weight.detach()
        y = torch.tensor([0, 1, 2, 0])
        x = torch.stack([-w[0] + 0.05 * torch.randn(4), -w[1], w[2] * 0.3 - w[0], w[0]])[:, None, :]
        ref = _ref_margin_softmax(x[:, 0], w, y, 16.0, lambda c, easy=easy: _arc(c, m, easy))
        assert loss(x, y).loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ["am", "aam"])
def test_zero_margin_is_normalised_softmax(name):
    x, y = _data(seed=2)
    loss = LOSSES.build(name, {"margin": 0.0, "scale": 20.0}, 8, 5)
    xf, yf = _flat(x, y)
    logits = 20.0 * F.normalize(xf, dim=1) @ F.normalize(loss.classifier.weight.detach(), dim=1).T
    assert loss(x, y).loss.item() == pytest.approx(F.cross_entropy(logits, yf).item(), rel=1e-6)


def test_accuracy_is_margin_free_top1():
    x, y = _data(seed=4)
    loss = LOSSES.build("aam", {}, 8, 5)
    xf, yf = _flat(x, y)
    cos = F.normalize(xf, dim=1) @ F.normalize(loss.classifier.weight.detach(), dim=1).T
    assert loss(x, y).accuracy.item() == pytest.approx((cos.argmax(1) == yf).float().mean().item())


def test_softmax_matches_cross_entropy():
    x, y = _data()
    loss = LOSSES.build("softmax", {}, 8, 5)
    xf, yf = _flat(x, y)
    ref = F.cross_entropy(xf @ loss.fc.weight.detach().T + loss.fc.bias.detach(), yf)
    out = loss(x, y)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert set(out.parts) == {"ce"} and out.accuracy is not None


# ---------------------------------------------------------------- contrastive losses


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_supcon_matches_loop_and_pml(tau):
    from pytorch_metric_learning.losses import SupConLoss

    x, y = _data(b=5, v=3, seed=5)
    out = LOSSES.build("supcon", {"temperature": tau}, 8, 5)(x, y)
    xf, yf = _flat(x, y)
    assert out.loss.item() == pytest.approx(_ref_supcon(xf, yf, tau), rel=1e-5)
    assert out.loss.item() == pytest.approx(SupConLoss(temperature=tau)(xf, yf).item(), rel=1e-5)
    assert out.accuracy is None and set(out.parts) == {"supcon"}


@settings(max_examples=15, deadline=None)
@given(
    b=st.integers(2, 5),
    v=st.integers(1, 3),
    n_spk=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_supcon_property_vs_loop(b, v, n_spk, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, v, 4, generator=g)
    y = torch.randint(0, n_spk, (b,), generator=g)
    xf, yf = _flat(x, y)
    has_pos = any((yf == yf[i]).sum() > 1 for i in range(len(yf)))
    loss = LOSSES.build("supcon", {"temperature": 0.2}, 4, n_spk)
    if not has_pos:
        with pytest.raises(BenchError, match="no positive pair"):
            loss(x, y)
        return
    assert loss(x, y).loss.item() == pytest.approx(_ref_supcon(xf, yf, 0.2), rel=1e-4, abs=1e-5)


def test_supcon_anchors_without_positive_are_excluded_not_nan():
    x = torch.randn(3, 1, 8)
    y = torch.tensor([0, 0, 1])  # anchor 2 has no positive
    out = LOSSES.build("supcon", {}, 8, 2)(x, y)
    assert torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx(_ref_supcon(x[:, 0], y, 0.07), rel=1e-5)


def test_supcon_without_any_positive_is_a_clear_error():
    with pytest.raises(BenchError, match="no positive pair.*more than one view"):
        LOSSES.build("supcon", {}, 8, 4)(torch.randn(4, 1, 8), torch.arange(4))


@pytest.mark.parametrize("m,easy", [(0.2, False), (0.5, True), (0.0, False)])
def test_marginsupcon_matches_loop(m, easy):
    x, y = _data(b=4, v=3, seed=6)
    out = LOSSES.build("marginsupcon", {"scale": 10.0, "margin": m, "temperature": 0.5, "easy_margin": easy}, 8, 5)(
        x, y
    )
    xf, yf = _flat(x, y)
    assert out.loss.item() == pytest.approx(_ref_supcon(xf, yf, 0.5, s=10.0, m=m, easy=easy), rel=1e-5)
    assert set(out.parts) == {"marginsupcon"} and out.accuracy is None


def test_marginsupcon_zero_margin_is_supcon_at_tau_over_s():
    x, y = _data(seed=7)
    a = LOSSES.build("marginsupcon", {"scale": 10.0, "margin": 0.0, "temperature": 0.7}, 8, 5)(x, y).loss
    b = LOSSES.build("supcon", {"temperature": 0.07}, 8, 5)(x, y).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_aamsupcon_is_supcon_plus_weighted_aam_on_chosen_views():
    x, y = _data(b=4, v=5, seed=8)
    loss = LOSSES.build("aamsupcon", {"weight": 0.5, "classifier_views": [1, -1], "temperature": 0.1}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    sel, ysel = _flat(x[:, [1, 4]], y)
    aam = _ref_margin_softmax(sel, loss.aam.classifier.weight.detach(), ysel, 32.0, lambda c: _arc(c, 0.3))
    sc = _ref_supcon(xf, yf, 0.1)
    assert out.parts["aam"].item() == pytest.approx(aam, rel=1e-5)
    assert out.parts["supcon"].item() == pytest.approx(sc, rel=1e-5)
    assert out.loss.item() == pytest.approx(sc + 0.5 * aam, rel=1e-5)
    assert out.accuracy is not None


def test_marginsupcon_with_aam_adds_weighted_head():
    x, y = _data(b=4, v=2, seed=9)
    loss = LOSSES.build("marginsupcon", {"with_aam": True, "weight": 2.0}, 8, 5)
    out = loss(x, y)
    sel, ysel = _flat(x[:, [0]], y)
    aam = _ref_margin_softmax(sel, loss.aam.classifier.weight.detach(), ysel, 32.0, lambda c: _arc(c, 0.3))
    assert out.loss.item() == pytest.approx(out.parts["marginsupcon"].item() + 2.0 * aam, rel=1e-5)


# ---------------------------------------------------------------- invariances, gradients, precision


@pytest.mark.parametrize("name", ALL)
def test_batch_permutation_invariance(name):
    x, y = _data(b=6, v=3, seed=10)
    loss = LOSSES.build(name, {}, 8, 5).eval()  # eval: sphereface's annealing counter stays put
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    if not loss.row_order_invariant:
        # losses that take each speaker's first row as its query: permute speakers and the rows within
        # each speaker but keep every speaker's first utterance first
        firsts = {int(y[i]): i for i in reversed(range(len(y)))}
        order = sorted(range(len(y)), key=lambda i: (i != firsts[int(y[i])], int(perm.tolist().index(i))))
        perm = torch.tensor(order)
        assert not torch.equal(perm, torch.arange(len(y)))
    a, b = loss(x, y), loss(x[perm], y[perm])
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-5)
    for k in a.parts:
        assert a.parts[k].item() == pytest.approx(b.parts[k].item(), rel=1e-5)


def test_supcon_view_order_invariance():
    x, y = _data(b=4, v=3, seed=11)
    loss = LOSSES.build("supcon", {}, 8, 5)
    assert loss(x, y).loss.item() == pytest.approx(loss(x[:, [2, 0, 1]], y).loss.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["am", "aam", "aamsupcon", "marginsupcon"])
def test_gradients_finite_at_extreme_angles(name):
    torch.manual_seed(12)
    loss = LOSSES.build(name, {"easy_margin": False} if name != "am" else {}, 4, 3)
    head = getattr(loss, "aam", loss)
    w = head.classifier.weight.detach() if hasattr(head, "classifier") else torch.randn(3, 4)
    # theta = 0 to the own class centre / positive, theta = pi to it, and tiny perturbations of both
    x = torch.stack(
        [
            torch.stack([w[0], w[0]]),
            torch.stack([-w[1], w[1]]),
            torch.stack([w[2] * (1 + 1e-7), -w[2]]),
            torch.stack([w[0] + 1e-6, w[0] - 1e-6]),
        ]
    ).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0])
    out = loss(x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(x.grad).all()
    for p in loss.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ALL)
def test_half_precision_inputs(name, dtype):
    x, y = _data(seed=13)
    loss = LOSSES.build(name, {}, 8, 5).eval()
    ref = loss(x, y).loss
    xh = x.to(dtype).requires_grad_(True)
    out = loss(xh, y)
    assert out.loss.dtype == torch.float32
    out.loss.backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all()
    # only the input rounding differs: logits are float32
    assert out.loss.item() == pytest.approx(ref.item(), rel=2e-2)


@pytest.mark.parametrize("name", ALL)
def test_autocast_region_keeps_float32_logits(name):
    x, y = _data(seed=14)
    loss = LOSSES.build(name, {}, 8, 5).eval()
    ref = loss(x, y).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(x, y).loss
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)


# ---------------------------------------------------------------- margin warm-up


def test_margin_scale_zero_removes_every_margin():
    x, y = _data(seed=15)
    for name, zero in [("am", {"margin": 0.0}), ("aam", {"margin": 0.0}), ("marginsupcon", {"margin": 0.0})]:
        torch.manual_seed(0)
        a = LOSSES.build(name, {}, 8, 5)
        torch.manual_seed(0)
        b = LOSSES.build(name, zero, 8, 5)
        a.set_margin_factor(0.0)
        assert a(x, y).loss.item() == pytest.approx(b(x, y).loss.item(), rel=1e-6)
    torch.manual_seed(0)
    a = LOSSES.build("aamsupcon", {}, 8, 5)
    torch.manual_seed(0)
    b = LOSSES.build("aamsupcon", {"margin": 0.0}, 8, 5)
    a.set_margin_factor(0.0)
    assert a(x, y).loss.item() == pytest.approx(b(x, y).loss.item(), rel=1e-6)
    with pytest.raises(ValueError):
        a.set_margin_scale(1.5)  # the former name still works


def test_margin_scheduler_linear_warmup_and_state():
    loss = LOSSES.build("aamsupcon", {"margin": 0.3}, 8, 5)
    sched = MarginScheduler(loss, warmup_epochs=4)
    assert loss.aam.margin == 0.0
    sched.step(1.0)
    assert loss.aam.margin == pytest.approx(0.075)
    sched.step(2.5)
    assert sched.margin_factor == pytest.approx(0.625)
    state = sched.state_dict()
    sched.step(10.0)
    assert loss.aam.margin == pytest.approx(0.3)
    fresh_loss = LOSSES.build("aamsupcon", {"margin": 0.3}, 8, 5)
    fresh = MarginScheduler(fresh_loss, warmup_epochs=4)
    fresh.load_state_dict(state)
    assert fresh_loss.aam.margin == pytest.approx(0.3 * 0.625)
    assert fresh.state_dict() == state


def test_margin_scheduler_without_warmup_and_errors():
    loss = LOSSES.build("marginsupcon", {}, 8, 5)
    MarginScheduler(loss, 0)
    assert loss.margin_factor == 1.0
    MarginScheduler(LOSSES.build("supcon", {}, 8, 5), 3).step(1.0)  # margin-free losses ignore it
    with pytest.raises(BenchError, match="margin_warmup_epochs"):
        MarginScheduler(loss, -1)
