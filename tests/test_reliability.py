"""Reliability, fast part: bad audio, bad lists and configs, disk full, NaN losses, the run lock.

Each test declares what it tries through ``fault_case`` (see tests/faults.py), so the suite itself
produces the counts of the README's Reliability section. End to end through ``bench run``
(CliRunner) wherever the failure is reachable from the command line.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchError
from tests.faults import FailingWriter, full_disk_after
from tests.runner_helpers import TINY_MODEL
from tests.test_crosseval import invoke, train_run

pytest_plugins = ["tests.faults"]  # the fault_case fixture and the session ledger

SETS = [
    *TINY_MODEL,
    "model.frontend.specaug=false",
    "data.corpus=cnceleb",
    "data.views=1",
    'data.view_types=["clean"]',
    "data.crop_seconds=0.5",
    "data.workers=0",
    "data.speakers_per_batch=2",
    "data.utts_per_speaker=2",
    "optim.lr=0.05",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.validate_every=0",
    "train.device=cpu",
    "eval.batch_size=8",
    "eval.untrained=false",
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    from bench.data.fixtures import write_cnceleb1

    root = tmp_path_factory.mktemp("pristine")
    write_cnceleb1(root, train_speakers=4, utts=3, eval_speakers=2, test_utts=2, seed=0)
    return root


@pytest.fixture
def corpus_copy(pristine, tmp_path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(pristine, root)
    return root


def bench_run(root: Path, out: Path, *extra: str, losses: str = "aam", sets: list[str] = SETS):
    argv = ["run", "--losses", losses, "--experiment", "e", "--out", str(out), "--corpus", str(root), "--json"]
    for s in sets:
        argv += ["--set", s]
    return CliRunner().invoke(app, argv + list(extra))


def run_dir(out: Path, loss: str = "aam") -> Path:
    return out / "e" / loss / "seed0"


# ------------------------------------------------------------------------------- bad audio

FLAC_BYTES: dict[str, bytes] = {}


def _flac() -> bytes:
    if not FLAC_BYTES:
        import io

        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(np.arange(16000) / 7)).astype(np.float32), 16000, format="FLAC")
        FLAC_BYTES["ok"] = buf.getvalue()
    return FLAC_BYTES["ok"]


def make_bad(path: Path, kind: str) -> None:
    """Turn ``path`` into a bad audio file of ``kind`` (``missing`` deletes it)."""
    if kind == "missing":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # an interrupted copy: full-length header, half the frames
        path.write_bytes(_flac()[: len(_flac()) // 2])
    elif kind == "header-only":
        path.write_bytes(_flac()[:60])
    elif kind == "not-audio":
        path.write_bytes(b"<html>404 not found</html>\n" * 20)
    elif kind == "zero-frames":  # a valid container with no samples
        sf.write(str(path), np.zeros(0, dtype=np.float32), 16000, format="FLAC")
    else:
        raise ValueError(kind)


BAD_KINDS = ["missing", "empty", "truncated", "header-only", "not-audio", "zero-frames"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_reader_errors_name_the_file(tmp_path, kind, fault_case):
    from bench.data.audio import audio_info, read_audio

    case = fault_case("bad audio")
    p = tmp_path / "x.flac"
    p.write_bytes(_flac())
    make_bad(p, kind)
    for fn in (audio_info, read_audio):
        case.bad_input()
        with pytest.raises(BenchError) as e:
            fn(p)
        assert e.value.path == str(p) and str(p) in str(e.value)


def test_wrong_rate_is_resampled_with_a_warning_or_refused(tmp_path, fault_case):
    from bench.data.audio import read_audio

    fault_case("bad audio").bad_input(2)
    p = tmp_path / "r8k.wav"
    sf.write(str(p), np.zeros(8000, dtype=np.float32) + 0.1, 8000)
    with pytest.warns(UserWarning, match=r"r8k\.wav: resampling 8000 Hz -> 16000 Hz"):
        x = read_audio(p)
    assert x.dtype == np.float32 and len(x) == 16000
    with pytest.raises(BenchError, match=r"r8k\.wav: sample rate is 8000 Hz.*data.resample=false"):
        read_audio(p, resample=False)


def test_stereo_is_downmixed(tmp_path, fault_case):
    from bench.data.audio import read_audio

    fault_case("bad audio").bad_input()
    p = tmp_path / "st.wav"
    left, right = np.full(1000, 0.5, np.float32), np.full(1000, -0.25, np.float32)
    sf.write(str(p), np.stack([left, right], axis=1), 16000)
    x = read_audio(p)
    assert x.shape == (1000,) and np.allclose(x, 0.125)


def test_short_clip_is_repeat_padded_to_the_crop(pristine, fault_case):
    from bench.config import DataConfig
    from bench.data.audio import read_audio
    from bench.data.corpus import load_corpus
    from bench.data.loader import CropDataset

    fault_case("bad audio").bad_input()
    cfg = DataConfig(corpus="cnceleb", root=str(pristine), crop_seconds=3.0, views=1, view_types=["clean"])
    corpus = load_corpus(cfg)
    ds = CropDataset(corpus, cfg, seed=0, epoch=0)
    x = ds.crop(0, np.random.default_rng(0))
    src = read_audio(corpus.train["path"][0])
    assert len(src) < 48000 and x.shape == (48000,)
    assert np.array_equal(x[: len(src)], src) and np.array_equal(x[len(src) : 2 * len(src)], src)


def test_silence_gives_finite_features_and_embeddings(fault_case):
    from bench.config import load_config, resolve
    from models import build_model

    fault_case("bad audio").bad_input()
    cfg = resolve(load_config(overrides=SETS))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    silence = torch.zeros(2, 8000)
    for train_mode in (True, False):
        model.train(train_mode)
        with torch.no_grad():
            emb = model(silence, None)
        assert torch.isfinite(emb).all(), f"non-finite embedding of silence (train={train_mode})"


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "not-audio", "rate"])
def test_bench_run_stops_on_bad_audio_naming_the_file(corpus_copy, tmp_path, kind, fault_case):
    fault_case("bad audio").bad_input()
    extra: list[str] = []
    if kind == "missing":  # listed in eval/lists/test.lst, gone from disk
        bad = next((corpus_copy / "eval" / "test").glob("*.flac"))
        make_bad(bad, kind)
    else:
        bad = corpus_copy / "data" / "id00001" / "speech-01-002.flac"
        if kind == "rate":
            sf.write(str(bad), np.zeros(4000, dtype=np.float32) + 0.1, 8000)
            extra = ["--set", "data.resample=false"]
        else:
            make_bad(bad, kind)
    res = bench_run(corpus_copy, tmp_path / "runs", *extra)
    assert res.exit_code == 2, res.output
    assert bad.stem in res.output and "Traceback" not in res.output
    if kind == "missing":
        assert "test.lst line" in res.output
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_bench_run_skip_bad_lists_counts_and_goes_on(corpus_copy, tmp_path, fault_case):
    case = fault_case("bad audio")
    data = corpus_copy / "data"
    bad = {
        "missing": next((corpus_copy / "eval" / "test").glob("*.flac")),
        "empty": data / "id00000" / "singing-01-001.flac",
        "truncated": data / "id00001" / "speech-01-002.flac",
        "not-audio": data / "id00002" / "singing-01-003.flac",
    }
    for kind, p in bad.items():
        make_bad(p, kind)
    # odd but usable files: 8 kHz (resampled), stereo, a clip shorter than the crop, digital silence
    sf.write(str(data / "id00003" / "singing-01-001.flac"), np.full(8000, 0.1, np.float32), 8000)
    sf.write(str(data / "id00003" / "speech-01-002.flac"), np.full((16000, 2), 0.1, np.float32), 16000)
    sf.write(str(data / "id00002" / "speech-01-002.flac"), np.full(1600, 0.1, np.float32), 16000)  # data.min_seconds
    sf.write(str(data / "id00000" / "speech-01-002.flac"), np.zeros(16000, np.float32), 16000)
    case.bad_input(len(bad) + 4)
    out = tmp_path / "runs"
    with pytest.warns(UserWarning):
        res = bench_run(corpus_copy, out, "--skip-bad")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["bad_files"] == len(bad) and summary["runs"][0]["action"] == "trained"
    for listing in (out / "e" / "bad_files.txt", run_dir(out) / "bad_files.txt"):
        lines = listing.read_text().splitlines()
        assert sorted(Path(line.split("\t")[0]).stem for line in lines) == sorted(p.stem for p in bad.values())
    metrics = json.loads((run_dir(out) / "metrics.json").read_text())
    assert (
        np.isfinite(metrics["overall"]["eer"])
        and metrics["overall"]["n_target"] + metrics["overall"]["n_nontarget"] == 6
    )  # the 2 trials of the missing test file were dropped
    assert json.loads((run_dir(out) / "run.json").read_text())["status"] == "finished"


def voice(f0: float, n: int, sr: int = 16000) -> np.ndarray:
    """``n`` samples of a harmonic voice on ``f0`` Hz (five harmonics, falling amplitude)."""
    t = np.arange(n) / sr
    return (0.1 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


UNUSABLE = {  # the clips: two voices of 20 ms, 5 ms, one sample, and digital silence
    "voice110-20ms": voice(110, 320),
    "voice310-20ms": voice(310, 320),
    "clip-5ms": voice(110, 80),
    "one-sample": np.full(1, 0.1, np.float32),
}


def test_audio_too_short_to_analyse_stops_bench_run_naming_each_file(corpus_copy, tmp_path, fault_case):
    fault_case("bad audio").bad_input(3)
    data = corpus_copy / "data"
    short = [
        data / "id00000" / "singing-01-001.flac",
        data / "id00001" / "speech-01-002.flac",
        data / "id00002" / "singing-01-003.flac",
    ]
    for p, name in zip(short, ["voice110-20ms", "clip-5ms", "one-sample"]):
        sf.write(str(p), UNUSABLE[name], 16000)
    res = bench_run(corpus_copy, tmp_path / "runs")
    text = res.output.replace("\n", "")
    assert res.exit_code == 2 and "Traceback" not in text, res.output
    assert "3 audio file(s) are shorter than data.min_seconds=0.1 s" in text
    for p, secs in zip(short, ["0.020 s", "0.005 s", "0.000 s"]):
        assert f"{p} ({secs})" in text
    assert not (tmp_path / "runs").exists()


def test_silent_evaluation_audio_stops_bench_run_naming_the_file(corpus_copy, tmp_path, fault_case):
    fault_case("bad audio").bad_input(2)
    silent = sorted((corpus_copy / "eval" / "test").glob("*.flac"))[:2]
    sf.write(str(silent[0]), np.zeros(16000, np.float32), 16000)
    sf.write(str(silent[1]), np.full(16000, 0.25, np.float32), 16000)  # DC only: no signal either
    res = bench_run(corpus_copy, tmp_path / "runs")
    text = res.output.replace("\n", "")
    assert res.exit_code == 2 and "2 audio file(s) are silent" in text and "Traceback" not in text, res.output
    assert all(str(p) in text for p in silent)


def test_skip_bad_lists_short_and_silent_files_drops_their_trials_and_counts_them(corpus_copy, tmp_path, fault_case):
    fault_case("bad audio").bad_input(3)
    short = corpus_copy / "data" / "id00001" / "speech-01-002.flac"
    sf.write(str(short), UNUSABLE["clip-5ms"], 16000)
    enroll = corpus_copy / "eval" / "enroll" / "id00004-enroll.flac"
    sf.write(str(enroll), np.zeros(8000, np.float32), 16000)
    test = sorted((corpus_copy / "eval" / "test").glob("id00005*.flac"))[0]
    sf.write(str(test), UNUSABLE["voice310-20ms"], 16000)
    out = tmp_path / "runs"
    with pytest.warns(UserWarning, match="trials use skipped bad files"):
        res = bench_run(corpus_copy, out, "--skip-bad")
    assert res.exit_code == 0, res.output
    lines = (out / "e" / "bad_files.txt").read_text().splitlines()
    assert sorted(Path(x.split("\t")[0]).name for x in lines) == sorted(p.name for p in (short, enroll, test))
    run = json.loads((run_dir(out) / "run.json").read_text())
    assert run["bad_files"] == {"total": 3, "unreadable": 0, "too_short": 2, "silent": 1}
    metrics = json.loads((run_dir(out) / "metrics.json").read_text())
    # of 8 trials, the 4 of the silent enrolment model and the 2 of the short test file (1 shared) drop out
    scores = (run_dir(out) / "scores.txt").read_text().splitlines()
    assert not any("id00004-enroll" in s or test.stem in s for s in scores)
    assert metrics["overall"]["n_target"] + metrics["overall"]["n_nontarget"] == len(scores) == 3


@pytest.fixture(scope="module")
def trained_run(pristine, tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("trained"), pristine, "data.corpus=cnceleb")


def test_embed_refuses_clips_too_short_to_analyse_naming_each(trained_run, tmp_path, fault_case):
    """The issue's case: these four used to get one identical embedding (pairwise cosine 1.0)."""
    fault_case("bad audio").bad_input(len(UNUSABLE))
    run = trained_run
    for name, x in UNUSABLE.items():
        sf.write(str(tmp_path / f"{name}.flac"), x, 16000)
    sf.write(str(tmp_path / "silent.flac"), np.zeros(16000, np.float32), 16000)
    lst = tmp_path / "clips.lst"
    lst.write_text("".join(f"{n}.flac\n" for n in [*UNUSABLE, "silent"]))
    res = invoke("embed", run, "--list", lst, "--out", tmp_path / "e.npz")
    text = res.output.replace("\n", "")
    assert res.exit_code == 2 and "5 audio file(s) cannot be embedded" in text, res.output
    assert all(f"{n}.flac" in text for n in [*UNUSABLE, "silent"]) and "clips.lst:1" in text
    assert not (tmp_path / "e.npz").exists()
    # the right value: long enough clips of the two voices get different embeddings (the bug gave
    # cosine 1.000000; the barely trained test model keeps every embedding close, hence 0.9999)
    for f0 in (110, 310):
        sf.write(str(tmp_path / f"v{f0}.flac"), voice(f0, 4000), 16000)
    lst.write_text("v110.flac\nv310.flac\n")
    res = invoke("embed", run, "--list", lst, "--out", tmp_path / "e.npz")
    assert res.exit_code == 0, res.output
    e = np.load(tmp_path / "e.npz")["embeddings"]
    assert float(e[0] @ e[1]) < 0.9999


