"""``bench perf --gpu``: ECAPA C=1024 training throughput by precision, and the full CN-Celeb1 eval pass.

Measures, on one CUDA device:

1. ECAPA-TDNN C=1024 training samples/s (fbank frontend included, 2 s crops) in fp32, bf16 and fp16
   autocast, and bf16 under ``torch.compile`` (its compile time reported separately);
2. the time to embed the CN-Celeb1 evaluation set (196 enrolment + 17,777 test utterances of
   realistic lengths; synthetic audio generated on the device, so file decoding is not counted)
   and to score its 3,484,292 trials through ``bench.scoring.cosine_score`` and
   ``bench.metrics.compute_metrics``;
3. one loader process's 5-view crops/s beside the GPU step's demand (loader workers needed).

Designed to finish in about 3-5 minutes on an H100 (``quick``: about 1-2); every size is a parameter
so that a test can run the same code on the CPU with a tiny model.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.perf.suite import row

N_ENROLL = 196
N_TEST = 17_777
N_TARGET = 17_755
SAMPLE_RATE = 16000


@dataclass
class GpuSizes:
    """Sizes of one GPU run; ``quick()`` and ``full()`` are the two the CLI offers."""

    channels: int = 1024
    batch: int = 128
    crop_seconds: float = 2.0
    repeats: int = 20
    modes: tuple[str, ...] = ("fp32", "bf16", "fp16", "bf16+compile")
    n_test_embedded: int = N_TEST  # test utterances actually embedded; the rest reuse their embeddings
    eval_batch: int = 32  # the product's default eval.batch_size
    loader_batches: int = 6
    duration_scale: float = 1.0  # multiplies every utterance length (tests shrink it; the CLI never does)

    @classmethod
    def full(cls) -> GpuSizes:
        return cls()

    @classmethod
    def quick(cls) -> GpuSizes:
        return cls(batch=64, repeats=5, n_test_embedded=2000, loader_batches=2)


def utterance_lengths(n: int, rng: np.random.Generator, median_s: float, sigma: float, lo: float, hi: float):
    """Log-normal durations in seconds, clipped to [lo, hi]."""
    return np.clip(rng.lognormal(np.log(median_s), sigma, n), lo, hi)


def _train_modes(sizes: GpuSizes, device: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch

    from models import build_model
    from models.config import ModelConfig
    from models.perf import time_module

    wave = torch.randn(sizes.batch, int(sizes.crop_seconds * SAMPLE_RATE)) * 0.1
    rows, raw = [], {}
    base = None
    for mode in sizes.modes:
        amp = mode.split("+")[0]
        amp = "none" if amp == "fp32" else amp
        torch.manual_seed(0)
        model = build_model(ModelConfig(backbone="ecapa", params={"channels": sizes.channels})).to(device)
        compiled = mode.endswith("+compile")
        t0 = time.perf_counter()
        if compiled:
            model = torch.compile(model)
            # The first calls compile; time them apart so the steady state is not polluted.
            time_module(model, lambda: (wave,), sizes.batch, repeats=1, device=device, amp=amp)
        compile_s = time.perf_counter() - t0 if compiled else None
        res = time_module(model, lambda: (wave,), sizes.batch, repeats=sizes.repeats, device=device, amp=amp)
        res["compile_seconds"] = compile_s
        raw[mode] = res
        sps = res["train_samples_per_s"]
        base = base or sps
        rows.append(row(f"training, {mode}", sps, "samples/s", peer_name="fp32", peer=base, ratio=sps / base,
                        ratio_label="× fp32",
                        note=f"inference {res['infer_samples_per_s']:,.0f} samples/s"
                        + (f"; compile {compile_s:.0f} s" if compiled else "")))  # fmt: skip
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, raw


def _eval_pass(sizes: GpuSizes, device: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch

    from bench import metrics as m
    from bench.runner.evaluate import length_batches
    from bench.scoring import cosine_score
    from models import build_model
    from models.config import ModelConfig

    rng = np.random.default_rng(0)
    # CN-Celeb1 test utterances are mostly short (median ~5 s, a long tail); enrolment files are the
    # concatenated enrolment sessions, tens of seconds to minutes. Assumed shapes, stated in the output.
    test_s = utterance_lengths(sizes.n_test_embedded, rng, 5.0, 0.8, 1.0, 60.0) * sizes.duration_scale
    enroll_s = utterance_lengths(N_ENROLL, rng, 45.0, 0.5, 15.0, 180.0) * sizes.duration_scale
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="ecapa", params={"channels": sizes.channels})).to(device).eval()
    gen = torch.Generator(device=device).manual_seed(0)

    def embed(durations: np.ndarray) -> tuple[np.ndarray, float]:
        out = np.zeros((len(durations), model.embed_dim), np.float32)
        n_samples = (durations * SAMPLE_RATE).astype(np.int64)
        t0 = time.perf_counter()
        with torch.no_grad():
            for idx in length_batches(list(durations), sizes.eval_batch):
                lengths = torch.as_tensor(n_samples[idx], device=device)
                waves = torch.randn(len(idx), int(lengths.max()), device=device, generator=gen) * 0.1
                full = bool((lengths == lengths.max()).all())
                emb = model(waves, None if full else lengths)
                out[idx] = emb.float().cpu().numpy()
        return out, time.perf_counter() - t0

    e_emb, t_enroll = embed(enroll_s)
    t_emb, t_test = embed(test_s)
    # Test utterances beyond those embedded (quick mode) reuse embeddings: scoring cost does not
    # depend on the values, only on the trial count.
    reps = -(-N_TEST // len(t_emb))
    t_full = np.tile(t_emb, (reps, 1))[:N_TEST]
    test_scale = N_TEST / len(t_emb)
    enroll_ids = [f"id{i:05d}-enroll" for i in range(N_ENROLL)]
    test_ids = [f"test/u{j:05d}" for j in range(N_TEST)]
    # Every enrolment model against every test utterance is exactly CN-Celeb1's 3,484,292 trials.
    trial_e = [e for e in enroll_ids for _ in range(N_TEST)]
    trial_t = test_ids * N_ENROLL
    spk_of_test = np.where(np.arange(N_TEST) < N_TARGET, np.arange(N_TEST) % N_ENROLL, -1)
    labels = (np.arange(N_ENROLL)[:, None] == spk_of_test[None, :]).reshape(-1)
    t0 = time.perf_counter()
    scores = cosine_score((enroll_ids, e_emb), (test_ids, t_full), (trial_e, trial_t))
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    met = m.compute_metrics(scores, labels)
    t_metrics = time.perf_counter() - t0
    audio = float(test_s.sum() * test_scale + enroll_s.sum())
    embed_total = t_enroll + t_test * test_scale
    total = embed_total + t_score + t_metrics
    rows = [
        row(f"embed {N_ENROLL} enrolment + {N_TEST:,} test utterances", embed_total, "s", peer_name="audio duration",
            peer=audio, ratio=audio / embed_total, ratio_label="× real time",
            note=f"{audio / 3600:.1f} h of audio; batch {sizes.eval_batch} by length; fp32"
            + (f"; {sizes.n_test_embedded:,} test utterances embedded, time scaled" if test_scale > 1 else "")),
        row(f"cosine scoring, {len(scores):,} trials", t_score, "s", note="bench.scoring.cosine_score, string ids"),
        row("metrics (EER, minDCFs, Cllr, minCllr)", t_metrics, "s", note="bench.metrics.compute_metrics"),
        row("embed + score + metrics", total, "s"),
    ]  # fmt: skip
    raw = {"enroll_seconds": t_enroll, "test_seconds": t_test, "test_scale": test_scale, "score_seconds": t_score,
           "metrics_seconds": t_metrics, "audio_seconds": audio, "n_trials": int(len(scores)),
           "n_target": int(labels.sum()), "eer_random_model": met["eer"],
           "test_seconds_median": float(np.median(test_s)), "test_seconds_mean": float(test_s.mean()),
           "enroll_seconds_mean": float(enroll_s.mean())}  # fmt: skip
    return rows, raw


def _loader_vs_demand(
    sizes: GpuSizes, demand: float, device: str = "cpu"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bench.data.perf import loader_throughput

    res = loader_throughput(views=5, batches=sizes.loader_batches, workers=0)
    per_worker = res["views_per_s"]
    # data.augment_on=device: the loader only decodes, crops and draws; what a worker then delivers
    dev = loader_throughput(views=5, batches=sizes.loader_batches, workers=0, augment_on="device", device=device)
    dev_per_worker = 5000.0 / dev["loader_cpu_ms_per_crop"]
    return [
        row(
            "augmented views/s, one loader process",
            per_worker,
            "views/s",
            peer_name="fastest training demand",
            peer=demand,
            ratio=demand / per_worker,
            ratio_label="workers needed",
            note="5-view augmentation on the CPU; demand = best training samples/s above",
        ),  # fmt: skip
        row(
            "views/s one loader process feeds, data.augment_on=device",
            dev_per_worker,
            "views/s",
            peer_name="fastest training demand",
            peer=demand,
            ratio=demand / dev_per_worker,
            ratio_label="workers needed",
            note=f"loader CPU {dev['loader_cpu_ms_per_crop']:.0f} ms per utterance (loader path "
            f"{res['loader_cpu_ms_per_crop']:.0f} ms); views made on {device} in {dev['device_ms_per_crop']:.2f} ms "
            "per utterance",
        ),  # fmt: skip
    ], {"loader": res, "device": dev}


def run_gpu(sizes: GpuSizes | None = None, device: str = "cuda", quick: bool = False) -> dict[str, Any]:
    """Run the GPU benchmarks on ``device``; returns a suite-shaped result (see bench.perf.markdown)."""
    import torch

    from bench.perf.timing import machine_info

    sizes = sizes or GpuSizes.full()
    dev = torch.device(device)
    # cudnn.benchmark stays as `bench run` leaves it (off): with it on, every new utterance length of
    # the eval pass would trigger a fresh kernel search.
    result: dict[str, Any] = {"machine": machine_info(), "quick": quick,
                              "repeats": sizes.repeats, "sizes": sizes.__dict__, "sections": {}}  # fmt: skip
    if dev.type == "cuda":
        result["machine"]["cuda_device"] = torch.cuda.get_device_name(dev)
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    rows, raw = _train_modes(sizes, dev)
    result["sections"]["gpu_train"] = {
        "title": f"ECAPA-TDNN C={sizes.channels} training throughput by precision",
        "what": f"Batch {sizes.batch} of {sizes.crop_seconds:g} s crops, fbank frontend included, SGD step on a "
        f"sum-of-squares loss of the embedding; median of {sizes.repeats} steps on {dev}; cudnn.benchmark "
        f"{'on' if torch.backends.cudnn.benchmark else 'off'}, "
        f"TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}.",
        "rows": rows,
        "raw": raw,
        "seconds": time.perf_counter() - t0,
    }
    t0 = time.perf_counter()
    rows, raw = _eval_pass(sizes, dev)
    result["sections"]["gpu_eval"] = {
        "title": "CN-Celeb1 evaluation size: embed and score",
        "what": f"ECAPA C={sizes.channels} (untrained weights) embeds {N_ENROLL} enrolment and {N_TEST:,} test "
        "utterances of synthetic audio made on the device (no file decoding), log-normal lengths: test median "
        f"5 s (mean {raw['test_seconds_mean']:.1f} s, 1-60 s), enrolment mean {raw['enroll_seconds_mean']:.0f} s; "
        f"then all {raw['n_trials']:,} trials are scored on the CPU.",
        "rows": rows,
        "raw": raw,
        "seconds": time.perf_counter() - t0,
    }
    t0 = time.perf_counter()
    demand = max(r["train_samples_per_s"] for r in result["sections"]["gpu_train"]["raw"].values())
    rows, raw = _loader_vs_demand(sizes, demand, str(dev))
    result["sections"]["gpu_loader"] = {
        "title": "Data loader vs the GPU's demand",
        "what": "One loader process (workers=0) on a fixture corpus, 2 s crops, 5 views; the ratio is how many "
        "loader worker processes the fastest training mode needs.",
        "rows": rows,
        "raw": raw,
        "seconds": time.perf_counter() - t0,
    }
    result["seconds"] = time.perf_counter() - t_all
    import os

    result["machine"]["load_average_end"] = list(os.getloadavg())
    result["median_step_s"] = {
        k: statistics.median(v["train_step_s"]) for k, v in result["sections"]["gpu_train"]["raw"].items()
    }
    return result
