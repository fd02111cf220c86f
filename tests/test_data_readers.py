"""Audio decoding, trial lists and the corpus readers on tiny fixture corpora in the real layouts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.config import DataConfig
from bench.data import fixtures
from bench.data.audio import read_audio
from bench.data.corpus import CORPORA, hold_out, load_corpus, make_val_trials
from bench.data.trials import read_trials
from bench.errors import BenchError

# ------------------------------------------------------------------------------------------ audio


def test_read_audio_downmixes_stereo_and_keeps_float32(tmp_path):
    left = np.full(800, 0.5, dtype=np.float32)
    right = np.full(800, -0.1, dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    x = read_audio(tmp_path / "s.wav")
    assert x.dtype == np.float32 and x.shape == (800,)
    np.testing.assert_allclose(x, 0.2, atol=1e-6)


def test_read_audio_offset_frames_slice(tmp_path):
    ramp = (np.arange(1600) / 1600).astype(np.float32)
    sf.write(tmp_path / "r.wav", ramp, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(tmp_path / "r.wav", offset=100, frames=50), ramp[100:150])


def test_read_audio_resamples_with_warning_or_refuses(tmp_path):
    sr = 8000
    t = np.arange(sr) / sr
    sf.write(tmp_path / "a8k.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    with pytest.warns(UserWarning, match="8000 Hz -> 16000 Hz"):
        x = read_audio(tmp_path / "a8k.wav", 16000)
    assert len(x) == 16000
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440) < 2  # pitch preserved at the new rate
    with pytest.raises(BenchError, match="8000 Hz") as e:
        read_audio(tmp_path / "a8k.wav", 16000, resample=False)
    assert e.value.path.endswith("a8k.wav")


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "zero_frames"])
def test_read_audio_bad_files_name_the_file(tmp_path, kind):
    p = tmp_path / f"{kind}.flac"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not audio\n")
    elif kind == "zero_frames":
        sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(BenchError) as e:
        read_audio(p)
    assert e.value.path == str(p)
    assert str(p) in str(e.value)


# ------------------------------------------------------------------------------------------ trials


def test_read_trials_three_formats_agree(tmp_path):
    (tmp_path / "cn.lst").write_text(
        "id00800-enroll test/id00800-singing-01-005.wav 1\nid00800-enroll test/id00801-speech-01-001.wav 0\n"
    )
    (tmp_path / "vox.txt").write_text(
        "1 id00800-enroll test/id00800-singing-01-005.wav\n0 id00800-enroll.flac test/id00801-speech-01-001.flac\n"
    )
    (tmp_path / "trials").write_text(
        "id00800-enroll test/id00800-singing-01-005 target\nid00800-enroll test/id00801-speech-01-001 nontarget\n"
    )
    parsed = [read_trials(tmp_path / n) for n in ("cn.lst", "vox.txt", "trials")]
    assert [t.format for t in parsed] == ["cnceleb", "voxceleb", "kaldi"]
    for t in parsed:
        assert t.enroll == ["id00800-enroll", "id00800-enroll"]
        assert t.test == ["test/id00800-singing-01-005", "test/id00801-speech-01-001"]
        assert t.labels.dtype == bool and t.labels.tolist() == [True, False]


def test_read_trials_one_class_is_allowed(tmp_path):
    (tmp_path / "t.lst").write_text("a b 0\na c 0\n")
    assert read_trials(tmp_path / "t.lst").n_target == 0


@pytest.mark.parametrize(
    "body, line, match",
    [
        ("a b 1\na c\n", 2, "malformed"),
        ("a b 1\na c 2\n", 2, "malformed"),
        ("a b 1\n1 a c\n", 2, "malformed"),  # voxceleb line inside a cnceleb list
        ("a b 1\n\na b 0\n", 3, "duplicate"),
        ("hello world\n", 1, "unrecognised"),
    ],
)
def test_read_trials_errors_name_file_and_line(tmp_path, body, line, match):
    p = tmp_path / "bad.lst"
    p.write_text(body)
    with pytest.raises(BenchError, match=match) as e:
        read_trials(p)
    assert e.value.path == str(p) and e.value.line == line


def test_read_trials_empty_or_missing(tmp_path):
    (tmp_path / "e.lst").write_text("\n\n")
    with pytest.raises(BenchError, match="empty"):
        read_trials(tmp_path / "e.lst")
    with pytest.raises(BenchError, match="not found"):
        read_trials(tmp_path / "nope.lst")


# ------------------------------------------------------------------------------------------ corpora


@pytest.fixture(scope="module")
def cn1(tmp_path_factory) -> Path:
    return fixtures.write_cnceleb1(tmp_path_factory.mktemp("cn1"), train_speakers=4, utts=3, eval_speakers=2)


def test_cnceleb1_reader_resolves_wav_names_to_flac(cn1):
    c = load_corpus(DataConfig(corpus="cnceleb", root=str(cn1)))
    assert list(c.train.columns[:5]) == ["utt_id", "path", "speaker", "genre", "duration"]
    assert c.speakers == ["id00000", "id00001", "id00002", "id00003"]
    assert len(c.train) == 12 and c.train["utt_id"].is_unique
    assert "id00000/singing-01-001" in set(c.train["utt_id"])
    assert set(c.train["genre"]) == {"singing", "speech"}
    # durations from headers equal the decoded length
    row = c.train.iloc[0]
    assert row["duration"] == pytest.approx(len(read_audio(row["path"])) / 16000)
    # evaluation: lists say .wav, files are .flac
    assert c.trials is not None and len(c.trials) == 2 * 4
    assert set(c.trials.enroll) <= set(c.enroll["utt_id"])
    assert set(c.trials.test) == set(c.test["utt_id"])
    assert all(p.endswith(".flac") for p in c.test["path"]) and all(p.endswith(".flac") for p in c.enroll["path"])
    assert c.test.loc[c.test["utt_id"] == "test/id00004-singing-02-001", "genre"].item() == "singing"
    assert c.enroll_map["id00004-enroll"] == [
        f"id00004/{g}-01-00{i}" for i, g in ((1, "singing"), (2, "speech"), (3, "singing"))
    ]
    assert set(c.enroll_utts["utt_id"]) == {u for us in c.enroll_map.values() for u in us}
    assert c.val_trials is None and len(c.val) == 0
    labels = c.train_labels()
    assert labels.tolist() == [c.speakers.index(s) for s in c.train["speaker"]]


def test_synthetic_reader_uses_val_trials_over_heldout_speakers(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=3, utts=3, val_speakers=2, eval_speakers=1)
    c = load_corpus(DataConfig(corpus="synthetic", root=str(root)))
    assert c.val_trials is not None and c.val_trials.n_target > 0 and c.val_trials.n_nontarget > 0
    assert set(c.val["speaker"]).isdisjoint(c.speakers)
    assert set(c.val_trials.enroll) | set(c.val_trials.test) == set(c.val["utt_id"])


def test_val_speakers_holdout_is_deterministic_and_balanced(cn1):
    cfg = DataConfig(corpus="cnceleb", root=str(cn1), val_speakers=2)
    a, b = load_corpus(cfg), load_corpus(cfg)
    assert a.speakers == b.speakers and len(a.speakers) == 2
    assert set(a.val["speaker"]).isdisjoint(a.speakers) and a.val["speaker"].nunique() == 2
    assert a.val_trials.enroll == b.val_trials.enroll
    assert a.val_trials.n_target == a.val_trials.n_nontarget == 2 * 3  # 3 pairs per speaker with 3 utts
    spk = dict(zip(a.val["utt_id"], a.val["speaker"]))
    for e, t, lab in zip(a.val_trials.enroll, a.val_trials.test, a.val_trials.labels):
        assert (spk[e] == spk[t]) == lab


def test_make_val_trials_caps_targets():
    import pandas as pd

    idx = pd.DataFrame(
        {
            "utt_id": [f"s{s}/u{u}" for s in range(3) for u in range(10)],
            "speaker": [f"s{s}" for s in range(3) for _ in range(10)],
        }
    )
    t = make_val_trials(idx, max_targets=20)
    assert t.n_target == t.n_nontarget == 20
    with pytest.raises(BenchError, match="val_speakers"):
        hold_out(idx.assign(path="", genre="", duration=1.0), 3)


def test_cnceleb_missing_test_file_names_list_and_file(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=2, utts=2, eval_speakers=1)
    victim = root / "eval" / "test" / "id00002-singing-02-001.flac"
    victim.unlink()
    with pytest.raises(BenchError, match="test.lst") as e:
        load_corpus(DataConfig(corpus="cnceleb", root=str(root)))
    assert "id00002-singing-02-001" in e.value.path
    with pytest.warns(UserWarning, match="1 evaluation trials"):
        c = load_corpus(DataConfig(corpus="cnceleb", root=str(root), skip_bad=True))
    assert [Path(b.path).name for b in c.bad_files] == ["id00002-singing-02-001.wav"]
    assert "test/id00002-singing-02-001" not in c.trials.test


def test_cnceleb_corrupt_training_file_error_or_skip(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=2, utts=2, eval_speakers=1)
    bad = root / "data" / "id00001" / "speech-01-002.flac"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(BenchError, match="unreadable") as e:
        load_corpus(DataConfig(corpus="cnceleb", root=str(root)))
    assert e.value.path == str(bad)
    c = load_corpus(DataConfig(corpus="cnceleb", root=str(root), skip_bad=True))
    assert [b.path for b in c.bad_files] == [str(bad)] and len(c.train) == 3


def test_cnceleb_unknown_trial_id_and_bad_dev_list(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=2, utts=2, eval_speakers=1)
    trials = root / "eval" / "lists" / "trials.lst"
    trials.write_text(trials.read_text() + "id00002-enroll test/nobody-x-01-001.wav 0\n")
    with pytest.raises(BenchError, match="unknown test utterance") as e:
        load_corpus(DataConfig(corpus="cnceleb", root=str(root)))
    assert e.value.path == str(trials) and e.value.line == 3
    (root / "dev" / "dev.lst").write_text("id00000\nid99999\n")
    with pytest.raises(BenchError, match="id99999") as e:
        load_corpus(DataConfig(corpus="cnceleb", root=str(root)))
    assert e.value.path.endswith("dev.lst") and e.value.line == 2


def test_cnceleb2_and_cnceleb12(tmp_path):
    cn1 = fixtures.write_cnceleb1(tmp_path / "CN-Celeb_flac", train_speakers=2, utts=2, eval_speakers=1)
    fixtures.write_cnceleb2(tmp_path / "CN-Celeb2_flac", speakers=3, utts=2)
    c2 = load_corpus(DataConfig(corpus="cnceleb2", root=str(tmp_path / "CN-Celeb2_flac")))
    assert c2.speakers == ["id10000", "id10001", "id10002"] and c2.trials is None
    assert set(c2.train["genre"]) == {"vlog"}
    c12 = load_corpus(DataConfig(corpus="cnceleb12", root=str(tmp_path)))
    assert c12.speakers == ["id00000", "id00001", "id10000", "id10001", "id10002"]
    assert len(c12.train) == 2 * 2 + 3 * 2 and len(c12.trials) == 2
    listed = load_corpus(
        DataConfig(corpus="cnceleb12", root="/", train_lists=[str(cn1), str(tmp_path / "CN-Celeb2_flac")])
    )
    assert listed.speakers == c12.speakers
    with pytest.raises(BenchError, match="CN-Celeb2_flac"):
        load_corpus(DataConfig(corpus="cnceleb12", root=str(cn1)))


def test_voxceleb_reader(tmp_path):
    root = fixtures.write_voxceleb(tmp_path, train_speakers=3, test_speakers=2, videos=2)
    c = load_corpus(DataConfig(corpus="voxceleb", root=str(root)))
    assert c.speakers == ["id10001", "id10002", "id10003"]  # trial speakers are held out of training
    assert c.trials.format == "voxceleb" and len(c.trials) == 6
    assert "id10004/vid00000000/00001" in set(c.test["utt_id"]) | set(c.enroll["utt_id"])
    assert all(c.enroll_map[e] == [e] for e in c.trials.enroll)
    assert c.trials.n_target == 2


def test_kaldi_reader_with_separate_eval_dir(tmp_path):
    train = fixtures.write_kaldi(tmp_path / "train", speakers=3, utts=2, trials=False)
    ev = fixtures.write_kaldi(tmp_path / "test", speakers=2, utts=2, trials=True, seed=9)
    c = load_corpus(DataConfig(corpus="kaldi", root=str(train), eval_root=str(ev)))
    assert c.speakers == ["spk0", "spk1", "spk2"] and len(c.train) == 6
    assert c.trials.format == "kaldi" and c.trials.labels.tolist() == [True, False, False, True]
    assert set(c.test["utt_id"]) == {"spk0-utt1", "spk1-utt1"}
    # speaker-level enrolment ids (Kaldi spk2utt style) become mean-mode models
    (ev / "trials").write_text("spk0 spk0-utt1 target\nspk1 spk0-utt1 nontarget\n")
    c = load_corpus(DataConfig(corpus="kaldi", root=str(train), eval_root=str(ev)))
    assert c.enroll_map == {"spk0": ["spk0-utt0", "spk0-utt1"], "spk1": ["spk1-utt0", "spk1-utt1"]}
    assert len(c.enroll) == 0


def test_kaldi_malformed_lines_name_file_and_line(tmp_path):
    d = fixtures.write_kaldi(tmp_path, speakers=2, utts=1, trials=False)
    scp = d / "wav.scp"
    scp.write_text(scp.read_text() + "spk9-utt0 sox x.wav -t wav - |\n")
    with pytest.raises(BenchError, match="piped") as e:
        load_corpus(DataConfig(corpus="kaldi", root=str(d)))
    assert e.value.path == str(scp) and e.value.line == 3


def test_unknown_corpus_and_missing_root_are_user_errors(tmp_path):
    with pytest.raises(BenchError, match="did you mean 'cnceleb'"):
        load_corpus(DataConfig(corpus="cnceleeb", root=str(tmp_path)))
    with pytest.raises(BenchError, match="not found"):
        load_corpus(DataConfig(corpus="cnceleb", root=str(tmp_path / "nope")))
    with pytest.raises(BenchError, match="data/"):
        load_corpus(DataConfig(corpus="cnceleb", root=str(tmp_path)))
    assert {"cnceleb", "cnceleb2", "cnceleb12", "voxceleb", "kaldi", "synthetic"} <= set(CORPORA)


def test_wrong_rate_refused_at_load_when_resample_off(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=2, utts=2, eval_speakers=1)
    odd = root / "data" / "id00000" / "singing-01-001.flac"
    fixtures.write(odd, np.zeros(8000, dtype=np.float32) + 0.01, sr=8000)
    with pytest.raises(BenchError, match="8000 Hz") as e:
        load_corpus(DataConfig(corpus="cnceleb", root=str(root), resample=False))
    assert e.value.path == str(odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = load_corpus(DataConfig(corpus="cnceleb", root=str(root)))  # indexing never decodes, so no warning
    assert c.train.loc[c.train["path"] == str(odd), "duration"].item() == pytest.approx(1.0)
