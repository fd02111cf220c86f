"""Tests of the benchmark suite (`bench perf`): the written files, peer handling, the GPU script's guard."""

from __future__ import annotations

import builtins
import json

import pytest
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()


@pytest.fixture
def no_peers(monkeypatch):
    """Make the peers unimportable, as outside `nox -s perf` (whatever this environment holds)."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in ("speechbrain", "sklearn"):
            raise ImportError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_quick_metrics_writes_wellformed_benchmarks(tmp_path, no_peers):
    out = tmp_path / "B.md"
    res = runner.invoke(app, ["perf", "--quick", "--only", "metrics", "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = out.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    # The page leads with the reproducing command, then the machine, then one table per benchmark.
    assert md.startswith("# Benchmarks\n")
    assert "Reproduce: `bench perf --quick --only metrics --out" in md.splitlines()[2]
    assert "| load average (1/5/15 min) | start " in md
    assert "## Metrics on a CN-Celeb1-sized trial list" in md
    assert list(data["sections"]) == ["metrics"]
    assert data["quick"] is True and data["repeats"] == 1
    m = data["machine"]
    assert len(m["load_average"]) == 3 and m["cpu_count"] >= 1 and m["versions"]["torch"].startswith("2.11")
    rows = data["sections"]["metrics"]["rows"]
    assert rows[0]["ours"] > 0 and rows[0]["unit"] == "s"
    # Without peers the rows say so instead of failing or inventing a ratio.
    missing = [r for r in rows if r["peer"] == "peer not installed"]
    assert {r["peer_name"] for r in missing} == {"scikit-learn", "SpeechBrain"}
    assert all(r["ratio"] is None for r in missing)
    assert md.count("peer not installed") == 2
    raw = data["sections"]["metrics"]["raw"]
    assert raw["n_trials"] == 200_000 and len(raw["ours_eer_mindcf"]["times"]) == 1
    # Every table row of the section has the header's 7 cells.
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and "CN-Celeb1" not in ln]
    header = table.index("| measure | ours | unit | peer | peer value | ratio | notes |")
    assert all(ln.count(" | ") == 6 for ln in table[header:])


def test_metrics_beside_sklearn_gives_a_ratio():
    pytest.importorskip("sklearn")
    from bench.perf.suite import Context, bench_metrics

    sec = bench_metrics(Context(quick=True, repeats=2))
    first = sec["rows"][0]
    assert first["peer_name"].startswith("scikit-learn")
    assert first["ratio"] == pytest.approx(first["peer"] / first["ours"])
    assert len(sec["raw"]["sklearn_roc_curve_eer"]["times"]) == 2


@pytest.mark.slow
def test_report_statistics_row_times_both_implementations():
    from bench.perf.suite import Context, bench_report_stats

    sec = bench_report_stats(Context(quick=True, repeats=1))
    (r,) = sec["rows"]
    assert r["peer_name"].startswith("previous implementation") and r["ratio"] == pytest.approx(r["peer"] / r["ours"])
    assert sec["raw"]["ours_peak_mib"] > 0 and sec["raw"]["reference_peak_mib"] > 0 and "peak memory" in r["note"]


def test_render_formats_ratios_and_escapes_cells():
    from bench.perf.markdown import render
    from bench.perf.suite import row

    result = {
        "machine": {"load_average": [1.0, 2.0, 3.0], "versions": {"torch": "2.11.0"}, "git": {"commit": "abc"}},
        "repeats": 3,
        "quick": False,
        "seconds": 12.0,
        "sections": {
            "x": {
                "title": "X",
                "what": "w",
                "seconds": 1.0,
                "rows": [
                    row("a|b", 1234.5, "samples/s", "peer", 617.25, 2.0, "× peer's speed"),
                    row("c", 0.00123, "s", "p", "peer not installed"),
                ],
            }
        },
    }
    md = render(result, "nox -s perf")
    assert "Reproduce: `nox -s perf` (builds `.venv-perf`" in md
    assert "median of 3 repeats" in md
    assert "| a\\|b | 1,234 | samples/s | peer | 617 | 2 × peer's speed |  |" in md
    assert "| c | 0.00123 | s | p | peer not installed | – |  |" in md
    assert "start 1.00 / 2.00 / 3.00" in md


def test_unknown_benchmark_is_an_error(tmp_path):
    res = runner.invoke(app, ["perf", "--only", "metrics,warp", "--out", str(tmp_path / "B.md")])
    assert res.exit_code == 2
    assert "warp" in res.output and "metrics, report_stats, ecapa, losses, loader, synth" in res.output
    assert not (tmp_path / "B.md").exists()


def test_loader_rows_compare_both_augmentation_paths():
    """The loader section at its quick size, the ECAPA demand stubbed (timing it is not this test's job)."""
    from bench.perf.suite import BENCHMARKS, Context

    ctx = Context(quick=True, repeats=1, cache={"ecapa_ours": {"train_samples_per_s": 10.0}})
    sec = BENCHMARKS["loader"](ctx)
    loader, device, left = sec["rows"]
    assert loader["peer"] == 10.0 and loader["ratio"] == pytest.approx(loader["ours"] / 10.0)
    assert device["peer"] == loader["ours"] and device["ratio"] == pytest.approx(device["ours"] / loader["ours"])
    run, dev_run = sec["raw"]["runs"][0], sec["raw"]["device_runs"][0]
    assert (run["augment_on"], dev_run["augment_on"]) == ("loader", "device")
    assert run["device_ms_per_crop"] < dev_run["device_ms_per_crop"] / 10  # the views really moved
    assert left["ours"] == dev_run["loader_cpu_ms_per_crop"] > 0 and left["peer"] == run["loader_cpu_ms_per_crop"]


def test_gpu_without_cuda_exits_nonzero_with_message(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = runner.invoke(app, ["perf", "--gpu", "--quick", "--out", str(tmp_path / "G.md")])
    assert res.exit_code == 1
    assert "needs a CUDA GPU" in res.output and "nothing was measured" in res.output
    assert not (tmp_path / "G.md").exists() and not (tmp_path / "G.json").exists()


@pytest.mark.slow
def test_gpu_script_runs_its_code_on_the_cpu_at_tiny_size(tmp_path):
    """The GPU script's code paths (precisions, eval pass at the full trial count, loader), shrunk to the CPU."""
    from bench.perf.gpu import N_TARGET, GpuSizes, run_gpu
    from bench.perf.markdown import write

    sizes = GpuSizes(channels=32, batch=2, crop_seconds=0.5, repeats=1, modes=("fp32", "bf16"),
                     n_test_embedded=12, eval_batch=4, loader_batches=1, duration_scale=0.05)  # fmt: skip
    result = run_gpu(sizes, device="cpu")
    train = result["sections"]["gpu_train"]["rows"]
    assert [r["measure"] for r in train] == ["training, fp32", "training, bf16"]
    assert train[0]["ratio"] == pytest.approx(1.0)
    ev = result["sections"]["gpu_eval"]["raw"]
    assert ev["n_trials"] == 3_484_292 and ev["n_target"] == N_TARGET
    assert ev["test_scale"] == pytest.approx(17_777 / 12)
    assert result["sections"]["gpu_loader"]["rows"][0]["ratio"] > 0
    assert result["sections"]["gpu_loader"]["raw"]["device"]["augment_on"] == "device"
    assert result["sections"]["gpu_loader"]["rows"][1]["ratio"] > 0
    md, js = write(result, tmp_path / "G.md", "bench perf --gpu")
    assert "## CN-Celeb1 evaluation size: embed and score" in md.read_text()
    assert json.loads(js.read_text())["sections"]["gpu_train"]["raw"]["fp32"]["batch"] == 2


def test_the_hour_long_demo_benchmark_runs_only_when_named():
    from bench.perf.base import OPT_IN, default_names
    from bench.perf.suite import BENCHMARKS

    assert "demo" in default_names() and "demo_cpu" in BENCHMARKS and "demo_cpu" not in default_names()
    assert OPT_IN == {"demo_cpu"}


def test_demo_row_compares_the_wall_time_with_the_preset_target(monkeypatch):
    from bench.perf import demo_wall
    from bench.perf.base import Context

    fake = {"wall_seconds": 540.0, "seconds": {"corpus": 20.0, "train_and_score": 500.0, "report": 15.0, "total": 538.0},
            "runs": [{"converged": True}] * 5 + [{"converged": False}],
            "table": [{"system": "aam", "eer": {"mean": 4.5}, "mindcf@0.01": {"mean": 0.66}},
                      {"system": "aamsupcon", "eer": {"mean": 5.0}, "mindcf@0.01": {"mean": 0.7}}],
            "pairwise": [], "real": {"scored": 6}}  # fmt: skip
    monkeypatch.setattr(demo_wall, "time_demo", lambda preset, quick=False: fake)
    sec = demo_wall.bench_demo(Context())
    (r,) = sec["rows"]
    assert r["ours"] == 540.0 and r["peer"] == 600.0 and r["ratio"] == pytest.approx(0.9)
    assert "6 runs (5 converged)" in r["note"] and "best aam EER 4.50 %" in r["note"] and "0.660" in r["note"]
    sec = demo_wall.bench_demo_cpu(Context())
    assert sec["rows"][0]["peer"] == 3600.0


@pytest.mark.slow
def test_demo_benchmark_times_a_real_bench_demo_process(tmp_path):
    from bench.perf import demo_wall

    res = demo_wall.time_demo("demo", quick=True)
    assert res["wall_seconds"] > res["seconds"]["total"] > 0
    assert [r["loss"] for r in res["runs"]] == ["aam"] and res["runs"][0]["action"] == "trained"
