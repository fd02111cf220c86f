"""The CPU benchmark suite behind ``bench perf``: each benchmark measured beside its peer, as a ratio.

Every benchmark returns a *section*: a title, a description of what was measured, table ``rows``
and the ``raw`` measurements. A row compares one of our numbers with a peer's (another toolkit, or
the demand it must meet) measured in the same process, and gives their ratio; where the peer is not
importable the row says "peer not installed" instead of failing (the peers live only in
``.venv-perf``, built by ``nox -s perf``).

Sizes are those of the reference recipe (ECAPA C=512, 2 s crops, batch 32, 5 views, 192-dim
embeddings, 2,793 training speakers, the CN-Celeb1 trial count); ``quick`` shrinks them for a smoke
run whose numbers are not meant to be quoted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.perf.timing import median_of, repeat

PEER_MISSING = "peer not installed"
# SpeechBrain's EER/minDCF compare every score with every candidate threshold, O(N^2) time and memory:
# 20,000 trials took 150 s on a loaded 2-core machine, so the suite stops at a sample it survives.
SB_METRICS_CAP = 10_000
SB_METRICS_CAP_QUICK = 2_000


from bench.perf.base import BENCHMARKS, Context, benchmark, default_names, row  # noqa: F401,E402

# --------------------------------------------------------------------------------------------
# metrics: EER + minDCF on the CN-Celeb1 trial count
# --------------------------------------------------------------------------------------------


@benchmark("metrics")
def bench_metrics(ctx: Context) -> dict[str, Any]:
    import tracemalloc

    from bench import metrics as m
    from bench.perf_metrics import CNCELEB_TARGETS, CNCELEB_TRIALS, eer_and_min_dcf, sklearn_eer, synthetic

    n = 200_000 if ctx.quick else CNCELEB_TRIALS
    scores, labels = synthetic(n)
    r = ctx.repeats
    ours = repeat(lambda: eer_and_min_dcf(scores, labels), r, warmup=1)
    full = repeat(lambda: m.compute_metrics(scores, labels), r)
    tracemalloc.start()
    eer_and_min_dcf(scores, labels)
    ours_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    raw: dict[str, Any] = {"n_trials": n, "n_target": int(labels.sum()), "ours_eer_mindcf": ours,
                           "ours_compute_metrics": full, "ours_peak_mib": ours_peak}  # fmt: skip
    rows = [
        row(f"EER + minDCF(0.01), {n:,} trials", ours["median"], "s", note=f"EER {ours['value'][0]:.3f} % (ROCCH)"),
        row("compute_metrics (EER, 2 minDCFs, Cllr, minCllr)", full["median"], "s"),
    ]
    try:
        sk = repeat(lambda: sklearn_eer(scores, labels), r, warmup=1)
        tracemalloc.start()
        sklearn_eer(scores, labels)
        sk_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        raw.update(sklearn_roc_curve_eer=sk, sklearn_peak_mib=sk_peak)
        rows[0].update(peer_name="scikit-learn roc_curve + interpolated EER", peer=sk["median"],
                       ratio=sk["median"] / ours["median"], ratio_label="× faster",
                       note=rows[0]["note"] + f" (sklearn {sk['value']:.3f} %, EER only); peak memory "
                       f"{ours_peak:.0f} MiB vs {sk_peak:.0f} MiB")  # fmt: skip
    except ImportError:
        rows[0].update(peer_name="scikit-learn", peer=PEER_MISSING)
    k = SB_METRICS_CAP_QUICK if ctx.quick else SB_METRICS_CAP
    try:
        import torch
        from speechbrain.utils.metric_stats import EER, minDCF

        s_cap, l_cap = synthetic(k, max(1, round(k * CNCELEB_TARGETS / CNCELEB_TRIALS)), seed=1)
        pos, neg = torch.from_numpy(s_cap[l_cap]), torch.from_numpy(s_cap[~l_cap])
        sb = repeat(lambda: (100.0 * float(EER(pos, neg)[0]), float(minDCF(pos, neg, p_target=0.01)[0])), r)
        same = repeat(lambda: eer_and_min_dcf(s_cap, l_cap), r, warmup=1)
        raw.update(speechbrain_eer_mindcf=sb, ours_same_sample=same, speechbrain_cap=k)
        rows.append(row(f"EER + minDCF(0.01), {k:,} trials (peer's cap)", same["median"], "s",
                        peer_name="SpeechBrain EER + minDCF", peer=sb["median"], ratio=sb["median"] / same["median"],
                        ratio_label="× faster",
                        note=f"SpeechBrain capped at {k:,} trials: it compares every score with every threshold "
                        f"(O(N²)); it does not survive {n:,}. EER {same['value'][0]:.2f} % vs "
                        f"{sb['value'][0]:.2f} % (EER definitions differ; {int(l_cap.sum())} targets)"))  # fmt: skip
    except ImportError:
        rows.append(row(f"EER + minDCF(0.01), {k:,} trials (peer's cap)", None, "s",
                        peer_name="SpeechBrain", peer=PEER_MISSING))  # fmt: skip
    return {
        "title": "Metrics on a CN-Celeb1-sized trial list",
        "what": f"Synthetic float32 scores with the CN-Celeb1 eval class ratio ({n:,} trials); median seconds "
        "(lower is better); ratio = peer time / our time.",
        "rows": rows,
        "raw": raw,
    }


# --------------------------------------------------------------------------------------------
# report statistics: 4 systems x 3 seeds, seeds x speakers bootstrap, beside the previous code
# --------------------------------------------------------------------------------------------


@benchmark("report_stats")
def bench_report_stats(ctx: Context) -> dict[str, Any]:
    import os
    import tracemalloc

    from bench.perf_metrics import (
        CNCELEB_SPEAKERS,
        CNCELEB_TRIALS,
        report_statistics,
        report_statistics_reference,
        synthetic_report,
    )

    n, n_boot = (200_000, 200) if ctx.quick else (CNCELEB_TRIALS, 1000)
    mats, labels, groups = synthetic_report(n=n)
    ours = repeat(lambda: report_statistics(mats, labels, groups, n_boot=n_boot), ctx.repeats)
    tracemalloc.start()
    report_statistics(mats, labels, groups, n_boot=n_boot)
    ours_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    # the previous implementation once (about two minutes at full size), its peak traced in the same run
    tracemalloc.start()
    ref = repeat(lambda: report_statistics_reference(mats, labels, groups, n_boot=n_boot), 1)
    ref_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    what = f"4 systems × 3 seeds × {n:,} trials ({CNCELEB_SPEAKERS} enrolment speakers), {n_boot:,} resamples"
    return {
        "title": "Report statistics (bench report) on a CN-Celeb1-sized trial list",
        "what": f"{what}: per-seed metrics, 95 % intervals of EER and minDCF(0.01, 0.05) and paired EER tests of "
        "every pair, as reports.stats computes them from in-memory scores (synthetic float32 scores, "
        "speaker offsets, a separation per seed). Ours resamples seeds and speakers (two-stage bootstrap); "
        "the previous implementation resampled speakers only, seeds pooled. Median seconds; ratio = "
        "previous / ours; peak = tracemalloc peak of numpy allocations during one call.",
        "rows": [
            row(
                "report statistics, seeds × speakers bootstrap",
                ours["median"],
                "s",
                peer_name="previous implementation (speakers only)",
                peer=ref["median"],
                ratio=ref["median"] / ours["median"],
                ratio_label="× faster",
                note=f"min {ours['min']:.1f} s of {len(ours['times'])}; target ≤ 15 s on 2 cores; peak memory "
                f"{ours_peak:.0f} MiB (previous {ref_peak:.0f} MiB; previous timed once, traced); load average "
                + (", ".join(f"{x:.1f}" for x in load) if load else "n/a"),
            ),
        ],
        "raw": {
            "n_trials": n,
            "n_boot": n_boot,
            "ours": {k: v for k, v in ours.items() if k != "value"},
            "reference": {k: v for k, v in ref.items() if k != "value"},
            "ours_peak_mib": ours_peak,
            "reference_peak_mib": ref_peak,
            "load_average": list(load) if load else None,
        },  # fmt: skip
    }


# --------------------------------------------------------------------------------------------
# ECAPA C=512 beside SpeechBrain's ECAPA_TDNN
# --------------------------------------------------------------------------------------------


def _ecapa_sizes(ctx: Context) -> tuple[int, float]:
    return (8, 2.0) if ctx.quick else (32, 2.0)


def ecapa_ours(ctx: Context) -> dict[str, Any]:
    """Our ECAPA C=512 with the fbank frontend (the real training step), measured once per suite run."""
    if "ecapa_ours" not in ctx.cache:
        from models.perf import time_backbone

        batch, seconds = _ecapa_sizes(ctx)
        ctx.cache["ecapa_ours"] = time_backbone("ecapa", {"channels": 512}, batch=batch, seconds=seconds,
                                                repeats=ctx.repeats)  # fmt: skip
    return ctx.cache["ecapa_ours"]


def _median_step(res: dict[str, Any]) -> float:
    import statistics

    return statistics.median(res["train_step_s"])


@benchmark("ecapa")
def bench_ecapa(ctx: Context) -> dict[str, Any]:
    import torch

    from models import build_model
    from models.config import ModelConfig
    from models.perf import SAMPLE_RATE, time_module

    batch, seconds = _ecapa_sizes(ctx)
    full = ecapa_ours(ctx)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="ecapa", params={"channels": 512}))
    with torch.no_grad():
        feats, _ = model.frontend(torch.randn(batch, int(seconds * SAMPLE_RATE)) * 0.1, None)
    ours = time_module(model.backbone, lambda: (feats,), batch, repeats=ctx.repeats)
    rows = [
        row(
            "training step incl. fbank frontend",
            full["train_samples_per_s"],
            "samples/s",
            note="what training consumes; no peer (SpeechBrain computes features outside its ECAPA)",
        ),  # fmt: skip
        row("inference incl. fbank frontend", full["infer_samples_per_s"], "samples/s"),
    ]
    raw: dict[str, Any] = {"ours_with_frontend": full, "ours_backbone": ours, "feature_shape": list(feats.shape)}
    train = row("training step, backbone on 80-dim fbank", ours["train_samples_per_s"], "samples/s")
    infer = row("inference, backbone on 80-dim fbank", ours["infer_samples_per_s"], "samples/s")
    try:
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        torch.manual_seed(0)
        peer = ECAPA_TDNN(feats.shape[1], channels=[512, 512, 512, 512, 1536], lin_neurons=192)
        sb_feats = feats.transpose(1, 2).contiguous()  # SpeechBrain takes [B, T, F]
        sb = time_module(peer, lambda: (sb_feats,), batch, repeats=ctx.repeats)
        raw["speechbrain"] = sb
        name = "SpeechBrain ECAPA_TDNN (C=512)"
        note = f"parameters: ours {ours['params'] / 1e6:.2f} M, SpeechBrain {sb['params'] / 1e6:.2f} M"
        for r_, key in ((train, "train_samples_per_s"), (infer, "infer_samples_per_s")):
            r_.update(peer_name=name, peer=sb[key], ratio=ours[key] / sb[key], ratio_label="× peer's speed", note=note)
    except ImportError:
        for r_ in (train, infer):
            r_.update(peer_name="SpeechBrain", peer=PEER_MISSING)
    rows = [train, infer, *rows]
    return {
        "title": "ECAPA-TDNN C=512: training and inference throughput",
        "what": f"Batch {batch} of {seconds:g} s crops at 16 kHz ({feats.shape[-1]} frames), SGD step on a "
        f"sum-of-squares loss of the embedding, median of {ctx.repeats}; {torch.get_num_threads()} torch "
        "threads. Higher is better; ratio = ours / peer.",
        "rows": rows,
        "raw": raw,
    }


# --------------------------------------------------------------------------------------------
# losses vs the backbone step
# --------------------------------------------------------------------------------------------


@benchmark("losses")
def bench_losses(ctx: Context) -> dict[str, Any]:
    from losses import LOSSES
    from losses.perf import time_losses

    timed_batch, _ = _ecapa_sizes(ctx)
    # the loss is timed at the reference's training batch (issue 5: B=256, V=5), not the small batch
    # the backbone can afford on a CPU
    batch = 32 if ctx.quick else 256
    views = 5
    loss_rows = time_losses(batch=batch, views=views, embed_dim=192, num_classes=2793, repeats=ctx.repeats)
    ecapa = ecapa_ours(ctx)
    # The backbone step was timed on `timed_batch` crops; a CPU step's cost grows linearly with the
    # crops it processes, so scale it to the batch x views crops the loss sees.
    backbone_s = _median_step(ecapa) * views * batch / timed_batch
    rows = [
        row(
            r["loss"],
            r["fwd_bwd_ms"],
            "ms",
            peer_name="ECAPA C=512 step on the same crops",
            peer=backbone_s * 1000.0,
            ratio=r["fwd_bwd_ms"] / (backbone_s * 1000.0),
            ratio_label="of the backbone step",
            note=LOSSES.get(r["loss"]).family,  # every registry entry is a row: new losses need no edit here
        )  # fmt: skip
        for r in loss_rows
    ]
    return {
        "title": "Loss step (forward + backward) vs the backbone step",
        "what": f"Embeddings [{batch}, {views}, 192], 2,793 classes, 2 utterances per speaker; median of "
        f"{ctx.repeats}. The backbone step is the ECAPA C=512 training step (fbank included) on "
        f"{batch} × {views} crops, scaled linearly from the {timed_batch}-crop measurement. Ratio = loss / backbone "
        "(small is good: the loss is not the bottleneck).",
        "rows": rows,
        "raw": {"losses": loss_rows, "backbone_step_s": backbone_s},
    }


# --------------------------------------------------------------------------------------------
# data loader vs the training step's demand
# --------------------------------------------------------------------------------------------


@benchmark("loader")
def bench_loader(ctx: Context) -> dict[str, Any]:
    from bench.data.perf import loader_throughput, write_fixture

    batches = 2 if ctx.quick else 6
    paths = ("loader", "device")
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = write_fixture(tmp)
        for _ in range(ctx.repeats):  # the two paths interleaved, so a load spike hits both
            for p in paths:
                runs[p].append(loader_throughput(root, corpus="cnceleb", views=5, batches=batches, workers=0,
                                                 augment_on=p, device="cpu"))  # fmt: skip
    views_per_s = {p: median_of(runs[p], "views_per_s") for p in paths}
    loader_ms = {p: median_of(runs[p], "loader_cpu_ms_per_crop") for p in paths}
    crops_per_s = median_of(runs["loader"], "crops_per_s")
    demand = ecapa_ours(ctx)["train_samples_per_s"]
    rows = [
        row(
            "augmented views/s, one process",
            views_per_s["loader"],
            "views/s",
            peer_name="ECAPA C=512 training demand",
            peer=demand,
            ratio=views_per_s["loader"] / demand,
            ratio_label="× demand",
            note=f"{crops_per_s:.1f} utterances/s × 5 views (reverb, babble, music, noise, clean); "
            f"{median_of(runs['loader'], 'cpu_ms_per_crop'):.0f} CPU ms per utterance",
        ),  # fmt: skip
        row(
            "augmented views/s, data.augment_on=device (this CPU as the device)",
            views_per_s["device"],
            "views/s",
            peer_name="data.augment_on=loader",
            peer=views_per_s["loader"],
            ratio=views_per_s["device"] / views_per_s["loader"],
            ratio_label="× the loader path",
            note=f"loader decodes, crops and draws; the views are made batched in torch "
            f"({median_of(runs['device'], 'device_ms_per_crop'):.1f} ms per utterance)",
        ),  # fmt: skip
        row(
            "CPU ms per crop left in the loader, data.augment_on=device",
            loader_ms["device"],
            "ms",
            peer_name="data.augment_on=loader",
            peer=loader_ms["loader"],
            ratio=loader_ms["loader"] / loader_ms["device"],
            ratio_label="× less loader CPU",
            note="what each loader worker still spends per utterance (5 views); the rest moves to the device",
        ),  # fmt: skip
    ]
    return {
        "title": "Data loader: 5-view augmentation vs what training consumes",
        "what": f"make_train_loader on a fixture corpus (FLAC, MUSAN/RIR banks), 2 s crops, batch 16, "
        f"{batches} timed batches, workers=0 (one process), median of {ctx.repeats}, the two data.augment_on "
        "paths interleaved. Demand = crops/s of the ECAPA C=512 training step measured in this run. Ratio > 1: "
        "one loader process keeps up; otherwise it is the number of loader workers needed.",
        "rows": rows,
        "raw": {"runs": runs["loader"], "device_runs": runs["device"], "demand_views_per_s": demand},
    }


# --------------------------------------------------------------------------------------------
# synthetic corpus generation
# --------------------------------------------------------------------------------------------


def _audio_seconds(root: Path) -> tuple[float, int]:
    import soundfile as sf

    total, n = 0.0, 0
    for p in root.rglob("*.flac"):
        info = sf.info(str(p))
        total += info.frames / info.samplerate
        n += 1
    return total, n


@benchmark("synth")
def bench_synth(ctx: Context) -> dict[str, Any]:
    from bench.synth import generate, make_config

    cfg = make_config("demo", speakers=2 if ctx.quick else 4, utts=3 if ctx.quick else 6)
    runs = []
    for i in range(ctx.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
            out = Path(tmp) / f"c{i}"
            t0 = time.perf_counter()
            generate(cfg, out, workers=1)
            wall = time.perf_counter() - t0
            audio, files = _audio_seconds(out)
        runs.append({"seconds": wall, "audio_seconds": audio, "files": files,
                     "realtime_factor": audio / wall, "files_per_s": files / wall})  # fmt: skip
    rt = median_of(runs, "realtime_factor")
    return {
        "title": "Synthetic corpus generation",
        "what": f"bench.synth.generate (demo preset, {cfg.train_speakers} training speakers, {cfg.utts} utterances "
        f"each, with its MUSAN/RIR banks), one worker process, median of {ctx.repeats}. The peer is real time: "
        "ratio = seconds of audio written per second.",
        "rows": [
            row(
                "audio generated per worker",
                rt,
                "audio s / s",
                peer_name="real time",
                peer=1.0,
                ratio=rt,
                ratio_label="× real time",
                note=f"{median_of(runs, 'files_per_s'):.1f} files/s, {runs[0]['files']} files, "
                f"{runs[0]['audio_seconds']:.0f} s of audio",
            ),  # fmt: skip
        ],
        "raw": {"runs": runs},
    }


def run_suite(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    repeats: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the named benchmarks (default all but the opt-in ones, in suite order); returns machine info
    and one section each."""
    from bench.perf.timing import machine_info

    names = list(names or default_names())
    ctx = Context(quick=quick, repeats=repeats if repeats is not None else (1 if quick else 3))
    result: dict[str, Any] = {"machine": machine_info(), "quick": quick, "repeats": ctx.repeats, "sections": {}}
    t_start = time.perf_counter()
    for name in names:
        if progress:
            progress(name)
        t0 = time.perf_counter()
        sec = BENCHMARKS[name](ctx)
        sec["seconds"] = time.perf_counter() - t0
        result["sections"][name] = sec
    result["seconds"] = time.perf_counter() - t_start
    import os

    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


# benchmarks defined in their own modules register themselves on import
from bench.perf import concurrency as _concurrency  # noqa: E402,F401
from bench.perf import demo_wall as _demo_wall  # noqa: E402,F401
