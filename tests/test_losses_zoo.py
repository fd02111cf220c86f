"""The objectives beyond the reference recipe (issue 22): each against an independent oracle.

pytorch-metric-learning where it has the loss (SubCenterArcFaceLoss, TripletMarginLoss +
BatchHardMiner, CircleLoss, MultiSimilarityLoss), otherwise a float64 loop written from the paper's
formula. Conventions handled here: PML stores W as [D, C*K] (ours [C*K, D], same sub-centre order)
and takes margins in degrees; it takes flat rows, so our [B, V, D] views are flattened with labels
repeated per view. Also: margin schedules (shapes, start epoch, every margin loss, state across a
resume) and finite gradients at the angular extremes for every registry entry.
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import losses.pair
import losses.prototypical
import losses.sphere
import losses.subcenter
from bench.config import load_config
from bench.errors import BenchError
from losses import LOSSES
from losses.schedule import MarginScheduler

NEW = [
    "subcenter_aam",
    "sphereface2",
    "sphereface",
    "angleproto",
    "softmaxproto",
    "proto",
    "ge2e",
    "triplet",
    "circle",
    "multisimilarity",
]


def _data(b=6, v=3, d=8, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, v, d, generator=g, dtype=torch.float64).float()
    y = torch.randint(0, c, (b,), generator=g)
    y[1] = y[0]
    return x, y


def _flat(x, y):
    b, v, d = x.shape
    return x.reshape(b * v, d), y.repeat_interleave(v)


def _cos(a, b):
    a, b = a.double(), b.double()
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _ce(logits, target):
    mx = max(logits)
    return mx + math.log(sum(math.exp(v - mx) for v in logits)) - logits[target]


def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def test_every_issue_entry_is_registered_with_metadata():
    assert set(NEW) <= set(LOSSES.names())
    for name in NEW:
        e = LOSSES.get(name)
        assert e.family and e.paper and e.summary, name
        assert "arXiv" in e.paper or "ECCV" in e.paper, name


def test_docstring_examples_run():
    for mod in (losses.subcenter, losses.sphere, losses.prototypical, losses.pair):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# ---------------------------------------------------------------- sub-center AAM


def _ref_subcenter(x, w, y, s, m, k_sub, topk, mp):
    total = 0.0
    n_cls = w.shape[0] // k_sub
    for i in range(x.shape[0]):
        cos = [max(_cos(x[i], w[c * k_sub + k]) for k in range(k_sub)) for c in range(n_cls)]
        yi = int(y[i])
        hard = sorted((j for j in range(n_cls) if j != yi), key=lambda j: -cos[j])[:topk]
        logits = []
        for j, c in enumerate(cos):
            theta = math.acos(max(-1.0, min(1.0, c)))
            if j == yi:
                v = math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)
            elif j in hard:
                v = math.cos(theta - mp)
            else:
                v = c
            logits.append(s * v)
        total += _ce(logits, yi)
    return total / x.shape[0]


@pytest.mark.parametrize("k_sub", [1, 3])
def test_subcenter_without_penalty_matches_pml(k_sub):
    from pytorch_metric_learning.losses import SubCenterArcFaceLoss

    x, y = _data(seed=1)
    loss = LOSSES.build("subcenter_aam", {"subcenters": k_sub, "topk": 0, "margin": 0.3}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    w = loss.classifier.weight.detach()
    pml = SubCenterArcFaceLoss(num_classes=5, embedding_size=8, margin=math.degrees(0.3), scale=32.0, sub_centers=k_sub)
    pml.W.data = w.t().clone()
    assert out.loss.item() == pytest.approx(pml(xf, yf).item(), rel=1e-5, abs=1e-5)
    assert out.loss.item() == pytest.approx(_ref_subcenter(xf, w, yf, 32.0, 0.3, k_sub, 0, 0.0), rel=1e-5)


@pytest.mark.parametrize("topk,mp", [(2, 0.06), (4, 0.2), (10, 0.1)])
def test_subcenter_inter_topk_matches_loop(topk, mp):
    x, y = _data(seed=2)
    loss = LOSSES.build("subcenter_aam", {"topk": topk, "topk_margin": mp}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    ref = _ref_subcenter(xf, loss.classifier.weight.detach(), yf, 32.0, 0.2, 3, topk, mp)
    assert out.loss.item() == pytest.approx(ref, rel=1e-5)
    # the penalty raises hard non-target logits, so it can only raise the loss
    plain = LOSSES.build("subcenter_aam", {"topk": 0}, 8, 5)
    plain.load_state_dict(loss.state_dict())
    assert out.loss.item() > plain(x, y).loss.item()


def test_subcenter_with_one_centre_and_no_penalty_is_aam():
    x, y = _data(seed=3)
    torch.manual_seed(0)
    sub = LOSSES.build("subcenter_aam", {"subcenters": 1, "topk": 0}, 8, 5)
    torch.manual_seed(0)
    aam = LOSSES.build("aam", {}, 8, 5)
    assert torch.equal(sub.classifier.weight, aam.classifier.weight)
    a, b = sub(x, y), aam(x, y)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-6)
    assert a.accuracy.item() == b.accuracy.item()


# ---------------------------------------------------------------- SphereFace / SphereFace2


def _ref_sphereface(x, w, y, m, lam, scale=None):
    total = 0.0
    for i in range(x.shape[0]):
        norm = float(x[i].double().norm()) if scale is None else scale
        logits = []
        for j in range(w.shape[0]):
            c = _cos(x[i], w[j])
            if j == int(y[i]):
                theta = math.acos(max(-1.0, min(1.0, c)))
                k = min(math.floor(m * theta / math.pi), m - 1)
                psi = (-1) ** k * math.cos(m * theta) - 2 * k
                c = (lam * c + psi) / (1 + lam)
            logits.append(norm * c)
        total += _ce(logits, int(y[i]))
    return total / x.shape[0]


@pytest.mark.parametrize("m,scale", [(2, None), (4, None), (3, 16.0)])
def test_sphereface_matches_loop_with_annealing(m, scale):
    x, y = _data(seed=4)
    loss = LOSSES.build("sphereface", {"margin": m, "scale": scale}, 8, 5)
    xf, yf = _flat(x, y)
    w = loss.classifier.weight.detach()
    for it in (1, 2, 500):
        loss.iteration = it - 1
        out = loss(x, y)
        assert loss.iteration == it
        lam = max(5.0, 1000.0 * (1 + 0.12 * it) ** -1)
        assert out.loss.item() == pytest.approx(_ref_sphereface(xf, w, yf, m, lam, scale), rel=1e-5)
    loss.eval()
    loss(x, y)
    assert loss.iteration == 500  # evaluation calls do not anneal


def test_sphereface_iteration_travels_in_state_dict():
    loss = LOSSES.build("sphereface", {}, 8, 5)
    for _ in range(3):
        loss(*_data())
    fresh = LOSSES.build("sphereface", {}, 8, 5)
    fresh.load_state_dict(loss.state_dict())
    assert fresh.iteration == 3 and fresh.current_lambda() == loss.current_lambda()


def _ref_sphereface2(x, w, y, s, m, lam, t, bias, kind):
    def g(z):
        return 2 * ((z + 1) / 2) ** t - 1

    total = 0.0
    for i in range(x.shape[0]):
        row = 0.0
        for j in range(w.shape[0]):
            c = _cos(x[i], w[j])
            theta = math.acos(max(-1.0, min(1.0, c)))
            if j == int(y[i]):
                if kind == "C":
                    z = s * (g(c) - m) + bias
                elif kind == "M":
                    z = s * g(math.cos(min(m * theta, math.pi))) + bias
                else:
                    v = math.cos(theta + m) if theta + m < math.pi else c - (1 - math.cos(m))
                    z = s * g(v) + bias
                row += lam * _softplus(-z)
            else:
                if kind == "M":
                    z = s * g(c) + bias
                elif kind == "C":
                    z = s * (g(c) + m) + bias
                else:
                    z = s * g(math.cos(theta - m)) + bias
                row += (1 - lam) * _softplus(z)
        total += row
    return total / x.shape[0]


@pytest.mark.parametrize(
    "kind,m,t", [("C", 0.2, 3.0), ("A", 0.15, 3.0), ("C", 0.3, 2.0), ("A", 0.5, 1.0), ("M", 1.5, 3.0), ("M", 3.0, 2.0)]
)
def test_sphereface2_matches_loop(kind, m, t):
    x, y = _data(seed=5)
    loss = LOSSES.build("sphereface2", {"margin_type": kind, "margin": m, "t": t}, 8, 5)
    with torch.no_grad():
        loss.bias.fill_(-0.7)
    xf, yf = _flat(x, y)
    ref = _ref_sphereface2(xf, loss.classifier.weight.detach(), yf, 32.0, m, 0.7, t, -0.7, kind)
    assert loss(x, y).loss.item() == pytest.approx(ref, rel=1e-5)


def test_sphereface2_m_form_gradient_bypasses_the_detached_offset():
    """OpenSphere's M form: d z_y / d cos_y = s exactly (the offset is a constant); margin 1 = no margin."""
    torch.manual_seed(0)
    loss = LOSSES.build("sphereface2", {"margin_type": "M", "margin": 2.0, "t": 1.0}, 4, 3)
    w = loss.classifier.weight.detach()
    x = torch.stack([w[0], -w[1], w[2] + 1e-7])[:, None, :].requires_grad_(True)
    out = loss(x, torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert torch.isfinite(x.grad).all()
    loss.set_margin_factor(0.0)  # m = 1: the M form without margin equals C with margin 0
    torch.manual_seed(0)
    c0 = LOSSES.build("sphereface2", {"margin_type": "C", "margin": 0.0, "t": 1.0}, 4, 3)
    xs, ys = _data(b=4, v=2, d=4, c=3, seed=30)
    assert loss(xs, ys).loss.item() == pytest.approx(c0(xs, ys).loss.item(), rel=1e-6)


def test_sphereface2_bias_learns():
    x, y = _data(seed=6)
    loss = LOSSES.build("sphereface2", {}, 8, 5)
    loss(x, y).loss.backward()
    assert loss.bias.grad is not None and loss.bias.grad.abs().item() > 0


# ---------------------------------------------------------------- prototypical family


def _groups(xf, yf):
    """speaker -> its rows in batch order (speakers with >= 2 rows only)."""
    out = {}
    for i in range(xf.shape[0]):
        out.setdefault(int(yf[i]), []).append(xf[i].double())
    return {k: v for k, v in out.items() if len(v) >= 2}


def _ref_proto(xf, yf, kind, w=10.0, b=-5.0):
    g = _groups(xf, yf)
    spk = list(g)
    queries = [g[k][0] for k in spk]
    protos = [sum(g[k][1:]) / (len(g[k]) - 1) for k in spk]
    total = 0.0
    for j, q in enumerate(queries):
        if kind == "proto":
            logits = [-float(((q - c) ** 2).sum()) for c in protos]
        else:
            logits = [w * _cos(q, c) + b for c in protos]
        total += _ce(logits, j)
    return total / len(spk)


def _ref_ge2e(xf, yf, w=10.0, b=-5.0):
    g = {k: [e / e.norm() for e in v] for k, v in _groups(xf, yf).items()}
    spk = list(g)
    cents = {k: sum(v) / len(v) for k, v in g.items()}
    total, n = 0.0, 0
    for j, k in enumerate(spk):
        for e in g[k]:
            logits = []
            for kk in spk:
                c = (sum(g[k]) - e) / (len(g[k]) - 1) if kk == k else cents[kk]
                logits.append(w * _cos(e, c) + b)
            total += _ce(logits, j)
            n += 1
    return total / n


@pytest.mark.parametrize("b,v,seed", [(6, 3, 7), (8, 1, 8), (5, 2, 9)])
@pytest.mark.parametrize("name", ["proto", "angleproto", "ge2e"])
def test_prototypical_losses_match_loops(name, b, v, seed):
    x, y = _data(b=b, v=v, seed=seed)
    if v == 1:
        y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # speaker 2 has three rows
        y[6] = 9  # a singleton speaker: left out
    loss = LOSSES.build(name, {}, 8, 10)
    with torch.no_grad():  # away from the initial values, so that the oracle sees them used
        if hasattr(loss, "w"):
            loss.w.fill_(7.5)
            loss.b.fill_(-2.0)
    xf, yf = _flat(x, y)
    ref = _ref_ge2e(xf, yf, 7.5, -2.0) if name == "ge2e" else _ref_proto(xf, yf, name, 7.5, -2.0)
    assert loss(x, y).loss.item() == pytest.approx(ref, rel=1e-5)


def test_angleproto_equals_voxceleb_trainer_layout():
    """[speakers, M, D] with distinct labels: query x[:, 0], prototype mean(x[:, 1:]) (Chung et al. Eq. 5-6)."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(7, 3, 8, generator=g)
    q, c = x[:, 0], x[:, 1:].mean(1)
    cos = torch.nn.functional.cosine_similarity(q[:, None, :], c[None, :, :], dim=2)
    ref = torch.nn.functional.cross_entropy(cos * 10.0 - 5.0, torch.arange(7))
    assert LOSSES.build("angleproto", {}, 8, 7)(x, torch.arange(7)).loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_softmaxproto_is_softmax_plus_weighted_angleproto():
    x, y = _data(seed=11)
    loss = LOSSES.build("softmaxproto", {"weight": 0.5}, 8, 5)
    out = loss(x, y)
    xf, yf = _flat(x, y)
    fc = loss.softmax.fc
    ce = torch.nn.functional.cross_entropy(xf @ fc.weight.detach().T + fc.bias.detach(), yf).item()
    ap = _ref_proto(xf, yf, "angleproto")
    assert out.parts["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out.parts["angleproto"].item() == pytest.approx(ap, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce + 0.5 * ap, rel=1e-5)
    assert out.accuracy is not None


def test_learned_scale_stays_positive():
    x, y = _data(seed=12)
    loss = LOSSES.build("ge2e", {}, 8, 5)
    with torch.no_grad():
        loss.w.fill_(-3.0)
    # a negative w would reward pushing same-speaker rows apart: it is clamped to ~0 instead
    assert loss(x, y).loss.item() == pytest.approx(LOSSES.build("ge2e", {"init_scale": 1e-6}, 8, 5)(x, y).loss.item())


@pytest.mark.parametrize("name", ["proto", "angleproto", "softmaxproto", "ge2e"])
def test_prototypical_without_any_pair_is_a_clear_error(name):
    with pytest.raises(BenchError, match="no speaker has two rows"):
        LOSSES.build(name, {}, 8, 5)(torch.randn(4, 1, 8), torch.arange(4))


# ---------------------------------------------------------------- pair losses vs pytorch-metric-learning


def _ref_triplet(xf, yf, m):
    n, total, count = xf.shape[0], 0.0, 0
    for i in range(n):
        pos = [_cos(xf[i], xf[p]) for p in range(n) if p != i and yf[p] == yf[i]]
        neg = [_cos(xf[i], xf[k]) for k in range(n) if yf[k] != yf[i]]
        if pos and neg:
            total += max(0.0, max(neg) - min(pos) + m)
            count += 1
    return total / count


@pytest.mark.parametrize("m,seed", [(0.1, 13), (0.5, 14), (1.5, 15)])
def test_triplet_matches_pml_batch_hard_and_loop(m, seed):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    x, y = _data(b=8, v=2, seed=seed, c=4)
    out = LOSSES.build("triplet", {"margin": m}, 8, 4)(x, y)
    xf, yf = _flat(x, y)
    dist = CosineSimilarity()
    triplets = BatchHardMiner(distance=dist)(xf, yf)
    pml = TripletMarginLoss(margin=m, distance=dist, reducer=MeanReducer())(xf, yf, triplets)
    assert out.loss.item() == pytest.approx(pml.item(), rel=1e-5, abs=1e-6)
    assert out.loss.item() == pytest.approx(_ref_triplet(xf, yf, m), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("m,gamma,seed", [(0.4, 80.0, 16), (0.25, 256.0, 17), (0.1, 10.0, 18)])
def test_circle_matches_pml(m, gamma, seed):
    from pytorch_metric_learning.losses import CircleLoss

    x, y = _data(b=8, v=2, seed=seed, c=4)
    out = LOSSES.build("circle", {"margin": m, "gamma": gamma}, 8, 4)(x, y)
    xf, yf = _flat(x, y)
    assert out.loss.item() == pytest.approx(CircleLoss(m=m, gamma=gamma)(xf, yf).item(), rel=1e-4, abs=1e-5)


def test_circle_matches_formula_loop():
    x, y = _data(b=5, v=2, seed=19, c=3)
    xf, yf = _flat(x, y)
    m, g = 0.3, 20.0
    n, total, count = xf.shape[0], 0.0, 0
    for i in range(n):
        sp = [_cos(xf[i], xf[p]) for p in range(n) if p != i and yf[p] == yf[i]]
        sn = [_cos(xf[i], xf[k]) for k in range(n) if yf[k] != yf[i]]
        if not (sp and sn):
            continue
        a = sum(math.exp(g * max(0.0, s + m) * (s - m)) for s in sn)
        b = sum(math.exp(-g * max(0.0, 1 + m - s) * (s - 1 + m)) for s in sp)
        total += math.log1p(a * b)
        count += 1
    assert LOSSES.build("circle", {"margin": m, "gamma": g}, 8, 3)(x, y).loss.item() == pytest.approx(
        total / count, rel=1e-5
    )


@pytest.mark.parametrize("alpha,beta,base,seed", [(2.0, 50.0, 0.5, 20), (1.0, 10.0, 0.0, 21), (4.0, 40.0, 0.8, 22)])
def test_multisimilarity_matches_pml_and_loop(alpha, beta, base, seed):
    from pytorch_metric_learning.losses import MultiSimilarityLoss

    x, y = _data(b=8, v=2, seed=seed, c=6)
    y[3] = 99  # an utterance whose only positive is its other view
    out = LOSSES.build("multisimilarity", {"alpha": alpha, "beta": beta, "base": base}, 8, 100)(x, y)
    xf, yf = _flat(x, y)
    pml = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)(xf, yf)
    assert out.loss.item() == pytest.approx(pml.item(), rel=1e-5, abs=1e-6)
    n, total = xf.shape[0], 0.0
    for i in range(n):
        sp = [_cos(xf[i], xf[p]) for p in range(n) if p != i and yf[p] == yf[i]]
        sn = [_cos(xf[i], xf[k]) for k in range(n) if yf[k] != yf[i]]
        total += math.log1p(sum(math.exp(-alpha * (s - base)) for s in sp)) / alpha
        total += math.log1p(sum(math.exp(beta * (s - base)) for s in sn)) / beta
    assert out.loss.item() == pytest.approx(total / n, rel=1e-5)


@pytest.mark.parametrize("name", ["triplet", "circle", "multisimilarity"])
def test_pair_losses_without_positives_are_a_clear_error(name):
    with pytest.raises(BenchError, match="no positive pair"):
        LOSSES.build(name, {}, 8, 5)(torch.randn(4, 1, 8), torch.arange(4))


# ---------------------------------------------------------------- every entry: extremes


def _extreme_batch(loss, d=4):
    """Rows at theta = 0 and pi to each other and to class centres, tiny perturbations, huge and tiny norms."""
    w = None
    for p in loss.parameters():
        if p.dim() == 2 and p.shape[1] == d:
            w = p.detach()[:3]
            break
    if w is None:
        w = torch.eye(d)[:3]
    rows = torch.stack(
        [
            torch.stack([w[0], w[0]]),
            torch.stack([-w[1], w[1]]),
            torch.stack([w[2] * (1 + 1e-7), -w[2]]),
            torch.stack([w[0] + 1e-6, w[0] - 1e-6]),
            torch.stack([w[1] * 1e4, w[1] * 1e-4]),
        ]
    )
    return rows, torch.tensor([0, 1, 2, 0, 1])


@pytest.mark.parametrize("name", LOSSES.names())
def test_gradients_finite_at_extremes(name):
    torch.manual_seed(23)
    loss = LOSSES.build(name, {}, 4, 3)
    x, y = _extreme_batch(loss)
    x.requires_grad_(True)
    out = loss(x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss), name
    assert torch.isfinite(x.grad).all(), name
    for p in loss.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


# ---------------------------------------------------------------- margin schedules


def _margin_params(name):
    """Parameters that switch every margin of ``name`` off, or None for a margin-free loss."""
    fields = {n for n, _, _ in LOSSES.get(name).parameters()}
    if name == "sphereface":
        return {"margin": 1}  # cos(1 * theta) = cos(theta): no multiplicative margin
    if "margin" not in fields:
        return None
    zero = {"margin": 0.0}
    if "topk_margin" in fields:
        zero["topk_margin"] = 0.0
    return zero


MARGIN_LOSSES = [n for n in LOSSES.names() if _margin_params(n) is not None]


def test_every_issue_margin_loss_has_a_schedulable_margin():
    assert {
        "am",
        "aam",
        "aamsupcon",
        "marginsupcon",
        "subcenter_aam",
        "sphereface",
        "sphereface2",
        "triplet",
        "circle",
    } <= set(MARGIN_LOSSES)


@pytest.mark.parametrize("name", MARGIN_LOSSES)
def test_margin_factor_zero_removes_every_margin(name):
    x, y = _data(seed=24)
    torch.manual_seed(0)
    a = LOSSES.build(name, {}, 8, 5).eval()
    torch.manual_seed(0)
    b = LOSSES.build(name, _margin_params(name), 8, 5).eval()
    full = a(x, y).loss.item()
    a.set_margin_factor(0.0)
    assert a(x, y).loss.item() == pytest.approx(b(x, y).loss.item(), rel=1e-6)
    assert a(x, y).loss.item() != pytest.approx(full, rel=1e-4)  # the margin mattered at factor 1
    with pytest.raises(ValueError, match="margin factor"):
        a.set_margin_factor(-0.1)


def _wespeaker_ratio(r):
    # WeSpeaker MarginScheduler.get_increase_margin, increase_type="exp", initial_val 1.0, final_val 1e-3
    return 1.0 - math.exp(r * math.log(1e-3 / (1.0 + 1e-6))) * 1.0


@pytest.mark.parametrize("shape", ["linear", "exp"])
def test_schedule_start_length_and_shape(shape):
    loss = LOSSES.build("aam", {"margin": 0.2}, 8, 5)
    sched = MarginScheduler(loss, warmup_epochs=4, start_epoch=2, shape=shape)
    expect = {0.0: 0.0, 1.9: 0.0, 2.0: 0.0, 3.0: 0.25, 4.0: 0.5, 5.5: 0.875, 6.0: 1.0, 9.0: 1.0}
    for p, r in expect.items():
        sched.step(p)
        want = r if shape == "linear" or r in (0.0, 1.0) else _wespeaker_ratio(r)
        assert loss.margin == pytest.approx(0.2 * want, abs=1e-12), (p, shape)
    # exponential grows faster early on
    if shape == "exp":
        assert sched.factor_at(3.0) > 0.25 * 3


def test_schedule_switch_on_without_warmup_and_errors():
    loss = LOSSES.build("triplet", {}, 8, 5)
    sched = MarginScheduler(loss, warmup_epochs=0, start_epoch=1)
    assert loss.margin == 0.0
    sched.step(1.0)
    assert loss.margin == pytest.approx(0.1)
    with pytest.raises(BenchError, match="margin_start_epoch"):
        MarginScheduler(loss, 1, start_epoch=-1)
    with pytest.raises(BenchError, match="margin_shape"):
        MarginScheduler(loss, 1, shape="cosine")


def test_schedule_state_round_trip_and_old_checkpoints():
    loss = LOSSES.build("sphereface2", {}, 8, 5)
    sched = MarginScheduler(loss, 3, start_epoch=1, shape="exp")
    sched.step(2.5)
    state = sched.state_dict()
    assert state["start_epoch"] == 1.0 and state["shape"] == "exp"
    fresh_loss = LOSSES.build("sphereface2", {}, 8, 5)
    fresh = MarginScheduler(fresh_loss, 3, start_epoch=1, shape="exp")
    fresh.load_state_dict(state)
    assert fresh_loss.margin == pytest.approx(loss.margin) and fresh.state_dict() == state
    old = {"warmup_epochs": 3.0, "progress": 2.5, "scale": 0.5}  # a checkpoint from before start/shape
    fresh.load_state_dict(old)
    assert fresh_loss.margin == pytest.approx(loss.margin)


def test_config_keys_old_and_new():
    old = load_config(overrides=["loss.margin_warmup_epochs=3"]).loss
    assert (old.margin_warmup_epochs, old.margin_start_epoch, old.margin_shape) == (3, 0, "linear")
    new = load_config(overrides=["loss.margin_start_epoch=2", "loss.margin_shape=exp"]).loss
    assert (new.margin_start_epoch, new.margin_shape) == (2, "exp")
    with pytest.raises(BenchError, match="margin_shape"):
        load_config(overrides=["loss.margin_shape=cubic"])
    with pytest.raises(BenchError, match="margin_start_epoch"):
        load_config(overrides=["loss.margin_start_epoch=-1"])


def test_perf_rows_cover_every_new_loss():
    from losses.perf import time_losses

    rows = time_losses(NEW, batch=16, views=2, embed_dim=16, num_classes=50, repeats=1, warmup=0)
    assert [r["loss"] for r in rows] == NEW
    assert all(r["fwd_bwd_ms"] > 0 and math.isfinite(r["loss_value"]) for r in rows)


@pytest.mark.parametrize(
    "loss,spec,bad",
    [
        ("subcenter_aam", "topk_margin=0.0:0.1", "topk_margin=-0.1:0.1"),
        ("sphereface", "margin=1:4", "margin=0:4"),
        ("sphereface2", "margin_type=C,A", "positive_weight=0.5:1.0"),
        ("angleproto", "init_scale=1:20:log", "init_scale=0:20"),
        ("ge2e", "init_bias=-10:0", "init_scale=-1:1"),
        ("triplet", "margin=0.0:0.5", "margin=-1:0.5"),
        ("circle", "gamma=16:256:log", "gamma=0:10"),
        ("multisimilarity", "beta=10:60", "base=0:2"),
    ],
)
def test_tune_search_spaces_over_new_losses(loss, spec, bad):
    from bench.tune.space import parse_space

    assert parse_space([spec], loss)[0].name == spec.split("=")[0]
    with pytest.raises(BenchError):
        parse_space([bad], loss)


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if LOSSES.get(n).cls.needs_positives])
def test_pair_needing_loss_without_pairs_in_any_batch_is_refused_up_front(name):
    from bench.runner.experiment import run_config

    cfg = load_config(overrides=["data.views=1", "data.utts_per_speaker=1"])
    with pytest.raises(BenchError, match=f"loss '{name}' needs positive pairs in every batch"):
        run_config(cfg, name, 0)
    ok = load_config(overrides=["data.views=1", "data.utts_per_speaker=2"])
    assert run_config(ok, name, 0).loss.name == name
