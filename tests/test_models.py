"""Frontend and backbones: Kaldi agreement, parameter counts, masking, gradients, CLI listing."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from bench.config import FrontendConfig, ModelConfig, load_config, resolve
from bench.errors import BenchError
from models import BACKBONES, SpeakerModel, build_model
from models.frontend import Fbank, spec_augment

# Small widths keep forward/backward tests to milliseconds while running every layer type.
SMALL = {
    "tiny": {},
    "ecapa": {"channels": 64, "mfa_channels": 96, "attention_channels": 16, "se_channels": 16, "embed_dim": 24},
    "resnet34": {"base_channels": 4, "embed_dim": 24},
}


def _model(name: str, **frontend) -> SpeakerModel:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=name, params=dict(SMALL[name]), frontend=FrontendConfig(**frontend)))


def _signal(n: int, seed: int = 0) -> torch.Tensor:
    """Noise plus two tones: every mel bin well above Kaldi's log floor."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return (
        0.05 * torch.randn(n, generator=g)
        + 0.3 * torch.sin(2 * math.pi * 220 * t)
        + 0.1 * torch.sin(2 * math.pi * 3100 * t)
    )


def _kaldi(wave: torch.Tensor, **kw) -> torch.Tensor:
    return kaldi.fbank(
        wave[None],
        num_mel_bins=80,
        frame_length=25.0,
        frame_shift=10.0,
        dither=0.0,
        window_type="povey",
        snip_edges=True,
        sample_frequency=16000,
        **kw,
    ).T


# ---------------------------------------------------------------- frontend


@pytest.mark.parametrize("n", [400, 16000, 16000 + 317, 3 * 16000 + 1])
def test_fbank_matches_kaldi(n):
    """Oracle: torchaudio's Kaldi fbank (dither=0, preemphasis 0.97, povey, snip_edges) within 1e-3 nats."""
    wave = _signal(n, seed=n)
    fb = Fbank(FrontendConfig(mean_norm=False, specaug=False)).eval()
    ours, mask = fb(wave[None])
    ref = _kaldi(wave)
    assert mask is None
    assert ours.shape == (1, 80, ref.shape[1]) == (1, 80, 1 + (n - 400) // 160)
    torch.testing.assert_close(ours[0], ref, atol=1e-3, rtol=0)


def test_fbank_mean_norm_and_silence_match_kaldi():
    wave = torch.cat([_signal(16000), torch.zeros(4000)])
    fb = Fbank(FrontendConfig(specaug=False)).eval()
    torch.testing.assert_close(fb(wave[None])[0][0], _kaldi(wave, subtract_mean=True), atol=2e-3, rtol=0)
    # Digital silence hits the same log floor as Kaldi's (float32 epsilon).
    silent = Fbank(FrontendConfig(mean_norm=False, specaug=False))(torch.zeros(1, 1600))[0]
    torch.testing.assert_close(silent[0], _kaldi(torch.zeros(1600)))


def test_fbank_stays_float32_under_autocast():
    wave = _signal(8000)[None]
    fb = Fbank(FrontendConfig(specaug=False)).eval()
    plain = fb(wave)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = fb(wave)[0]
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, plain)


def test_fbank_padding_is_ignored():
    a, b = _signal(16000, 1), _signal(9000, 2)
    batch = torch.stack([a, torch.cat([b, torch.randn(7000)])])  # garbage, not zeros, past b's end
    fb = Fbank(FrontendConfig(specaug=False)).eval()
    feats, mask = fb(batch, torch.tensor([16000, 9000]))
    nb = 1 + (9000 - 400) // 160
    assert mask.sum(1).tolist() == [feats.shape[-1], nb]
    torch.testing.assert_close(feats[1, :, :nb], fb(b[None])[0][0], atol=1e-4, rtol=0)
    assert torch.all(feats[1, :, nb:] == 0)


def test_fbank_rejects_bad_config():
    with pytest.raises(BenchError, match="freq_mask_width"):
        Fbank(FrontendConfig(n_mels=8, freq_mask_width=8))