# ------------------------------------------------------------------------------- bad lists and configs


@pytest.mark.parametrize(
    "where, edit, expect",
    [
        ("eval/lists/trials.lst", lambda t: t.replace(" 0\n", " maybe\n", 1), r"trials\.lst:\d+: malformed"),
        (
            "eval/lists/trials.lst",
            lambda t: t + "id00004-enroll test/nobody-x-01-001.wav 1\n",
            r"trials\.lst:9: unknown test utterance 'test/nobody-x-01-001'",
        ),
        ("eval/lists/trials.lst", lambda t: t + "id00004-enroll\n", r"trials\.lst:9: malformed"),
        ("eval/lists/trials.lst", lambda t: t + t.splitlines()[0] + "\n", r"trials\.lst:9: duplicate trial"),
        ("eval/lists/test.lst", lambda t: t + t.splitlines()[0] + "\n", r"test\.lst:5: utterance id .* appears twice"),
        ("eval/lists/enroll.map", lambda t: t + "id00009-enroll\n", r"enroll\.map:3: enroll\.map line needs"),
        ("dev/dev.lst", lambda t: t + "id00077\n", r"dev\.lst:5: speaker folder .*id00077 not found"),
        ("eval/lists/trials.lst", lambda t: "", r"trials\.lst: trial list is empty"),
        ("eval/lists/trials.lst", lambda t: None, r"trials\.lst:1: not UTF-8 text"),
    ],
    ids=["bad-label", "unknown-utt", "short-line", "dup-trial", "dup-utt", "bad-map", "bad-dev", "empty", "binary"],
)
def test_bad_lists_name_file_and_line(corpus_copy, tmp_path, where, edit, expect, fault_case):
    fault_case("bad lists and configs").bad_input()
    p = corpus_copy / where
    new = edit(p.read_text())
    if new is None:
        p.write_bytes(b"\xff\xfe\x00binary")
    else:
        p.write_text(new)
    res = bench_run(corpus_copy, tmp_path / "runs")
    assert res.exit_code == 2, res.output
    import re

    assert re.search(expect, res.output.replace("\n", "")), res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--losses", "aamsupcn"], "did you mean 'aamsupcon'"),
        (["--backbone", "ecapaa"], "did you mean 'ecapa'"),
        (["--set", "optim.lr=-1"], "optim.lr must be > 0"),
        (["--set", "train.epochs=0"], "train.epochs must be >= 1"),
        (["--set", "data.crop_seconds=0"], "data.crop_seconds must be > 0"),
        (["--set", "loss.params.margin=-0.5"], "margin"),
        (["--set", "loss.params.scale=0"], "scale"),
        (["--set", "loss.params.margn=0.2"], "margin"),
        (["--set", "train.epoch=2"], "did you mean 'epochs'"),
        (["--set", "train.amp=fp8"], "train.amp must be none, bf16 or fp16"),
        (["--set", "optim.optimizer=sgdd"], "did you mean 'sgd'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_bad_names_and_hyperparameters_are_refused_before_training(pristine, tmp_path, args, expect, fault_case):
    fault_case("bad lists and configs").bad_input()
    losses = "aam"
    if args[0] == "--losses":
        losses, args = args[1], []
    res = bench_run(pristine, tmp_path / "runs", *args, losses=losses)
    assert res.exit_code in (1, 2), res.output
    assert expect in res.output.replace("\n", "") and "Traceback" not in res.output
    metrics = list((tmp_path / "runs").rglob("metrics.json"))
    assert metrics == []


def test_empty_training_set_and_oversized_batch(corpus_copy, tmp_path, fault_case):
    case = fault_case("bad lists and configs")
    case.bad_input(3)
    res = bench_run(corpus_copy, tmp_path / "r1", "--set", "data.speakers_per_batch=9")
    assert res.exit_code == 1 and "data.speakers_per_batch=9 but the training set has only 4 speakers" in res.output
    assert not (run_dir(tmp_path / "r1") / "metrics.json").exists()
    assert json.loads((run_dir(tmp_path / "r1") / "run.json").read_text())["status"] == "failed"

    for f in (corpus_copy / "data").glob("id0000[0-3]/*.flac"):
        make_bad(f, "not-audio")
    res = bench_run(corpus_copy, tmp_path / "r2", "--skip-bad")
    assert res.exit_code == 2 and "has no training utterances" in res.output, res.output

    (corpus_copy / "dev" / "dev.lst").write_text("# nobody\n")
    res = bench_run(corpus_copy, tmp_path / "r3")
    assert res.exit_code == 2 and "has no training utterances" in res.output, res.output


# ------------------------------------------------------------------------------- disk full, NaN losses


def test_disk_full_leaves_previous_result_files_intact(tmp_path, monkeypatch, fault_case):
    import bench.io
    import bench.scorefile
    import bench.scoring
    from bench.runner.checkpoint import load_checkpoint, save_checkpoint

    case = fault_case("faults")
    metrics, ckpt, scores = tmp_path / "metrics.json", tmp_path / "last.pt", tmp_path / "scores.txt"
    bench.io.atomic_write_json(metrics, {"overall": {"eer": 1.0}})
    save_checkpoint(ckpt, {"model": {"w": torch.ones(3)}, "state": {"global_step": 1}})
    bench.scoring.write_scores(scores, (["a", "b"], ["c", "d"]), [0.5, -0.5], [True, False])
    before = {p: p.read_bytes() for p in (metrics, ckpt, scores)}

    broken = full_disk_after(16)
    monkeypatch.setattr(bench.io, "atomic_open", broken)
    monkeypatch.setattr(bench.scorefile, "atomic_open", broken)  # score files are written there
    writes = [
        lambda: bench.io.atomic_write_json(metrics, {"overall": {"eer": 2.0}, "pad": "x" * 100}),
        lambda: save_checkpoint(ckpt, {"model": {"w": torch.zeros(1000)}, "state": {"global_step": 2}}),
        lambda: bench.scoring.write_scores(scores, (["a"] * 50, ["c"] * 50), np.zeros(50), np.ones(50, bool)),
    ]
    for write in writes:
        case.fault()
        with pytest.raises(OSError) as e:
            write()
        assert e.value.errno == errno.ENOSPC
    for p, b in before.items():
        assert case.intact(p, b), f"{p.name} changed by a failed write"
    assert load_checkpoint(ckpt)["state"]["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.json", "scores.txt"]  # no temp files


def test_failing_writer_counts_bytes():
    import io

    w = FailingWriter(io.BytesIO(), 5)
    assert w.write(b"abc") == 3
    with pytest.raises(OSError):
        w.write(b"defg")
    assert w.fh.getvalue() == b"abcde"


def test_disk_full_while_scoring_fails_the_run_cleanly_and_resume_completes(
    pristine, tmp_path, monkeypatch, fault_case
):
    import bench.scorefile

    case = fault_case("faults")
    case.fault()
    out = tmp_path / "runs"
    monkeypatch.setattr(bench.scorefile, "atomic_open", full_disk_after(40))
    res = bench_run(pristine, out)
    assert res.exit_code != 0
    rd = run_dir(out)
    assert case.intact(rd / "scores.txt", None) and case.intact(rd / "metrics.json", None)
    assert not list(rd.glob(".*.tmp"))
    run = json.loads((rd / "run.json").read_text())
    assert run["status"] == "failed" and "No space left" in run["error"]
    monkeypatch.undo()
    res = bench_run(pristine, out, "--resume")
    assert res.exit_code == 0, res.output
    assert json.loads((rd / "run.json").read_text())["status"] == "finished"
    assert (rd / "scores.txt").read_text().count("\n") == 8


@dataclass
class NanAtConfig:
    steps: list = None  # 0-based training calls whose loss is NaN


def _register_nan_loss() -> str:
    from losses import LOSSES
    from losses.classification import AAMConfig, AAMSoftmaxLoss

    name = "_nan_at"
    if name in LOSSES:
        return name

    @dataclass
    class Cfg(AAMConfig):
        nan_steps: list = None

    @LOSSES.register(name, Cfg, "test-only: aam whose loss is NaN on the listed training calls")
    class NanAt(AAMSoftmaxLoss):
        def __init__(self, cfg, embed_dim, num_classes):
            super().__init__(cfg, embed_dim, num_classes)
            self.calls = 0

        def forward(self, embeddings, labels):
            out = super().forward(embeddings, labels)
            if self.training:
                if self.calls in (self.cfg.nan_steps or []):
                    out.loss = out.loss * float("nan")
                self.calls += 1
            return out

    return name


def test_nan_losses_are_skipped_counted_then_stop_the_run(pristine, tmp_path, fault_case):
    case = fault_case("faults")
    name = _register_nan_loss()
    sets = [*SETS, "train.steps_per_epoch=4", "train.log_every=1"]
    case.fault(1)
    out = tmp_path / "ok"
    res = bench_run(
        pristine, out, "--set", "loss.params.nan_steps=[1]", "--set", "train.max_bad_steps=1", losses=name, sets=sets
    )
    assert res.exit_code == 0, res.output
    epochs = (run_dir(out, name) / "epochs.csv").read_text().splitlines()
    col = epochs[0].split(",").index("bad_steps")  # epochs.csv gained val_mindcf before it
    assert epochs[1].split(",")[col] == "1"
    assert np.isfinite(float(epochs[1].split(",")[1]))  # the mean train loss leaves the NaN step out

    case.fault(2)
    out = tmp_path / "stop"
    res = bench_run(
        pristine, out, "--set", "loss.params.nan_steps=[0,2]", "--set", "train.max_bad_steps=1", losses=name, sets=sets
    )
    assert res.exit_code == 1
    text = res.output.replace("\n", "")
    assert "2 steps had a NaN/inf loss" in text and "train.max_bad_steps=1" in text and "Traceback" not in text
    rd = run_dir(out, name)
    assert json.loads((rd / "run.json").read_text())["status"] == "failed"
    assert case.intact(rd / "metrics.json", None) and case.intact(rd / "scores.txt", None)


# ------------------------------------------------------------------------------- concurrency


def test_a_second_process_on_a_locked_run_is_refused_and_touches_nothing(pristine, tmp_path, fault_case):
    case = fault_case("concurrency")
    case.fault()
    rd = run_dir(tmp_path / "runs")
    rd.mkdir(parents=True)
    (rd / "run.json").write_text('{"status": "running"}\n')
    before = {p.name: p.read_bytes() for p in rd.iterdir()}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('locked', flush=True); "
            "time.sleep(60)",
            str(rd / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = bench_run(pristine, tmp_path / "runs", "--resume")
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1
    assert f"in use by another bench process (pid {holder.pid})" in res.output.replace("\n", "")
    for name, data in before.items():
        assert case.intact(rd / name, data)
    assert sorted(p.name for p in rd.iterdir()) == sorted([*before, ".lock"])


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    import time

    from bench.procs import pid_alive

    end = time.time() + seconds
    while time.time() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_a_forked_child_never_holds_the_run_lock_after_its_parent_is_killed(tmp_path, fault_case):
    """SIGKILL the lock holder while a child it forked lives on: the lock is free at once."""
    import os
    import signal

    from bench.runner.rundir import RunDir

    fault_case("concurrency").fault()
    rd = RunDir(tmp_path / "run")
    code = (
        "import os, signal, sys, time\n"
        "from bench.runner.rundir import RunDir\n"
        "from pathlib import Path\n"
        "with RunDir(Path(sys.argv[1])).lock():\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "    print(child, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    # output to files, not pipes: the orphan would keep a pipe open and make run() wait for it
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as fo, err.open("w") as fe:
        res = subprocess.run([sys.executable, "-c", code, str(rd.path)], stdout=fo, stderr=fe, timeout=60)
    assert res.returncode == -signal.SIGKILL, err.read_text()
    orphan = int(out.read_text().split()[0])
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not a take-over: the orphan must not hold the lock at all
            with rd.lock():  # at once: no waiting for the orphan
                assert rd.lock_file.read_text().strip() == str(os.getpid())
    finally:
        os.kill(orphan, signal.SIGKILL)


def test_loader_workers_die_with_their_parent(tmp_path, fault_case):
    """A DataLoader worker (bench.data.loader's worker_init) is SIGKILLed when the main process dies."""
    import signal

    fault_case("concurrency").fault()
    pid_file = tmp_path / "worker.pid"
    code = (
        "import functools, os, signal, sys, time, torch\n"
        "from bench.data.loader import _worker_init\n"
        "class D(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 100\n"
        "    def __getitem__(self, i):\n"
        "        open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30); return i\n"
        "dl = torch.utils.data.DataLoader(D(), num_workers=1,\n"
        "                                 worker_init_fn=functools.partial(_worker_init, os.getpid()))\n"
        "it = iter(dl)\n"
        "while not os.path.exists(sys.argv[1]) or not open(sys.argv[1]).read(): time.sleep(0.05)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    err = tmp_path / "err"
    with err.open("w") as fe:  # a file, not a pipe the worker would keep open
        res = subprocess.run(
            [sys.executable, "-c", code, str(pid_file)], stdout=subprocess.DEVNULL, stderr=fe, timeout=120
        )
    assert res.returncode == -signal.SIGKILL, err.read_text()
    worker = int(pid_file.read_text())
    alive = not _wait_gone(worker)
    if alive:
        import os

        os.kill(worker, signal.SIGKILL)
    assert not alive, "the loader worker outlived its parent"


def test_a_lock_whose_owner_is_dead_is_taken_over_with_a_note(tmp_path, fault_case):
    from bench.runner.rundir import RunDir

    fault_case("concurrency").fault()
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    holder = subprocess.Popen(  # a process left behind by dead_pid, still holding its lock
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, sys.argv[2].encode()); print('locked', flush=True); "
            "time.sleep(60)",
            str(rd.lock_file),
            str(dead_pid),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.warns(UserWarning, match=rf"taking over the lock of bench process {dead_pid}"):
            with rd.lock():
                import os

                assert rd.lock_file.read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()


def test_sigkill_mid_write_keeps_the_old_file_and_the_run_lock_sweeps_the_orphan(tmp_path, fault_case):
    from bench.runner.rundir import RunDir

    case = fault_case("faults")
    case.fault()
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    rd.metrics.write_text('{"overall": {"eer": 1.0}}\n')
    before = rd.metrics.read_bytes()
    code = (
        "import os, signal, sys; from bench.io import atomic_open\n"
        "with atomic_open(sys.argv[1]) as fh:\n"
        '    fh.write(\'{"overall": {"eer"\'); fh.flush(); os.kill(os.getpid(), signal.SIGKILL)\n'
    )
    res = subprocess.run([sys.executable, "-c", code, str(rd.metrics)], capture_output=True)
    assert res.returncode == -9
    assert case.intact(rd.metrics, before)
    assert len(list(rd.path.glob(".metrics.json.*.tmp"))) == 1  # the killed writer's temp file
    with rd.lock():
        assert not list(rd.path.glob(".*.tmp"))
    assert case.intact(rd.metrics, before)
