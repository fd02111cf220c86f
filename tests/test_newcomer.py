"""A fresh machine and a newcomer's first commands (issue 17): locked installs, --version, the
embedded corpus made on first use, preset parameters per loss, progress labels, skip rules, help
text that keeps its brackets, threads, PostgreSQL storage URLs."""

from __future__ import annotations

import importlib
import io
import re
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config, preset_names, to_dict, to_toml
from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json
from bench.runner.rundir import RunDir, decide

ROOT = Path(__file__).resolve().parents[1]
# distribution name -> module imported for it, where the two differ
MODULE_OF = {
    "espeakng-loader": "espeakng_loader",
    "scikit-learn": "sklearn",
    "pytorch-metric-learning": "pytorch_metric_learning",
}


def _requirement_names(reqs: list[str]) -> list[str]:
    names = []
    for r in reqs:
        if ";" in r and "x86_64" in r and __import__("platform").machine() != "x86_64":
            continue
        names.append(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0])
    return names


def test_every_runtime_dependency_imports_and_torchaudio_compiled_ops_run():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name in _requirement_names(project["dependencies"]):
        importlib.import_module(MODULE_OF.get(name, name.replace("-", "_")))
    from torchaudio.compliance import kaldi
    from torchaudio.functional import lfilter

    wave = torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000).unsqueeze(0)
    feats = kaldi.fbank(wave, num_mel_bins=80, sample_frequency=16000)
    assert feats.shape == (98, 80) and torch.isfinite(feats).all()
    # the energy of a 440 Hz tone sits in the low mel bins, not the top ones
    assert feats[:, :20].mean() > feats[:, -20:].mean() + 5
    # lfilter runs the C++ kernel of libtorchaudio: a one-pole filter equals its recursion
    x = torch.randn(1, 64, dtype=torch.float64)
    y = lfilter(
        x, torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64), clamp=False
    )
    ref = np.zeros(64)
    for i in range(64):
        ref[i] = x[0, i].item() + (0.5 * ref[i - 1] if i else 0.0)
    np.testing.assert_allclose(y[0].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_lock_pins_torch_and_torchaudio_as_one_release_and_installed_versions_match():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pinned = {p["name"]: p["version"] for p in lock["package"]}
    assert pinned["torch"] == pinned["torchaudio"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch=={pinned['torch']}" in [d.split("#")[0].strip() for d in deps]
    assert f"torchaudio=={pinned['torchaudio']}" in [d.split("#")[0].strip() for d in deps]
    assert metadata.version("torch").split("+")[0] == pinned["torch"]
    assert metadata.version("torchaudio").split("+")[0] == pinned["torchaudio"]


def test_a_torch_torchaudio_mismatch_is_one_line_with_the_fix(monkeypatch):
    from bench import versions

    real = metadata.version
    monkeypatch.setattr(versions.metadata, "version", lambda d: "2.11.1" if d == "torchaudio" else real(d))
    with pytest.raises(
        BenchError, match=r"torch .* and torchaudio 2\.11\.1 are not a matching pair.*scripts/setup\.sh"
    ):
        versions.check_torch_pair()
    res = CliRunner().invoke(app, ["list", "losses"])
    assert res.exit_code == 2
    assert "not a matching pair" in res.output and "Traceback" not in res.output


def test_version_names_bench_torch_torchaudio_cuda_numpy():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    for part in (
        "bench 0.",
        f"torch {torch.__version__.split('+')[0]}",
        "torchaudio ",
        "CUDA ",
        f"numpy {np.__version__}",
    ):
        assert part in res.output


# ------------------------------------------------------------------------------------------------
# the embedded corpus on first use; a missing real corpus
# ------------------------------------------------------------------------------------------------


def test_missing_synthetic_corpus_is_generated_once_and_then_reused(tmp_path, monkeypatch):
    import bench.synth
    from bench.config import DataConfig
    from bench.data.prepare import prepare_corpus

    calls = []

    def fake_generate(cfg, out, workers=1, progress=None):
        calls.append((cfg, Path(out)))
        Path(out).mkdir(parents=True)
        (Path(out) / "corpus.json").write_text("{}")
        if progress:
            progress(1, 1)

    monkeypatch.setattr(bench.synth, "generate", fake_generate)
    data = DataConfig(corpus="synthetic", root=str(tmp_path / "synth"))
    assert prepare_corpus(data, quiet=False) == "generated"
    assert prepare_corpus(data, quiet=True) == "reused"
    assert len(calls) == 1 and calls[0][1] == tmp_path / "synth"


def test_missing_real_corpus_names_the_folder_and_the_kind_dir_form(tmp_path):
    res = CliRunner().invoke(
        app, ["run", "--losses", "aam", "--set", "data.corpus=cnceleb", "--set", f'data.root="{tmp_path}/nope"']
    )
    assert res.exit_code == 2
    assert f"{tmp_path}/nope" in res.output and "--corpus cnceleb:DIR" in res.output
    assert "Traceback" not in res.output


# ------------------------------------------------------------------------------------------------
# preset loss.params apply to the losses that have them; the user's own keys are strict
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", preset_names())
def test_every_loss_runs_under_every_preset(preset):
    from bench.runner.experiment import run_config
    from losses import LOSSES

    cfg = load_config(preset=preset)
    for name in LOSSES.names():
        one = run_config(cfg, name, 0, [name])
        known = {p[0] for p in LOSSES.get(name).parameters()}
        want = {**cfg.loss.params, **cfg.loss.per_loss.get(name, {})}  # per-loss values over shared ones
        for key, value in want.items():
            if key in known:
                assert one.loss.params[key] == value  # the preset's value reached the loss that has it
        assert one.loss.set_params == []


def test_user_set_key_that_fits_no_loss_is_an_error_with_the_closest_name():
    from bench.runner.experiment import run_config

    cfg = load_config(preset="demo", overrides=["loss.params.temprature=0.1"])
    with pytest.raises(BenchError, match="temprature.*temperature"):
        run_config(cfg, "supcon", 0, ["supcon"])
    cfg = load_config(preset="demo", overrides=["loss.params.margin=0.3"])
    with pytest.raises(BenchError, match="margin"):
        run_config(cfg, "supcon", 0, ["supcon"])  # the user asked for a margin that no chosen loss has
    one = run_config(cfg, "aam", 0, ["supcon", "aam"])
    assert one.loss.params["margin"] == 0.3  # the user's --set wins over the preset's [loss.per_loss.aam]


def test_typo_in_a_config_file_is_still_an_error(tmp_path):
    from bench.runner.experiment import run_config

    f = tmp_path / "c.toml"
    f.write_text("[loss.params]\nmargn = 0.2\n")
    with pytest.raises(BenchError, match="margn"):
        run_config(load_config(file=f), "aam", 0, ["aam"])


def test_cli_supcon_with_the_demo_preset_resolves():
    res = CliRunner().invoke(app, ["run", "--preset", "demo", "--losses", "supcon,softmax", "--print-config"])
    assert res.exit_code == 0, res.output
    assert "scale" not in res.output.split("# loss: softmax")[0].split("[loss.params]")[1].split("[")[0]


# ------------------------------------------------------------------------------------------------
# progress: labels per run, plain lines when not on a terminal
# ------------------------------------------------------------------------------------------------


def test_reporter_labels_bars_by_loss_and_seed_and_prints_plain_lines_off_a_terminal():
    from bench.runner.progress import RichReporter

    buf = io.StringIO()
    rep = RichReporter(console=Console(file=buf, force_terminal=False, width=200), label="demo")
    for loss in ("aam", "supcon"):
        rep.start_run(loss, 1)
        rep.start_epoch(0, 3, 5, 0)
        rep.step({"loss": 1.0, "accuracy": 0.5, "lr": 0.01, "samples_per_s": 100.0})
        rep.end_epoch(
            {"train_loss": 1.25, "train_acc": 0.5 if loss == "aam" else None, "val_eer": 12.5, "samples_per_s": 321.0}
        )
    rep.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "experiment demo"
    assert lines[1] == "aam seed1 epoch 1/3: loss 1.250 acc 0.500 val EER 12.50% 321 utt/s"
    assert lines[2] == "supcon seed1 epoch 1/3: loss 1.250 val EER 12.50% 321 utt/s"


# ------------------------------------------------------------------------------------------------
# skip only the same config; failed-before-first-step reruns; reports regenerate themselves
# ------------------------------------------------------------------------------------------------


def _finished_run(rd: RunDir, cfg) -> None:
    rd.path.mkdir(parents=True, exist_ok=True)
    atomic_write(rd.config, to_toml(to_dict(cfg)))
    atomic_write_json(rd.metrics, {"overall": {"eer": 10.0}})
    rd.scores.write_text("a b 0.5 1\n")
    rd.update_run_json(status="finished")


def test_finished_run_is_skipped_only_with_the_same_config(tmp_path):
    from bench.runner.experiment import _check_same_config, run_config

    base = load_config(preset="demo")
    cfg = run_config(base, "aam", 0, ["aam"])
    rd = RunDir(tmp_path / "aam" / "seed0")
    _finished_run(rd, cfg)
    assert decide(rd, force=False, resume=False) == "skip"
    _check_same_config(cfg, rd, "skip")  # same config: fine
    workers = run_config(load_config(preset="demo", overrides=["data.workers=3"]), "aam", 0, ["aam"])
    _check_same_config(workers, rd, "skip")  # execution settings do not change results
    other = run_config(load_config(preset="demo", overrides=["train.epochs=2"]), "aam", 0, ["aam"])
    with pytest.raises(BenchError) as e:
        _check_same_config(other, rd, "skip")
    msg = str(e.value)
    assert "train.epochs" in msg and "--force" in msg and "--experiment" in msg and "-> 2" in msg


def test_run_that_failed_before_its_first_checkpoint_reruns_without_force(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.path.mkdir(parents=True)
    rd.update_run_json(status="failed", error="musan folder missing")
    assert decide(rd, force=False, resume=False) == "fresh"
    rd.checkpoints.mkdir()
    rd.last.write_bytes(b"x")  # trained steps exist: never thrown away silently
    with pytest.raises(BenchError, match="--resume"):
        decide(rd, force=False, resume=False)
    assert decide(rd, force=False, resume=True) == "resume"


def test_report_regenerates_its_own_report_but_keeps_another(tmp_path):
    from reports.build import MARKER, check_out_dir, report_inputs

    out = tmp_path / "rep"
    out.mkdir()
    mine = report_inputs([tmp_path / "runs" / "demo"])
    atomic_write_json(out / MARKER, {"inputs": mine})
    check_out_dir(out, force=False, inputs=mine)
    with pytest.raises(BenchError, match="another|other runs"):
        check_out_dir(out, force=False, inputs=report_inputs([tmp_path / "runs" / "other"]))
    check_out_dir(out, force=True, inputs=report_inputs([tmp_path / "runs" / "other"]))


def test_demo_owns_a_report_of_some_of_its_runs_only(tmp_path):
    from reports.build import MARKER, is_report_within, report_inputs

    out, demo = tmp_path / "rep", tmp_path / "runs" / "demo"
    assert not is_report_within(out, demo)  # no report yet
    out.mkdir()
    assert not is_report_within(out, demo)  # a folder without a report
    atomic_write_json(out / MARKER, {"inputs": report_inputs([demo / "softmax" / "seed0"])})
    assert is_report_within(out, demo)
    atomic_write_json(out / MARKER, {"inputs": report_inputs([demo / "aam", tmp_path / "runs" / "demo2"])})
    assert not is_report_within(out, demo)  # "demo2" is a sibling, not inside
    atomic_write_json(out / MARKER, {"inputs": []})
    assert not is_report_within(out, demo)


# ------------------------------------------------------------------------------------------------
# help and errors keep their brackets; flags are plain; examples present
# ------------------------------------------------------------------------------------------------


def _commands():
    import typer.main

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return out, root


def test_every_help_page_keeps_brackets_and_shows_flags_plainly():
    paths, root = _commands()
    assert len(paths) > 10
    for path in paths:
        res = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, path
        # every bracket of the command's own help texts reaches the screen
        cmd = root
        for p in path:
            cmd = cmd.commands[p]
        texts = [cmd.help or ""] + [getattr(p, "help", "") or "" for p in cmd.params]
        for t in texts:
            for bracketed in re.findall(r"\[[^\]\n]*\]", t):
                assert bracketed in res.output.replace("\n", " ") or bracketed.startswith("[default"), (path, bracketed)
    score = CliRunner().invoke(app, ["score", "--help"], terminal_width=200).output
    assert "'enroll test score [label]'" in score


@pytest.mark.parametrize("command", [["run"], ["report"], ["tune"], ["score"]])
def test_main_commands_show_examples(command):
    res = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert "Examples:" in res.output and f"bench {command[0]} " in res.output


def test_a_bracketed_error_message_renders_its_brackets(tmp_path):
    trials = tmp_path / "t.lst"
    trials.write_text("a b 1\n")
    scores = tmp_path / "s.txt"
    scores.write_text("justone\n")
    res = CliRunner().invoke(app, ["score", "-t", str(trials), "-s", str(scores)])
    assert res.exit_code == 2
    assert "[" in res.output and "]" in res.output, res.output
    from bench.commands.common import err_console

    with err_console.capture() as cap:
        err_console.print("expected 'enroll test score [label]'")
    assert "[label]" in cap.get()


def test_json_flag_is_a_plain_flag():
    res = CliRunner().invoke(app, ["list", "losses", "--json"])
    assert res.exit_code == 0 and res.output.lstrip().startswith(("[", "{"))


# ------------------------------------------------------------------------------------------------
# threads and PostgreSQL storage
# ------------------------------------------------------------------------------------------------


def test_thread_plan_splits_the_cpus_between_main_process_and_workers(tmp_path):
    from bench.threads import cgroup_cpu_limit, plan

    assert plan(workers=1, cpus=2) == 1
    assert plan(workers=0, cpus=2) == 2
    assert plan(workers=4, cpus=2) == 1
    assert plan(workers=2, cpus=16, local_ranks=4) == 2
    assert plan(workers=2, threads=5, cpus=16) == 5
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None


def test_configure_sets_torch_threads():
    from bench.threads import configure

    before = torch.get_num_threads()
    try:
        assert configure(workers=0, threads=1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_plain_postgresql_url_uses_an_installed_driver():
    import sqlalchemy

    engine = sqlalchemy.create_engine("postgresql://user@localhost/db")  # no connection is made
    importlib.import_module(engine.dialect.driver)  # the default driver of the URL as written is installed


def test_an_exported_omp_num_threads_is_kept_outside_torchrun(monkeypatch):
    from bench.threads import configure

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure(workers=0) == 1
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # under torchrun its own OMP_NUM_THREADS=1 is not a choice
        assert configure(workers=0, threads=None) == max(1, __import__("bench.threads").threads.available_cpus())
    finally:
        torch.set_num_threads(before)


def test_an_output_path_that_is_a_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "t.lst").write_text("a x 1\na y 0\nb x 0\nb y 1\n")
    (tmp_path / "s.txt").write_text("a x 0.9\na y 0.1\nb x 0.2\nb y 0.8\n")
    (tmp_path / "folder").mkdir()
    res = CliRunner().invoke(
        app, ["score", "-t", str(tmp_path / "t.lst"), "-s", str(tmp_path / "s.txt"), "-o", str(tmp_path / "folder")]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "folder" in res.output and "directory" in res.output.lower()


def test_skipping_bad_audio_never_excuses_an_unknown_trial_id(tmp_path):
    import soundfile

    from bench.config import DataConfig
    from bench.data.corpus import load_corpus
    from bench.data.fixtures import write_cnceleb1

    root = write_cnceleb1(tmp_path / "c", train_speakers=3, eval_speakers=2, test_utts=2)
    lists = root / "eval" / "lists"
    soundfile.write(root / "eval" / "test" / "id99999-short.flac", np.ones(160, np.float32) * 0.1, 16000)
    (lists / "test.lst").write_text((lists / "test.lst").read_text() + "test/id99999-short.wav\n")
    first_enroll = (lists / "trials.lst").read_text().split()[0]
    trials = (lists / "trials.lst").read_text()
    (lists / "trials.lst").write_text(
        trials + f"{first_enroll} test/id99999-short.wav 0\n{first_enroll} test/nowhere.wav 0\n"
    )
    with pytest.raises(BenchError, match="unknown test utterance 'test/nowhere'"):
        load_corpus(DataConfig(corpus="cnceleb", root=str(root), skip_bad=True))


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "--losses", "aam", "--corpus", "cnceleb:/nonexistent/cn"], "looked for /nonexistent/cn"),
        (["run", "--losses", "aam", "--seeds", "-1"], "integers >= 0"),
        (["demo", "--losses", "aam", "--seeds", "-1"], "integers >= 0"),
    ],
)
def test_more_bad_command_lines_are_one_line_errors(args, expect):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and expect in res.output and "Traceback" not in res.output, res.output


def test_out_that_is_a_file_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be generated here: the check comes first
    afile = tmp_path / "afile"
    afile.write_text("x")
    for cmd in (["run", "--losses", "aam"], ["demo", "--losses", "aam"], ["tune", "--loss", "aam"]):
        res = CliRunner().invoke(app, [*cmd, "--out", str(afile), "--set", "train.epochs=1"])
        assert res.exit_code == 2 and "Not a directory" in res.output and "Traceback" not in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
