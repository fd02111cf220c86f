"""Tests of the synthetic corpus generator (`bench data synth`).

One tiny corpus is generated per module (3 training speakers, 1-1.5 s utterances) and checked
against the CN-Celeb1 layout, list formats, determinism, resume and no-op re-runs.  The demo
preset's baseline EER check is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.errors import BenchError

pytest.importorskip("espeakng_loader")

TINY = dict(speakers=3, utts=3, min_seconds=1.0, max_seconds=1.5)
UTT_RE = re.compile(r"^[a-z_]+-\d{2}-\d{3}$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.synth import generate, make_config

    cfg = make_config("demo", **TINY)
    out = tmp_path_factory.mktemp("synth") / "tiny"
    manifest = generate(cfg, out, workers=2)
    return cfg, out, manifest


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def _flac(root: Path, rel: str) -> Path:
    assert rel.endswith(".wav"), rel
    return root / (rel[:-4] + ".flac")


def test_layout_and_lists(tiny):
    cfg, out, manifest = tiny
    n_train_val = cfg.train_speakers + cfg.val_speakers
    train_ids = [f"id{i:05d}" for i in range(cfg.train_speakers)]
    val_ids = [f"id{i:05d}" for i in range(cfg.train_speakers, n_train_val)]
    eval_ids = [f"id{i:05d}" for i in range(n_train_val, n_train_val + cfg.eval_speakers)]

    assert (out / "dev" / "dev.lst").read_text().split() == train_ids
    for spk in train_ids + val_ids:
        files = sorted((out / "data" / spk).glob("*.flac"))
        assert len(files) == cfg.utts
        assert all(UTT_RE.match(f.stem) for f in files)

    lists = out / "eval" / "lists"
    enroll = _lines(lists / "enroll.lst")
    assert enroll == [[f"{s}-enroll", f"enroll/{s}-enroll.wav"] for s in eval_ids]
    enroll_map = {row[0]: row[1:] for row in _lines(lists / "enroll.map")}
    assert sorted(enroll_map) == [f"{s}-enroll" for s in eval_ids]
    for model, parts in enroll_map.items():
        spk = model.removesuffix("-enroll")
        assert len(parts) == cfg.enroll_utts
        assert all(p.startswith(spk + "/") and _flac(out / "data", p).exists() for p in parts)
        # The enrolment file is exactly the concatenation of its parts.
        whole = sf.read(_flac(out / "eval", f"enroll/{model}.wav"), dtype="int16")[0]
        joined = np.concatenate([sf.read(_flac(out / "data", p), dtype="int16")[0] for p in parts])
        assert np.array_equal(whole, joined)

    tests = [row[0] for row in _lines(lists / "test.lst")]
    assert len(tests) == cfg.eval_speakers * cfg.test_utts
    pattern = re.compile(r"^test/(id\d{5})-([a-z_]+-\d{2}-\d{3})\.wav$")
    assert all(pattern.match(t) and _flac(out / "eval", t).exists() for t in tests)
    assert {pattern.match(t).group(1) for t in tests} == set(eval_ids)

    # Trials: every enrolment model against every test utterance, target iff same speaker.
    trials = _lines(lists / "trials.lst")
    expected = {(f"{e}-enroll", t, "1" if t.startswith(f"test/{e}-") else "0") for e in eval_ids for t in tests}
    assert len(trials) == len(expected) and {tuple(r) for r in trials} == expected

    # Enrolment and test come from different sessions (channel mismatch as in CN-Celeb).
    for model, parts in enroll_map.items():
        spk = model.removesuffix("-enroll")
        sessions = {p.split("/")[1].rsplit("-", 1)[0] for p in parts}
        test_sessions = {t.split("-", 1)[1].rsplit("-", 1)[0] for t in tests if t.startswith(f"test/{spk}-")}
        assert len(sessions) == 1 and not sessions & test_sessions

    # Validation trials: held-out speakers only, labels consistent with speaker ids.
    val = _lines(out / "dev" / "val_trials.lst")
    assert val and all(len(r) == 3 for r in val)
    for a, b, lab in val:
        sa, sb = a.split("/")[0], b.split("/")[0]
        assert sa in val_ids and sb in val_ids and a != b
        assert lab == ("1" if sa == sb else "0")
        assert _flac(out / "data", a).exists()
    n_val_utts = cfg.val_speakers * cfg.utts
    assert sum(r[2] == "1" for r in val) == cfg.val_speakers * cfg.utts * (cfg.utts - 1) // 2
    assert len({(a, b) for a, b, _ in val}) == len(val) <= n_val_utts * (n_val_utts - 1) // 2

    # Banks.
    for kind, n in (("noise", cfg.noise_files), ("music", cfg.music_files), ("speech", cfg.speech_files)):
        assert len(list((out / "musan" / kind).glob("*.flac"))) == n
    rirs = list((out / "rirs" / "simulated_rirs").glob("*/*.flac"))
    assert len(rirs) == manifest["counts"]["rirs"] == 3 * cfg.rir_rooms * cfg.rirs_per_room

    saved = json.loads((out / "corpus.json").read_text())
    assert saved["params"]["train_speakers"] == cfg.train_speakers and saved["seed"] == cfg.seed
    assert not (out / ".synth-params.json").exists()


def test_audio_format_and_durations(tiny):
    cfg, out, _ = tiny
    for path in sorted((out / "data").glob("*/*.flac"))[:10] + sorted((out / "eval" / "test").glob("*.flac"))[:5]:
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert cfg.min_seconds - 0.01 <= info.duration <= cfg.max_seconds + 0.01
        x = sf.read(path, dtype="float32")[0]
        assert np.sqrt(np.mean(x**2)) > 1e-3  # not silent


def test_cnceleb_loader_reads_it(tiny):
    cfg, out, _ = tiny
    corpus_mod = pytest.importorskip("bench.data.corpus")
    from bench.config import DataConfig

    c = corpus_mod.load_corpus(DataConfig(corpus="synthetic", root=str(out)))
    assert c.speakers == [f"id{i:05d}" for i in range(cfg.train_speakers)]
    assert len(c.train) == cfg.train_speakers * cfg.utts
    assert len(c.test) == cfg.eval_speakers * cfg.test_utts
    assert len(c.trials.labels) == cfg.eval_speakers**2 * cfg.test_utts
    assert int(np.sum(c.trials.labels)) == cfg.eval_speakers * cfg.test_utts
    assert set(c.val["speaker"]).isdisjoint(c.speakers)


def test_rerun_is_noop_and_other_params_refused(tiny):
    from bench.synth import generate, make_config

    cfg, out, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = generate(cfg, out, workers=1)
    assert again["reused"] is True
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(BenchError, match="different parameters"):
        generate(make_config("demo", **{**TINY, "seed": 1}), out, workers=1)


def test_resume_recreates_identical_files(tiny, tmp_path):
    """Delete some outputs and the manifest: a single-process re-run must rebuild exactly the same
    bytes as the two-worker original (determinism across worker counts and task order)."""
    from bench.synth import generate

    cfg, out, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victims = [
        sorted((copy / "data").glob("id00001/*.flac"))[0],
        sorted((copy / "eval" / "test").glob("*.flac"))[-1],
        sorted((copy / "eval" / "enroll").glob("*.flac"))[0],
        sorted((copy / "musan" / "speech").glob("*.flac"))[0],
        sorted((copy / "rirs" / "simulated_rirs").glob("*/*.flac"))[0],
        copy / "eval" / "lists" / "trials.lst",
    ]
    for v in victims:
        v.unlink()
    (copy / "corpus.json").unlink()
    # What an interrupted run leaves behind: the pending-parameters marker.
    from bench.io import atomic_write_json
    from bench.synth.corpus import manifest_params

    atomic_write_json(copy / ".synth-params.json", manifest_params(cfg))
    kept = sorted((copy / "data").glob("id00000/*.flac"))[0]
    kept_mtime = kept.stat().st_mtime_ns
    result = generate(cfg, copy, workers=1)
    assert result["reused"] is False
    for v in victims:
        original = out / v.relative_to(copy)
        assert v.read_bytes() == original.read_bytes(), v
    assert kept.stat().st_mtime_ns == kept_mtime


def test_seed_changes_audio(tiny):
    """A different seed gives a different speaker for the same id (so the equality above can fail)."""
    from bench.synth import make_config
    from bench.synth.corpus import SpeakerWriter, plan_speaker

    cfg, out, _ = tiny
    other = make_config("demo", **{**TINY, "seed": 7})
    sp = plan_speaker(other, 0, "train")
    x = SpeakerWriter(other, out, sp).render(sp.utts[0])
    y = sf.read(out / "data" / "id00000" / f"{plan_speaker(cfg, 0, 'train').utts[0].name}.flac", dtype="int16")[0]
    assert x.shape != y.shape or not np.array_equal(x, y)


def test_refuses_foreign_folder(tmp_path):
    from bench.synth import generate, make_config

    (tmp_path / "something.txt").write_text("not a corpus")
    with pytest.raises(BenchError, match="not empty"):
        generate(make_config("demo", **TINY), tmp_path)


def test_config_validation():
    from bench.synth import make_config

    with pytest.raises(BenchError, match="min-seconds"):
        make_config("demo", min_seconds=4.0, max_seconds=3.0)
    with pytest.raises(BenchError, match="unknown preset"):
        make_config("huge")
    assert make_config("full").train_speakers >= 1000


def test_missing_espeak_says_what_to_install(monkeypatch):
    import builtins
    import ctypes.util

    from bench.synth import espeak

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "espeakng_loader":
            raise ImportError("no module")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(BenchError, match="pip install espeakng-loader.*libespeak-ng1"):
        espeak.locate_espeak()


def test_text_uses_only_word_list():
    from bench.synth.text import passage, word_classes

    vocab = {w.lower() for words in word_classes().values() for phrase in words for w in phrase.split()}
    rng = np.random.default_rng(0)
    text = passage(rng, 40)
    words = re.findall(r"[A-Za-z_]+", text)
    assert len(words) >= 40
    template_words = {"the", "did", "were", "and", "a", "please", "was", "we", "will", "my", "is", "why"}
    assert {w.lower() for w in words} <= vocab | template_words


def _brute_force_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER by the threshold sweep: the point where the two error rates are closest."""
    best = (2.0, 0.0)
    for t in np.unique(scores):
        far = np.mean(scores[~labels] >= t)
        frr = np.mean(scores[labels] < t)
        best = min(best, (abs(far - frr), (far + frr) / 2))
    return 100 * best[1]