def test_specaug_only_in_train_mode_and_inside_valid_frames():
    torch.manual_seed(0)
    cfg = FrontendConfig(time_masks=2, time_mask_width=10, freq_masks=2, freq_mask_width=8)
    fb = Fbank(cfg)
    wave, lengths = torch.stack([_signal(16000), _signal(16000, 3)]), torch.tensor([16000, 6000])
    fb.eval()
    clean, mask = fb(wave, lengths)
    fb.train()
    aug, _ = fb(wave, lengths)
    dropped = (aug == 0) & (clean != 0)
    assert dropped.any()
    assert torch.equal(aug[~dropped], clean[~dropped])
    # A time mask is a whole column; every such column of utterance 1 lies within its valid frames.
    cols = dropped[1].all(0).nonzero().flatten()
    assert len(cols) == 0 or cols.max() < mask[1].sum()
    # Masks are drawn per utterance.
    out = spec_augment(torch.ones(8, 80, 100), None, cfg)
    assert len({tuple((out[i] == 0).all(1).tolist()) for i in range(8)}) > 1


# ---------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    ("name", "params", "published"),
    [("ecapa", {}, 6.2e6), ("ecapa", {"channels": 1024}, 14.7e6), ("resnet34", {}, 6.6e6)],
)
def test_parameter_counts_match_published(name, params, published):
    entry = BACKBONES.get(name)
    n = entry.cls.count_parameters(BACKBONES.make_config(name, params))
    assert abs(n - published) / published < 0.02, n


def test_count_parameters_equals_built_module():
    m = _model("tiny")
    assert type(m.backbone).count_parameters(m.backbone.cfg) == sum(p.numel() for p in m.backbone.parameters())
    assert sum(p.numel() for p in m.parameters()) < 1_000_000  # "tiny" stays CPU-trainable


def test_backbone_config_is_validated():
    with pytest.raises(BenchError, match="divisible"):
        BACKBONES.make_config("ecapa", {"channels": 100, "scale": 8})
    with pytest.raises(BenchError, match="unknown parameter"):
        BACKBONES.make_config("ecapa", {"chanels": 512})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_finite_grads(name):
    m = _model(name).train()
    emb = m(torch.randn(3, 8000) * 0.1)
    assert emb.shape == (3, m.embed_dim) and emb.dtype == torch.float32
    emb.pow(2).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(SMALL))
def test_padded_batch_equals_single_utterances(name):
    m = _model(name).eval()
    # Odd frame counts exercise ResNet's stride-2 boundaries; 300 samples is under one window.
    lens = [16000, 11350, 5210, 300]
    waves = [_signal(n, seed=i) for i, n in enumerate(lens)]
    batch = torch.zeros(len(lens), max(lens))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    with torch.no_grad():
        padded = m(batch, torch.tensor(lens))
        single = torch.cat([m(w[None]) for w in waves])
        again = m(batch, torch.tensor(lens))
    torch.testing.assert_close(padded, single, atol=1e-4, rtol=1e-4)
    assert torch.equal(padded, again)  # eval mode is deterministic
    assert padded.shape == (len(lens), m.embed_dim)


@pytest.mark.parametrize("params", [SMALL["ecapa"], {"channels": 128, "mfa_channels": 384, "embed_dim": 32}])
def test_ecapa_equals_reference_implementation_at_fixed_weights(params):
    """The speed work changed no function: embeddings, gradients and BatchNorm statistics equal the
    pre-optimisation layers (tests/ecapa_reference.py), in training and in padded evaluation."""
    from tests.ecapa_reference import reference_copy

    torch.manual_seed(0)
    m = build_model(ModelConfig(backbone="ecapa", params=dict(params), frontend=FrontendConfig(specaug=False)))
    ref = reference_copy(m)
    wave = torch.stack([_signal(12000, seed=i) for i in range(4)])
    for model in (m, ref):
        model.train()
        model(wave).pow(2).sum().backward()
    torch.testing.assert_close(m(wave), ref(wave), atol=1e-5, rtol=1e-4)
    g = torch.cat([p.grad.flatten() for p in m.parameters()])
    g_ref = torch.cat([p.grad.flatten() for p in ref.parameters()])
    # float32 rounding, amplified by train-mode BatchNorm on 4 utterances, reaches ~1e-4 of the
    # gradient's scale (and all of some gradients that are zero in exact arithmetic, e.g. the bias
    # before the softmax); a wrong weight slice or a lost bias is O(1)
    assert (g - g_ref).norm() <= 1e-3 * g_ref.norm()
    scale = g_ref.abs().max()
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-4 * scale, name
    for (name, b), c in zip(m.named_buffers(), ref.buffers()):
        torch.testing.assert_close(b, c, atol=1e-6, rtol=1e-5, msg=name)
    lengths = torch.tensor([12000, 9100, 5000, 2500])
    m.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(wave, lengths), ref(wave, lengths), atol=1e-5, rtol=1e-4)


