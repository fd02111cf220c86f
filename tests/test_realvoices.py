"""Tests of the real-voice corpus builder (`bench data real`) and the telephone codecs.

Packages are faked as unpacked folders in the real packages' layouts (paths, formats, copyright
files); nothing is downloaded. One test builds from the real packages when they are already in
the cache (``BENCH_REAL_CACHE`` or ``data/real-cache``), and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bench.cli import app
from bench.realvoices import RealConfig, RealVoicesUnavailable, build_real
from bench.realvoices.fetch import MARKER
from bench.realvoices.sources import VOICES

SMALL = RealConfig(min_seconds=1.0, max_seconds=1.5, enroll_utts=2, max_test_utts=3, telephone_test_utts=3)

DEP5_ASTERISK = """Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: asterisk-core-sounds

Files: *
Copyright: 2003-2010, Allison Smith
License: CC-BY-SA-3.0

Files: it-*
Copyright: 2012 Carlo Flora
License: CC-BY-3.0

Files: debian/*
Copyright: 2010, Tzafrir Cohen
License: GPL-2+
"""
DEP5_KLETTRES = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: KLettres

Files: *
Copyright: 2001-2011, Anne-Marie Mahfouf <annma@kde.org>
License: GPL-2+

Files: doc/*
Copyright: 2001-2007, Anne-Marie Mahfouf
License: GFDL-NIV-1.2+
"""
FREEFORM_GPL = """This package was debianized by someone.
Upstream Author: Avatar Ltda. / July E. Jimenez

   This package is free software; you can redistribute it under the terms of the
   GNU General Public License as published by the Free Software Foundation; version 2.
"""


def _tone(f0: float, sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced-speech stand-in: harmonics of ``f0`` with a random vowel-like spectral tilt."""
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    tilt = rng.uniform(0.8, 0.95)
    x = sum(tilt**k * np.sin(k * phase) for k in range(1, 60) if k * f0 < sr / 2 - 200)
    env = np.clip(np.sin(np.pi * t / t[-1]), 0, None) ** 0.5
    return (0.3 * x * env / np.abs(x).max()).astype(np.float32)


def _pkg(cache: Path, package: str, copyright_text: str | None) -> Path:
    root = cache / "pkg" / package
    root.mkdir(parents=True)
    (root / MARKER).write_text(f"{package}_1.0_all.deb\n")
    if copyright_text is not None:
        doc = root / "usr" / "share" / "doc" / package
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(copyright_text)
    return root


def _clips(folder: Path, n: int, f0: float, sr: int, fmt: str, seed: int, channels: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        x = _tone(f0 * rng.uniform(0.95, 1.05), sr, rng.uniform(0.4, 0.7), rng)
        if fmt == "ogg":
            sf.write(folder / f"s{k:02d}.ogg", np.stack([x] * channels, 1), sr, format="OGG", subtype="VORBIS")
        elif fmt == "wav":
            sf.write(folder / f"p{k:02d}.wav", x, sr, subtype="PCM_16")
        else:  # headerless GSM 06.10, as in asterisk-prompt-es-co
            sf.write(folder / f"p{k:02d}.gsm", x, sr, format="RAW", subtype="GSM610")
    if fmt != "ogg":  # tones and silences that are not the voice
        sf.write(folder / "beep.wav", np.zeros(800, np.float32), sr, subtype="PCM_16")


def fake_cache(cache: Path) -> list:
    """Unpacked fake packages: three KLettres readers (44.1 kHz stereo Ogg), two Italian WAV prompt
    voices (8 kHz), one Spanish WAV voice and one Spanish GSM voice."""
    kl = _pkg(cache, "klettres-data", DEP5_KLETTRES)
    for i, (lang, f0) in enumerate((("fr", 110), ("de", 180), ("en_GB", 240))):
        _clips(kl / "usr/share/klettres" / lang / "alpha", 8, f0, 44100, "ogg", i, channels=2)
        _clips(kl / "usr/share/klettres" / lang / "syllab", 8, f0, 44100, "ogg", 10 + i, channels=2)
    snd = "usr/share/asterisk/sounds"
    it = _pkg(cache, "asterisk-core-sounds-it-wav", DEP5_ASTERISK)
    _clips(it / snd / "it_IT_m_Carlo" / "digits", 14, 100, 8000, "wav", 20)
    men = _pkg(cache, "asterisk-prompt-it-menardi-wav", DEP5_ASTERISK.replace("Allison Smith", "Marco Menardi"))
    _clips(men / snd / "it_IT_f_Menardi", 14, 210, 8000, "wav", 21)
    es = _pkg(cache, "asterisk-core-sounds-es-wav", DEP5_ASTERISK)
    _clips(es / snd / "es_MX_f_Allison", 14, 200, 8000, "wav", 22)
    co = _pkg(cache, "asterisk-prompt-es-co", FREEFORM_GPL)
    _clips(co / snd / "es", 14, 150, 8000, "gsm", 23)
    return [VOICES[s] for s in ("idklfr", "idklde", "idklengb", "idtelcarlo", "idtelmenardi", "idtelallison",
                                "idteljuly")]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    voices = fake_cache(base / "cache")
    manifest = build_real(base / "out", base / "cache", cfg=SMALL, voices=voices, download=False)
    return base, voices, manifest


def _lines(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()]


def test_layout_is_read_by_the_cnceleb_reader(built):
    from bench.config import DataConfig
    from bench.data.corpus import load_corpus

    base, voices, manifest = built
    out = base / "out"
    corpus = load_corpus(DataConfig(corpus="cnceleb", root=str(out), val_speakers=0), require_train=False)
    assert len(corpus.train) == 0
    assert set(corpus.enroll["speaker"]) == {v.speaker for v in voices}
    assert set(corpus.test["genre"]) == {"klettres", "telit", "teles"}
    assert (corpus.test["sample_rate"] == 16000).all() and (corpus.enroll["sample_rate"] == 16000).all()
    assert len(corpus.trials) == manifest["counts"]["trials"]
    # enroll.map names the enrolment parts, whose concatenation is the enrolment file
    spk = "idtelcarlo"
    parts = corpus.enroll_map[f"{spk}-enroll"]
    assert len(parts) == SMALL.enroll_utts
    joined = sf.info(out / "eval" / "enroll" / f"{spk}-enroll.flac").frames
    sizes = [sf.info(out / "data" / f"{p}.flac").frames for p in parts]
    assert joined == sum(sizes) + int(SMALL.gap_seconds * 16000) * (len(parts) - 1)


def test_trials_stay_inside_one_source_and_language(built):
    base, voices, manifest = built
    by_spk = {v.speaker: v for v in voices}
    rows = _lines(base / "out" / "eval" / "lists" / "trials.lst")
    assert rows
    cells: dict[str, set] = {}
    for enroll, test, label in rows:
        e = by_spk[enroll.removesuffix("-enroll")]
        t = by_spk[test.split("/")[1].split("-")[0]]
        assert e.cell == t.cell and e.package.startswith("klettres") == t.package.startswith("klettres")
        if not e.package.startswith("klettres"):
            assert e.language == t.language  # telephone cells: one language
        assert label == str(int(e.speaker == t.speaker))
        cells.setdefault(e.cell, set()).add(label)
    # every cell has targets and non-targets; all (enrolment, test) pairs of a cell are there
    assert all(labels == {"0", "1"} for labels in cells.values())
    for name, c in manifest["cells"].items():
        assert c["trials"] == c["speakers"] * c["test_utts"]
        assert len(_lines(base / "out" / "eval" / "lists" / f"trials-{name}.lst")) == c["trials"]
    assert manifest["cells"]["klettres"]["language_varies"] and not manifest["cells"]["telit"]["language_varies"]


def test_enrolment_and_test_use_disjoint_clips(built):
    _, voices, manifest = built
    for spk, info in manifest["speakers"].items():
        enroll = [c for f, cs in info["clips"].items() if f.startswith("data/") for c in cs]
        test = [c for f, cs in info["clips"].items() if f.startswith("eval/test/") for c in cs]
        assert enroll and test and not set(enroll) & set(test), spk
        assert len(enroll) + len(test) == len(set(enroll) | set(test))  # each clip used once
        assert not any(c.endswith("beep.wav") for c in enroll + test)


def test_licences_recorded_per_package_from_the_copyright_files(built):
    base, _, _ = built
    out = base / "out"
    lic = json.loads((out / "licences.json").read_text())
    assert lic["klettres-data"]["licence"] == "GPL-2+"  # 'Files: *', not the doc/* paragraph
    assert lic["asterisk-core-sounds-it-wav"]["licence"] == "CC-BY-3.0"  # the it-* paragraph wins over *
    assert lic["asterisk-core-sounds-es-wav"]["licence"] == "CC-BY-SA-3.0"
    assert lic["asterisk-prompt-es-co"]["licence"] == "GPL-2"  # free-form file, phrase checked
    for pkg, rec in lic.items():
        copied = out / rec["copyright_file"]
        assert copied.read_text() == (base / "cache" / "pkg" / pkg / "usr/share/doc" / pkg / "copyright").read_text()
    sources = (out / "SOURCES.md").read_text()
    assert all(f"`{pkg}`" in sources for pkg in lic) and "CC-BY-3.0" in sources


def test_telephone_voices_share_one_narrowband_gsm_channel(built):
    """WAV and GSM prompt voices both end up with nothing above 4 kHz (8 kHz path)."""
    out = built[0] / "out"
    for spk in ("idtelcarlo", "idteljuly"):
        x, sr = sf.read(next((out / "eval" / "test").glob(f"{spk}-*.flac")))
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / sr)
        assert spec[f > 4200].sum() < 1e-3 * spec.sum()
    x, sr = sf.read(next((out / "eval" / "test").glob("idklde-*.flac")))
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    assert spec[f > 4200].sum() > 1e-3 * spec.sum()  # wideband reader keeps its upper harmonics


def test_rebuild_is_a_noop_and_other_settings_need_force(built):
    base, voices, _ = built
    again = build_real(base / "out", base / "cache", cfg=SMALL, voices=voices, download=False)
    assert again["reused"]
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="--force"):
        build_real(base / "out", base / "cache", cfg=RealConfig(seed=1), voices=voices, download=False)


def test_a_voice_without_licence_or_partner_is_left_out(tmp_path):
    voices = fake_cache(tmp_path / "cache")
    (tmp_path / "cache/pkg/asterisk-prompt-it-menardi-wav/usr/share/doc/asterisk-prompt-it-menardi-wav/copyright"
     ).unlink()  # fmt: skip
    m = build_real(tmp_path / "out", tmp_path / "cache", cfg=SMALL, voices=voices, download=False)
    assert "no licence record" in m["skipped"]["idtelmenardi"]
    assert "alone in cell 'telit'" in m["skipped"]["idtelcarlo"]
    assert set(m["cells"]) == {"klettres", "teles"}
    assert not list((tmp_path / "out" / "eval" / "test").glob("idtelcarlo-*"))


def test_without_packages_it_says_how_to_get_them(tmp_path, monkeypatch):
    from bench.realvoices import fetch

    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(RealVoicesUnavailable, match="apt-get is not available.*apt-get download .*klettres-data"):
        build_real(tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(app, ["data", "real", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 2 and "apt-get download" in res.output
    assert not (tmp_path / "out").exists()


def test_demo_step_goes_on_without_a_real_corpus(tmp_path):
    from bench.realvoices.demo import score_on_real

    info = score_on_real([], tmp_path / "nowhere", tmp_path, tmp_path / "exp")
    assert info["scored"] == [] and "bench data real" in info["notes"][0]


def test_baseline_run_is_a_report_system_with_the_same_trials(built, tmp_path):
    from sklearn.metrics import roc_curve

    from bench.realvoices.baseline import baseline_per_cell, write_baseline_run
    from bench.runner.evaluate import file_sha256
    from reports.collect import load_run

    out = built[0] / "out"
    d = write_baseline_run(out, tmp_path / "exp", "real")
    run = load_run(d)
    assert (run.loss, run.train_corpus, run.eval_corpus) == ("mfcc-baseline", "non-learned", "real")
    assert run.trials_sha256 == file_sha256(out / "eval" / "lists" / "trials.lst")
    rows = _lines(d / "scores.txt")
    assert [r[:2] for r in rows] == [[e, t.removesuffix(".wav")] for e, t, _ in
                                     _lines(out / "eval" / "lists" / "trials.lst")]  # fmt: skip
    # EER against scikit-learn's ROC: where miss and false-alarm rates cross
    scores = np.array([float(r[2]) for r in rows])
    labels = np.array([int(r[3]) for r in rows])
    fpr, tpr, _ = roc_curve(labels, scores)
    i = np.argmin(np.abs(1 - tpr - fpr))
    assert run.metrics["eer"] == pytest.approx(100 * (fpr[i] + 1 - tpr[i]) / 2, abs=100 / labels.sum())
    per = baseline_per_cell(out)
    assert set(per["per_cell"]) == set(run.per_genre) == {"klettres", "telit", "teles"}
    assert per["eer"] == pytest.approx(run.metrics["eer"], abs=1e-6)


# ---------------------------------------------------------------------------------- codecs


def test_mulaw_matches_the_g711_formula():
    from bench.synth.codecs import mulaw_roundtrip

    x = np.linspace(-1, 1, 2001).astype(np.float32)
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.clip(np.floor((y + 1) / 2 * mu + 0.5), 0, mu)  # 8-bit code, as G.711 / torchaudio
    ref = np.sign(q / mu * 2 - 1) * (np.expm1(np.abs(q / mu * 2 - 1) * np.log1p(mu))) / mu
    assert np.allclose(mulaw_roundtrip(x), ref, atol=1e-5)


def test_alaw_matches_the_stdlib_g711_codec():
    audioop = pytest.importorskip("audioop")  # Python < 3.13: CPython's own G.711 implementation
    from bench.synth.codecs import alaw_roundtrip

    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, 4000) * rng.choice([1, 0.1, 0.01], 4000)).astype(np.float32)
    pcm = np.round(x * 32767).astype("<i2")
    ref = np.frombuffer(audioop.alaw2lin(audioop.lin2alaw(pcm.tobytes(), 2), 2), "<i2") / 32768
    ours = alaw_roundtrip(pcm / 32767)
    # same companding curve; the quantiser grids differ slightly (segments vs continuous log)
    err_ref, err_ours = np.abs(ref - x), np.abs(ours - x)
    assert np.sqrt(np.mean(err_ours**2)) < 2 * np.sqrt(np.mean(err_ref**2))
    assert np.corrcoef(ours, ref)[0, 1] > 0.999


def test_gsm_roundtrip_keeps_length_and_speechlike_content():
    from bench.synth.codecs import gsm_roundtrip

    x = _tone(150, 8000, 1.0, np.random.default_rng(0))
    y = gsm_roundtrip(x)
    assert y.shape == x.shape and not np.array_equal(x, y)
    assert np.corrcoef(x[400:-400], y[400:-400])[0, 1] > 0.8  # lossy, but the same waveform


# ---------------------------------------------------------------------------------- the real packages


def _real_cache() -> Path | None:
    for c in (os.environ.get("BENCH_REAL_CACHE"), "data/real-cache"):
        if c and all(
            (Path(c) / "pkg" / p / MARKER).is_file() or list((Path(c) / "debs").glob(f"{p}_*.deb"))
            for p in ("klettres-data", "asterisk-core-sounds-it-wav", "asterisk-prompt-it-menardi-wav")
        ):
            return Path(c)
    return None


@pytest.mark.slow
def test_build_from_the_real_packages_when_cached(tmp_path):
    cache = _real_cache()
    if cache is None:
        pytest.skip("real packages not cached (bench data real --cache data/real-cache, or BENCH_REAL_CACHE)")
    m = build_real(tmp_path / "out", cache, download=False)  # may unpack cached .debs there, nothing else
    assert m["cells"]["klettres"]["speakers"] >= 10
    assert "telit" in m["cells"] and m["cells"]["telit"]["speakers"] == 2
    lic = json.loads((tmp_path / "out" / "licences.json").read_text())
    assert lic["klettres-data"]["licence"] == "GPL-2+"
    assert lic["asterisk-core-sounds-it-wav"]["licence"] == "CC-BY-3.0"


# ---------------------------------------------------------------------------------- bench demo


@pytest.mark.slow
def test_demo_scores_every_run_on_the_real_corpus_beside_the_baseline(built, tmp_path):
    pytest.importorskip("espeakng_loader")
    from bench.commands.demo import run_demo
    from bench.synth import generate, make_config
    from tests.test_demo import TINY_RUN

    data = tmp_path / "synth"
    generate(make_config("demo", speakers=3, utts=3, min_seconds=1.0, max_seconds=1.5), data, workers=1)
    real = built[0] / "out"
    runs, report = tmp_path / "runs", tmp_path / "report"
    res = run_demo(runs, data=data, report_dir=report, losses=("softmax", "aam"), epochs=1, overrides=TINY_RUN, n_boot=20, seeds=(0,),
                   real=real)  # fmt: skip
    assert res.real["scored"] == ["softmax", "aam"] and not res.real["notes"]
    cross = json.loads((runs / "demo" / "softmax" / "seed0" / "eval" / "real" / "metrics.json").read_text())
    assert cross["train_corpus"] == "synthetic" and cross["eval_corpus"] == "real"
    by_corpus = {}
    for row in res.table:
        by_corpus.setdefault(row["eval_corpus"], set()).add(row["system"])
    assert any("synthetic -> real" in s for s in by_corpus["real"])
    assert any(s.startswith("mfcc-baseline") for s in by_corpus["real"])
    assert any(s.startswith("mfcc-baseline") for s in by_corpus["synthetic"])
    # a second call reuses the real-voice scores
    again = run_demo(runs, data=data, report_dir=report, losses=("softmax", "aam"), epochs=1, overrides=TINY_RUN, seeds=(0,),
                     n_boot=20, real=real)  # fmt: skip
    assert again.real["reused"] == ["softmax", "aam"] and again.report_action == "reused"