def _brute_force_rocch_eer(scores: np.ndarray, labels: np.ndarray, grid: int = 4001) -> float:
    """ROCCH EER from its definition: the largest, over priors, of the minimum Bayes error rate."""
    ts = np.concatenate([np.unique(scores), [np.inf]])
    far = (scores[~labels][None, :] >= ts[:, None]).mean(1)
    frr = (scores[labels][None, :] < ts[:, None]).mean(1)
    priors = np.linspace(0, 1, grid)[:, None]
    return 100 * float((priors * frr[None, :] + (1 - priors) * far[None, :]).min(1).max())


def test_private_eer_matches_brute_force():
    from bench.synth.baseline import _eer_percent

    rng = np.random.default_rng(3)
    labels = rng.random(600) < 0.2
    scores = rng.normal(size=600) + 1.2 * labels
    assert _eer_percent(scores, labels) == pytest.approx(_brute_force_eer(scores, labels), abs=1.0)


def test_cli_json_reuses_corpus(tiny):
    from typer.testing import CliRunner

    from bench.cli import app

    cfg, out, _ = tiny
    args = [
        "data",
        "synth",
        "--out",
        str(out),
        "--speakers",
        "3",
        "--utts",
        "3",
        "--min-seconds",
        "1",
        "--max-seconds",
        "1.5",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{") :])
    assert data["reused"] is True and data["counts"]["train"] == 3
    bad = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--min-seconds", "9", "--max-seconds", "2"])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_demo_preset_baseline_is_neither_trivial_nor_impossible(tmp_path):
    from bench.synth import generate, make_config, run_baseline

    out = tmp_path / "demo"
    generate(make_config("demo"), out, workers=min(2, os.cpu_count() or 1))
    result = run_baseline(out, return_scores=True)
    # the reported EER is bench.metrics' ROCCH convention; the reference is computed from its definition
    eer = _brute_force_rocch_eer(result["scores"], result["labels"])
    assert 5.0 < eer < 40.0
    assert result["eer"] == pytest.approx(eer, abs=0.05)


# ---------------------------------------------------------------- speakers that transfer


def test_transfer_options_leave_the_default_voice_traits_alone():
    """World languages and glottal sources are drawn after every default trait."""
    from bench.synth.voices import sample_voice

    for seed in range(20):
        plain = sample_voice(np.random.default_rng(seed))
        wide = sample_voice(np.random.default_rng(seed), languages="world", glottal=True)
        assert (plain.pitch_base, plain.tract, plain.formant_freq, plain.rate) == (
            wide.pitch_base, wide.tract, wide.formant_freq, wide.rate)  # fmt: skip
        assert plain.klatt == 0 and plain.tone == ()
    langs = {sample_voice(np.random.default_rng(s), languages="world").language for s in range(200)}
    assert len(langs) >= 20 and {"ru", "ar", "ml", "es", "fr", "it"} <= langs


def test_glottal_voices_write_klatt_and_tone_into_the_variant():
    from bench.synth.voices import sample_voice, utterance_params

    voices = [sample_voice(np.random.default_rng(s), glottal=True) for s in range(40)]
    assert len({v.klatt for v in voices}) >= 4
    v = next(v for v in voices if v.klatt)
    text = utterance_params(v, np.random.default_rng(0)).variant
    assert f"klatt {v.klatt}\n" in text
    tone = next(line for line in text.splitlines() if line.startswith("tone "))
    assert [int(t) for t in tone.split()[1::2]] == [600, 1200, 2000, 3000]
    assert "klatt" not in utterance_params(sample_voice(np.random.default_rng(0)), np.random.default_rng(0)).variant


def test_items_are_letters_syllables_and_numbers():
    from bench.synth.text import CONSONANTS, VOWELS, items

    toks = items(np.random.default_rng(0), 300).rstrip(".").split(", ")
    assert len(toks) == 300
    for t in toks:
        assert (t.isdigit() and 0 <= int(t) < 100) or (len(t) == 1 and t.isalpha()) or (
            t[0] in CONSONANTS and t[1] in VOWELS and len(t) in (2, 3))  # fmt: skip
    kinds = {"digit" if t.isdigit() else "letter" if len(t) == 1 else "syllable" for t in toks}
    assert kinds == {"digit", "letter", "syllable"}


def test_telephone_sessions_are_narrowband_and_coded():
    from bench.synth.channels import TELEPHONE_CODECS, NoiseContext, apply_channel, make_channel

    # telephone=0 draws the original channel; telephone=1 the same one, then the phone path
    a = make_channel("interview", np.random.default_rng(3))
    b = make_channel("interview", np.random.default_rng(3), telephone=1.0)
    assert a.codec == "" and b.codec in TELEPHONE_CODECS and b.noise == a.noise
    assert b.band[0] >= 300 and b.band[1] <= 3400
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (0.1 * sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 40))).astype(np.float32)
    for codec in TELEPHONE_CODECS:
        ch = make_channel("recitation", np.random.default_rng(1), telephone=1.0)
        ch.noise, ch.rir, ch.codec = "none", None, codec
        y = apply_channel(x, ch, rng, NoiseContext())
        spec = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(len(y), 1 / 16000)
        assert spec[f > 4100].sum() < 1e-3 * spec.sum(), codec  # the wideband input: ~1e-2
        assert np.isfinite(y).all() and np.abs(y).max() <= 0.98 + 1e-6