def test_compile_is_chosen_from_the_measured_table():
    from models import speed

    long_run = speed.SPEEDUPS[("ecapa", "cpu")].compile_min_steps
    assert not speed.should_compile("ecapa", "cpu", steps=long_run - 1)
    assert speed.should_compile("ecapa", "cpu", steps=long_run)
    assert speed.should_compile("tiny", "cpu", steps=10, compile=True)  # train.compile=true forces it
    assert not speed.should_compile("ecapa", "cuda", steps=10**9)  # not measured there: off
    m = _model("tiny")
    assert speed.prepare_for_training(m, "tiny", "cpu", steps=10) is m
    assert speed.prepare_for_training(m, "tiny", "cpu", steps=10, compile=True)._orig_mod is m


def test_padding_changes_output_without_lengths():
    """Control for the test above: the comparison is able to fail."""
    m = _model("tiny").eval()
    w = _signal(8000)
    with torch.no_grad():
        assert not torch.allclose(m(w[None]), m(torch.cat([w, torch.zeros(8000)])[None]), atol=1e-4)


def test_bf16_autocast_forward():
    m = _model("tiny").eval()
    wave = _signal(8000)[None].repeat(2, 1)
    with torch.no_grad():
        ref = m(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = m(wave)
    assert amp.dtype == torch.float32 and torch.isfinite(amp).all()
    assert torch.nn.functional.cosine_similarity(amp, ref).min() > 0.98


def test_presets_build():
    demo = resolve(load_config(preset="demo"))
    assert isinstance(build_model(demo.model), SpeakerModel)
    ref = resolve(load_config(preset="reference"))
    assert ref.model.params["channels"] == 1024
    entry = BACKBONES.get(ref.model.backbone)
    n = entry.cls.count_parameters(BACKBONES.make_config(ref.model.backbone, ref.model.params))
    assert abs(n - 14.7e6) / 14.7e6 < 0.02
    # A dict frontend (e.g. from a hand-built config) is accepted too.
    m = build_model(dataclasses.replace(demo.model, frontend={"n_mels": 40}))
    assert m.frontend.n_mels == 40


def test_cli_lists_backbones_with_counts():
    from typer.testing import CliRunner

    from bench.cli import app

    res = CliRunner().invoke(app, ["list", "backbones", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {"ecapa", "resnet34", "tiny"} <= set(rows)
    assert rows["ecapa"]["info"] == "6.19 M"
    assert rows["resnet34"]["info"] == "6.63 M"
    assert "channels" in [p["name"] for p in rows["ecapa"]["parameters"]]


def test_time_backbone_smoke():
    from models.perf import time_backbone

    out = time_backbone("tiny", {}, batch=2, seconds=0.5, repeats=1)
    assert out["train_samples_per_s"] > 0 and out["infer_samples_per_s"] > 0
    assert out["params"] == BACKBONES.get("tiny").cls.count_parameters(BACKBONES.make_config("tiny", {}))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_torch_compile_matches_eager(name):
    """fullgraph=True: no data-dependent Python control flow (graph breaks) in forward."""
    m = _model(name).eval()
    wave = torch.stack([_signal(8000), _signal(8000, 1)])
    lengths = torch.tensor([8000, 6100])
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(wave, lengths), m(wave, lengths), atol=1e-4, rtol=1e-4)