def test_transfer_corpus_manifest_and_default_manifest_compatibility(tiny, tmp_path):
    from bench.synth import generate, make_config
    from bench.synth.corpus import manifest_params

    cfg, _, manifest = tiny
    assert "languages" not in manifest["params"] and "telephone" not in manifest["params"]
    tr = make_config("transfer", speakers=2, utts=2, min_seconds=0.8, max_seconds=1.0)
    assert (tr.languages, tr.glottal) == ("world", True) and tr.telephone > 0 and tr.prosody > 0
    assert manifest_params(tr)["languages"] == "world"
    out = generate(tr, tmp_path / "tr", workers=1)
    assert out["params"]["telephone"] == tr.telephone
    files = sorted((tmp_path / "tr" / "data").rglob("*.flac"))
    assert files and all(np.isfinite(sf.read(f)[0]).all() for f in files)
    with pytest.raises(BenchError, match="languages"):
        make_config("demo", languages="klingon")


def test_espeak_overlay_folders_are_removed_by_every_process(tmp_path):
    """Each process (the parent and every pool worker) builds its own eSpeak data overlay in the
    temp folder; none may outlive its process (they once piled up by the hundred in /tmp)."""
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = (
        "from bench.synth import generate, make_config\n"
        "from bench.synth.espeak import engine\n"
        "engine().synth('ba', 'en', 'name x\\n', 170, 50, 50)\n"
        f"generate(make_config('demo', speakers=2, utts=2, min_seconds=1.0, max_seconds=1.2), "
        f"__import__('pathlib').Path({str(tmp_path / 'c')!r}), workers=2)\n"
        "import glob, tempfile; print(len(glob.glob(tempfile.gettempdir() + '/bench-espeak-*')))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) >= 1  # the parent's engine exists while it runs
    assert list(tmp.glob("bench-espeak-*")) == []


def test_overlays_left_by_a_killed_engine_are_swept_by_the_next_one(tmp_path):
    """A process killed with SIGKILL cannot remove its overlay; the next engine removes the overlays
    whose owner lock is free, and only those: a live engine's stays even when its name carries a pid
    that does not exist here (another PID namespace sharing the temp folder), and so does a folder
    without an owner lock; a stray name (a huge or non-ASCII "pid") is no error."""
    import signal
    import subprocess
    import sys

    from bench.synth.espeak import sweep_stale_overlays

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = "from bench.synth.espeak import engine; engine(); print('up', flush=True); input()"
    env = {**os.environ, "TMPDIR": str(tmp)}

    def start():
        p = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        return p

    killed = start()
    left = list(tmp.glob("bench-espeak-*"))
    assert len(left) == 1 and f"-{killed.pid}-" in left[0].name
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert list(tmp.glob("bench-espeak-*")) == left  # nothing ran to remove it
    live = start()
    try:
        assert not left[0].exists()  # the new engine swept it
        (ours,) = tmp.glob("bench-espeak-*")
        renamed = ours.with_name(f"bench-espeak-elsewhere-{killed.pid}-abc")  # a pid that is gone here
        ours.rename(renamed)
        strays = [
            tmp / "bench-espeak-x-99999999999999999999-a",
            tmp / "bench-espeak-x-\u00b2-a",
            tmp / "bench-espeak-old",
        ]
        for d in strays:
            d.mkdir()
        assert sweep_stale_overlays(tmp) == []
        assert sorted(tmp.iterdir()) == sorted([renamed, *strays])
    finally:
        live.kill()
        live.wait()
    assert sweep_stale_overlays(tmp) == [renamed]


def test_an_engine_being_created_is_never_swept_by_another(tmp_path):
    """The race of two engines starting at once: between one creating its overlay's ``.owner`` and
    locking it, the other's sweep ran and emptied the overlay (a demo failed with "fi_dict: No such
    file or directory"). The sweep is forced into that moment here; the engine must come up whole."""
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = (
        "import bench.synth.espeak as E\n"
        "hold = E._hold_owner_lock\n"
        "def racing(overlay):\n"
        "    (overlay / E.OWNER_LOCK).touch()  # created, not locked yet: the other engine sweeps now\n"
        "    print('swept', len(E.sweep_stale_overlays()))\n"
        "    return hold(overlay)\n"
        "E._hold_owner_lock = racing\n"
        "wav = E.engine().synth('ba', 'en', 'name x\\n', 170, 50, 50)\n"
        "print('samples', len(wav[0] if isinstance(wav, tuple) else wav))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["swept"] == "0" and int(lines["samples"]) > 0


def _forking_pool(monkeypatch):
    """Patched tasks reach the workers only through fork; once this process has loaded eSpeak the
    pool spawns, so these tests (whose tasks never synthesise) ask for fork explicitly."""
    import multiprocessing as mp

    from bench.synth import corpus

    monkeypatch.setattr(corpus, "_pool_context", lambda: mp.get_context("fork"))
    return corpus


def test_a_worker_that_dies_twice_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """A crash inside a worker (eSpeak is native code) must end generation with a clear error; with
    multiprocessing.Pool the parent waited forever for the lost task."""
    from bench.synth import generate, make_config

    corpus = _forking_pool(monkeypatch)
    monkeypatch.setattr(corpus, "_run_task", lambda task: os._exit(11))
    with pytest.raises(BenchError, match="worker died twice.*run the same command again"), pytest.warns(RuntimeWarning):
        generate(make_config("demo", speakers=2, utts=2, min_seconds=1.0, max_seconds=1.2), tmp_path / "c", workers=2)


def test_a_worker_that_dies_once_is_replaced_and_the_corpus_is_the_same(tiny, tmp_path):
    """One rare native crash (the CI once lost a pool worker inside eSpeak) costs a new pool for the
    unfinished tasks, not the run: the corpus comes out byte for byte as without the crash.  Run in a
    fresh process, which has not loaded eSpeak, so that its pool forks and inherits the patch."""
    import subprocess
    import sys

    cfg, out, _ = tiny
    made_dir, flag = tmp_path / "c", tmp_path / "crashed"
    code = (
        "import os, warnings\n"
        "from bench.synth import corpus, generate, make_config\n"
        "real = corpus._run_task\n"
        "def crash_once(task):\n"
        "    try:\n"
        f"        os.close(os.open({str(flag)!r}, os.O_CREAT | os.O_EXCL))\n"
        "    except FileExistsError:\n"
        "        return real(task)\n"
        "    os._exit(11)\n"
        "corpus._run_task = crash_once\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        f"    generate(make_config('demo', **{TINY!r}), __import__('pathlib').Path({str(made_dir)!r}), workers=2)\n"
        "print([str(w.message) for w in seen])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert flag.exists() and "run again on a new pool" in run.stdout, run.stdout
    made = sorted(p.relative_to(made_dir) for p in made_dir.rglob("*.flac"))
    assert made == sorted(p.relative_to(out) for p in out.rglob("*.flac"))
    for rel in made:
        assert (made_dir / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_a_pool_that_breaks_while_tasks_are_submitted_is_replaced_too(tiny, tmp_path, monkeypatch):
    """A worker can die before the last task is submitted: then ``submit`` itself raises (the CI's
    fresh clone hit it); the tasks not yet submitted run on the new pool like the unfinished ones."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from bench.synth import generate

    cfg, out, _ = tiny
    real_submit, calls = ProcessPoolExecutor.submit, []

    def submit(self, fn, *args, **kwargs):
        calls.append(self)
        if len(calls) == 3:  # the first pool breaks at its third task
            raise BrokenProcessPool("a child process terminated abruptly")
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    with pytest.warns(RuntimeWarning, match="run again on a new pool"):
        generate(cfg, tmp_path / "c", workers=2)
    assert len({id(ex) for ex in calls}) == 2
    made = sorted(p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.flac"))
    assert made == sorted(p.relative_to(out) for p in out.rglob("*.flac"))
    for rel in made:
        assert (tmp_path / "c" / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_espeak_is_initialised_once_per_process_and_never_forked(tmp_path):
    """Initialising the library twice in one process image (a second engine, or a pool forked from
    a process that had one) reloads its phoneme data under live tables: the CI lost a worker to
    "Invalid instruction ... for phoneme".  One engine per process; such a process spawns its pool."""
    import subprocess
    import sys

    code = (
        "import os, multiprocessing as mp\n"
        "from bench.synth import generate, make_config, espeak\n"
        "from bench.synth.corpus import _pool_context\n"
        "from bench.errors import BenchError\n"
        "print(_pool_context().get_start_method())\n"
        "e = espeak.engine(); e.synth('ba', 'en', 'name x\\n', 170, 50, 50)\n"
        "print(espeak.engine() is e, _pool_context().get_start_method())\n"
        "def child(q):\n"
        "    try:\n"
        "        espeak.engine(); q.put('initialised again')\n"
        "    except BenchError as err:\n"
        "        q.put('refused' if 'spawn' in str(err) else str(err))\n"
        "q = mp.get_context('fork').Queue(); p = mp.get_context('fork').Process(target=child, args=(q,))\n"
        "p.start(); print(q.get(timeout=60)); p.join()\n"
        f"m = generate(make_config('demo', speakers=2, utts=2, min_seconds=1.0, max_seconds=1.2), "
        f"__import__('pathlib').Path({str(tmp_path / 'c')!r}), workers=2)\n"
        "print(m['counts']['train'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[:4] == ["fork", "True spawn", "refused", "2"], out.stdout


def test_a_task_error_stops_the_pool_at_once(tmp_path, monkeypatch):
    """A task's own error (not a dead worker) is raised without first running every queued task."""
    from bench.synth import generate, make_config

    corpus = _forking_pool(monkeypatch)
    marks = tmp_path / "marks"
    marks.mkdir()

    def fail(task):
        (marks / f"{task[0]}-{task[1]}").touch()
        __import__("time").sleep(0.5)
        raise BenchError("disk full")

    monkeypatch.setattr(corpus, "_run_task", fail)
    cfg = make_config("demo", speakers=2, utts=2, min_seconds=1.0, max_seconds=1.2)
    total = len(corpus.tasks(cfg, corpus.plan(cfg)))
    with pytest.raises(BenchError, match="disk full"):
        generate(cfg, tmp_path / "c", workers=2)
    started = len(list(marks.iterdir()))
    # running + queued (workers + 1) tasks still run; without the cancel all of them do
    assert total >= 15 and started <= 9, (started, total)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_generation_and_the_resumed_corpus_is_identical(tmp_path, workers):
    """Ctrl-C during generation: the run stops (it once went on with workers=1, or hung with 2), no
    utterance is written short (a KeyboardInterrupt swallowed inside eSpeak's or libsndfile's
    callback once left a damaged file behind as finished), and resuming gives the same bytes."""
    import signal
    import subprocess
    import sys
    import time

    from bench.synth import generate, make_config

    kw = dict(speakers=16, utts=5, min_seconds=1.0, max_seconds=1.5)
    ref = tmp_path / "ref"
    generate(make_config("demo", **kw), ref, workers=2)
    out = tmp_path / "c"
    code = (
        "from bench.synth import generate, make_config\n"
        f"generate(make_config('demo', **{kw!r}), __import__('pathlib').Path({str(out)!r}), workers={workers})\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    # its own process group, signalled as a whole: what Ctrl-C in a terminal does to the pool too
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.flac"))) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # no hang
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert "Exception ignored" not in err, err[-2000:]
    assert not (out / "corpus.json").exists()
    generate(make_config("demo", **kw), out, workers=1)
    made = sorted(p.relative_to(out) for p in out.rglob("*.flac"))
    assert made == sorted(p.relative_to(ref) for p in ref.rglob("*.flac"))
    for rel in made:
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert list(tmp_path.glob("bench-espeak-*")) == []


def _ctrl_c_inside_a_callback(engine):
    """Re-register ``engine``'s audio callback with one that sends this process SIGINT on its first
    chunk, as a Ctrl-C arriving while eSpeak synthesises does."""
    import signal

    from bench.synth import espeak

    fired: list[int] = []

    def collect(wav, numsamples, events):
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # bytecodes after the signal: Python runs its handler here, inside the callback
        return engine._collect(wav, numsamples, events)

    cb = espeak._CALLBACK(collect)
    engine._lib.espeak_SetSynthCallback(cb)
    return cb, fired


def test_ctrl_c_inside_the_espeak_callback_stops_after_the_utterance_not_silently():
    """A KeyboardInterrupt raised inside a ctypes callback is printed and swallowed: the chunk was
    dropped and the short utterance written as finished.  Now the interrupt is held until the
    utterance is done, then raised; the engine stays usable and exact."""
    from bench.synth.espeak import engine

    e = engine()
    args = ("hello there, one two three", "en", "name x\n", 170, 50, 50, 7)
    ref = e.synth(*args)
    cb, fired = _ctrl_c_inside_a_callback(e)
    try:
        with pytest.raises(KeyboardInterrupt):
            e.synth(*args)
        assert fired
    finally:
        e._lib.espeak_SetSynthCallback(e._cb)
    del cb
    assert np.array_equal(e.synth(*args), ref)


def test_interrupt_after_holds_ctrl_c_until_the_block_ends():
    import signal

    from bench.procs import interrupt_after

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_after():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
