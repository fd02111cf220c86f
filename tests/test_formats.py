"""Files in the field's formats give the same metrics as ours: text encodings (bench.textio), score
files in other toolkits' column orders (bench.scorefile), embeddings as .npy / Kaldi ark / scp
(bench.embfile). Every foreign file is written here, byte by byte, in the layout that toolkit uses."""

from __future__ import annotations

import json
import shutil

import kaldiio
import numpy as np
import pytest
from typer.testing import CliRunner

from bench import metrics
from bench import scorefile as SF
from bench.cli import app
from bench.embfile import read_embeddings, write_embeddings
from bench.errors import BenchError

runner = CliRunner()

ISSUE_TRIALS = [
    "id1-enroll test/a.wav 1",
    "id1-enroll test/b.wav 0",
    "id2-enroll test/a.wav 0",
    "id2-enroll test/b.wav 1",
]
ISSUE_SCORES = "id1-enroll test/a 0.9\nid1-enroll test/b 0.1\nid2-enroll test/a 0.3\nid2-enroll test/b 0.8\n"
BOM = b"\xef\xbb\xbf"


def _score(*args):
    res = runner.invoke(app, ["score", *map(str, args)])
    return res


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------
# Text encodings (issue 19, item 1)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["cnceleb", "voxceleb"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_bom_and_crlf_trial_lists_score_like_plain_ones(tmp_path, order, bom, eol):
    lines = ISSUE_TRIALS if order == "cnceleb" else [f"{ln[-1]} {ln[:-2]}" for ln in ISSUE_TRIALS]
    body = (eol.join(lines) + eol + "  " + eol).encode()  # trailing blank line with blanks
    (tmp_path / "t.lst").write_bytes((BOM if bom else b"") + body)
    (tmp_path / "s.txt").write_bytes((BOM if bom else b"") + ISSUE_SCORES.replace("\n", eol).encode())
    got = _json(_score("--trials", tmp_path / "t.lst", "--scores", tmp_path / "s.txt", "--json"))
    assert got["eer"] == 0.0 and got["n_target"] + got["n_nontarget"] == 4
    from bench.data.trials import read_trials

    tr = read_trials(tmp_path / "t.lst")
    assert tr.enroll[0] == "id1-enroll" and tr.format == order  # no invisible character glued on


def _corpus_list(p):
    from bench.data.corpus import list_lines

    return list(list_lines(p))


def _embed_list(p):
    from bench.crosseval import list_index

    return list_index(p)


def _toml(p):
    from bench.config import read_toml

    return read_toml(p)


def _trials(p):
    from bench.data.trials import read_trials

    return read_trials(p)


def _enroll_map(p):
    from bench.scoring import read_enroll_map

    return read_enroll_map(p)


def _kaldi(p):
    from bench.data.corpus import _kaldi_dir

    (p.parent / "utt2spk").write_bytes(BOM + b"u1 s1\r\nu2 s1 \r\n")
    return _kaldi_dir(p.parent)


READERS = {
    "trials": ("t.lst", "a test/x.wav 1\n", _trials),
    "scores": ("s.txt", "a x 0.5 1\n", SF.read_scores),
    "enroll map": ("enroll.map", "m1 u1 u2\n", _enroll_map),
    "corpus list": ("dev.lst", "id00800\n", _corpus_list),
    "wav.scp": ("wav.scp", "u1 a.wav\n", _kaldi),
    "embed list": ("list.txt", "a.wav\n", _embed_list),
    "toml": ("c.toml", "experiment = 'x'\n", _toml),
}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_non_utf8_bytes_name_file_and_line(tmp_path, kind):
    name, first, reader = READERS[kind]
    p = tmp_path / name
    p.write_bytes(BOM + first.encode() + b"caf\xe9 latin-1 line\n")
    with pytest.raises(BenchError) as e:
        reader(p)
    assert e.value.path == str(p) and e.value.line == 2 and "not UTF-8 text" in e.value.message


def test_decode_rules():
    from bench.textio import decode

    assert decode(BOM + "é\r\nb \r\n".encode()) == "é\nb \n"
    assert decode(b"a\rb") == "a\rb"  # a lone CR is not a line end
    with pytest.raises(BenchError, match="not UTF-8") as e:
        decode(b"ok\nok\n\x80", "f.txt")
    assert str(e.value).startswith("f.txt:3: ")


# --------------------------------------------------------------------------------------------
# Score files in every column order
# --------------------------------------------------------------------------------------------


@pytest.fixture
def trial_set(tmp_path):
    """60 trials with scores carrying 6 decimals (every layout writes the same strings)."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        lab = i % 3 == 0
        s = float(np.round(rng.normal(1.0 if lab else 0.0, 0.8), 6))
        rows.append((f"id{i % 6:05d}-enroll", f"test/id{i % 5:05d}-speech-{i:02d}.wav", f"{s:.6f}", lab))
    (tmp_path / "trials.lst").write_text("".join(f"{e} {t} {int(lab)}\n" for e, t, _, lab in rows))
    return rows


LAB = {"10": ("1", "0"), "target": ("target", "nontarget"), "TF": ("True", "False")}


def _lines(rows, fmt, labels):
    yes, no = LAB[labels]
    return [fmt.format(e=e, t=t, s=s, lab=yes if lab else no) for e, t, s, lab in rows]


FOREIGN = {
    # name: (header or None, line format, label words, separator)
    "native": (None, "{e} {t} {s} {lab}", "10"),
    "kaldi-words": (None, "{e} {t} {s} {lab}", "target"),
    "speechbrain": (None, "{e} {t} {lab} {s}", "10"),
    "3d-speaker": (None, "{e} {t} {lab} {s}", "target"),
    "voxceleb-order": (None, "{lab} {e} {t} {s}", "10"),
    "true-false": (None, "{e} {t} {s} {lab}", "TF"),
    "tab-header": ("enroll\ttest\tlabel\tscore", "{e}\t{t}\t{lab}\t{s}", "target"),
    "csv-header": ("enroll,test,score,label", "{e},{t},{s},{lab}", "10"),
    "csv-header-label-first": ("label,enrol,test,score", "{lab}, {e}, {t}, {s}", "TF"),
    "csv-no-header": (None, "{e},{t},{lab},{s}", "10"),
    "no-labels": (None, "{e} {t} {s}", "10"),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_score_layouts_give_the_native_eer(tmp_path, trial_set, name):
    header, fmt, labels = FOREIGN[name]
    body = ([header] if header else []) + _lines(trial_set, fmt, labels)
    foreign = tmp_path / f"{name}.{'csv' if ',' in fmt else 'txt'}"
    foreign.write_text("\n".join(body) + "\n")
    native = tmp_path / "native.txt"
    native.write_text("\n".join(_lines(trial_set, FOREIGN["native"][1], "10")) + "\n")
    scores = np.array([float(s) for _, _, s, _ in trial_set])
    labels_true = np.array([lab for *_, lab in trial_set])
    want = metrics.compute_metrics(scores, labels_true)
    for path in (native, foreign):
        res = _score("--trials", tmp_path / "trials.lst", "--scores", path, "--json")
        got = _json(res)
        assert got["eer"] == pytest.approx(want["eer"]) and got["mindcf@0.01"] == pytest.approx(want["mindcf@0.01"])
        assert got["n_target"] == int(labels_true.sum())
        assert res.stderr.count("layout '") == 1  # the detected layout is printed once
    sf = SF.read_scores(foreign)
    assert sf.enroll[0] == "id00000-enroll" and sf.test[0] == "test/id00000-speech-00"
    np.testing.assert_array_equal(sf.scores, scores)
    if name != "no-labels":
        np.testing.assert_array_equal(sf.labels, labels_true)
        # labels in the file are enough without a trial list
        assert _json(_score("--scores", foreign, "--json"))["eer"] == pytest.approx(want["eer"])
    # the pandas fast path and the line reader agree on every layout
    fast = SF._parse_fast(foreign.read_bytes())
    slow = SF._parse_text(foreign.read_text(), foreign)
    if fast is not None:
        for a, b in zip(fast[:5], slow[:5]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert fast[5].layout == slow[5].layout


def test_issue_examples_are_detected(tmp_path):
    p = tmp_path / "sb.txt"
    p.write_text("enrol test 1 0.957397\nenrol test2 0 0.1\n")
    assert SF.read_scores(p).layout == "enroll test label score"
    p.write_text("enroll test target 0.95740\nenroll test2 nontarget 0.1\n")
    sf = SF.read_scores(p)
    assert sf.layout == "enroll test label score" and sf.labels.tolist() == [True, False]
    assert "labels target/nontarget" in sf.description


def test_ambiguous_score_file_is_refused_with_candidates(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a b 1 0\na c 0 1\nd b 1 1\n")  # hard decisions: 0/1 scores beside 0/1 labels
    with pytest.raises(BenchError, match="'enroll test score label' or 'enroll test label score'"):
        SF.read_scores(p)
    res = _score("--scores", p, "--json")
    assert res.exit_code == 2 and "--score-layout" in res.output
    sf = SF.read_scores(p, layout="enroll test label score")
    assert sf.labels.tolist() == [True, False, True] and sf.scores.tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(BenchError, match="unknown score-file layout"):
        SF.read_scores(p, layout="score first")


def test_no_layout_fits_names_the_line_of_the_longest_fit(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("x y target nontarget\na b 0.5 1\n")  # not a header: a data line without a score
    with pytest.raises(BenchError) as e:
        SF.read_scores(p)
    assert e.value.line == 1
    p.write_text("a b 0.5 1\na c 0.1 target\na d 0.2 maybe\n")
    with pytest.raises(BenchError, match="label 'maybe'") as e:
        SF.read_scores(p)
    assert e.value.line == 3


@pytest.mark.parametrize("style, words", [("binary", ("1", "0")), ("target", ("target", "nontarget"))])
def test_written_label_styles_read_back(tmp_path, style, words):
    rng = np.random.default_rng(3)
    s = rng.standard_normal(40)
    lab = rng.random(40) < 0.3
    ids = ([f"e{i % 4}" for i in range(40)], [f"t{i}" for i in range(40)])
    p = tmp_path / "s.txt"
    SF.write_scores(p, ids, s, lab, label_style=style)
    last = {ln.split()[-1] for ln in p.read_text().splitlines()}
    assert last == set(words)
    back = SF.read_scores(p)
    np.testing.assert_array_equal(back.scores, s)
    np.testing.assert_array_equal(back.labels, lab)
    with pytest.raises(BenchError, match="unknown label style"):
        SF.write_scores(p, ids, s, lab, label_style="yes/no")


def test_score_command_saves_target_labels(tmp_path, trial_set):
    ids = sorted({e for e, *_ in trial_set} | {t.removesuffix(".wav") for _, t, *_ in trial_set})
    emb = np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32)
    write_embeddings(tmp_path / "e.npz", ids, emb)
    out = tmp_path / "saved.txt"
    got = _json(
        _score(
            "--trials",
            tmp_path / "trials.lst",
            "--embeddings",
            tmp_path / "e.npz",
            "--save-scores",
            out,
            "--label-style",
            "target",
            "--json",
        )
    )
    assert {ln.split()[-1] for ln in out.read_text().splitlines()} == {"target", "nontarget"}
    assert _json(_score("--scores", out, "--json"))["eer"] == pytest.approx(got["eer"])


# --------------------------------------------------------------------------------------------
# Embedding files
# --------------------------------------------------------------------------------------------


@pytest.fixture
def emb():
    rng = np.random.default_rng(5)
    ids = [f"id{i:05d}-enroll" for i in range(4)] + [f"test/id{i:05d}-x-{k}" for i in range(4) for k in range(3)]
    return ids, rng.standard_normal((len(ids), 16)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".ark", ".scp"])
def test_embedding_formats_round_trip_bit_exact(tmp_path, emb, suffix):
    ids, mat = emb
    p = tmp_path / f"E{suffix}"
    write_embeddings(p, ids, mat)
    got_ids, got = read_embeddings(p)
    assert got_ids == ids and got.dtype == np.float32
    assert got.tobytes() == mat.tobytes()
    if suffix in (".ark", ".scp"):  # an independent reader sees the same vectors
        loaded = dict(kaldiio.load_ark(str(p)) if suffix == ".ark" else kaldiio.load_scp(str(p)).items())
        assert list(loaded) == ids and all(np.array_equal(loaded[i], mat[k]) for k, i in enumerate(ids))


def test_kaldi_xvector_scp_scores_like_npz(tmp_path, emb):
    """An xvector.scp as Kaldi recipes leave it: relative ark path, one-row matrices in one ark."""
    ids, mat = emb
    d = tmp_path / "exp" / "xvectors"
    d.mkdir(parents=True)
    # kaldiio (not our writer) builds the files, with the ark path relative to exp/xvectors/
    kaldiio.save_ark(
        str(d / "xvector.1.ark"), {i: mat[k][None, :] for k, i in enumerate(ids)}, scp=str(d / "xvector.scp")
    )
    scp = (d / "xvector.scp").read_text().replace(str(d / "xvector.1.ark"), "xvector.1.ark")
    (d / "xvector.scp").write_text(scp)
    write_embeddings(tmp_path / "E.npz", ids, mat)
    (tmp_path / "t.lst").write_text(
        "".join(
            f"id{i:05d}-enroll test/id{j:05d}-x-{k}.wav {int(i == j)}\n"
            for i in range(4)
            for j in range(4)
            for k in range(3)
        )
    )
    a = _json(_score("--trials", tmp_path / "t.lst", "--embeddings", tmp_path / "E.npz", "--json"))
    b = _json(_score("--trials", tmp_path / "t.lst", "--embeddings", d / "xvector.scp", "--json"))
    assert a == b


def test_embedding_format_errors(tmp_path, emb):
    ids, mat = emb
    with pytest.raises(BenchError, match=r"unknown embedding file format '\.h5'; accepted: \.npz .*\.scp"):
        read_embeddings(tmp_path / "E.h5")
    with pytest.raises(BenchError, match="accepted"):
        write_embeddings(tmp_path / "E.txt", ids, mat)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npz").write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(BenchError, match="not an .npz archive|cannot read .npz"):
        read_embeddings(tmp_path / "obj.npz")
    np.save(tmp_path / "M.npy", mat)
    with pytest.raises(BenchError, match="M.ids.txt"):
        read_embeddings(tmp_path / "M.npy")
    (tmp_path / "M.ids.txt").write_text("\n".join(ids[:-1]) + "\n")
    with pytest.raises(BenchError, match="for 15 ids"):
        read_embeddings(tmp_path / "M.npy")
    (tmp_path / "bad.scp").write_text("u1 cat x.ark |\n")
    with pytest.raises(BenchError, match="piped") as e:
        read_embeddings(tmp_path / "bad.scp")
    assert e.value.line == 1
    (tmp_path / "junk.ark").write_bytes(b"\x00\x01not an ark")
    with pytest.raises(BenchError, match="Kaldi"):
        read_embeddings(tmp_path / "junk.ark")
    (tmp_path / "t.lst").write_text("a b 1\n")
    res = _score("--trials", tmp_path / "t.lst", "--embeddings", tmp_path / "x.scpz")
    assert res.exit_code == 2 and "accepted" in res.output


def test_npz_ids_stored_as_bytes_are_decoded_as_utf8(tmp_path, emb):
    """Toolkits that write ids with h5py/Python 2 habits leave a bytes ('S') array: ids are UTF-8."""
    ids, mat = emb
    ids = [*ids[:-1], "test/zoë-ü-1.wav"]  # non-ASCII: decoded as UTF-8, extension stripped as everywhere
    raw = np.array([i.encode("utf-8") for i in ids])
    assert raw.dtype.kind == "S"
    np.savez(tmp_path / "b.npz", ids=raw, embeddings=mat)
    got_ids, got = read_embeddings(tmp_path / "b.npz")
    assert got_ids == [*ids[:-1], "test/zoë-ü-1"] and got.tobytes() == mat.tobytes()
    np.savez(tmp_path / "latin1.npz", ids=np.array([b"caf\xe9", b"b"]), embeddings=mat[:2])
    with pytest.raises(BenchError, match=r"latin1.npz: 'ids' entry 1 is not UTF-8 text") as e:
        read_embeddings(tmp_path / "latin1.npz")
    assert "\n" not in str(e.value)
    # an object array of bytes needs pickle to load, which an input file never gets: a clear refusal
    np.savez(tmp_path / "obj.npz", ids=np.array([i.encode() for i in ids], dtype=object), embeddings=mat)
    with pytest.raises(BenchError, match=r"obj.npz: array 'ids' holds Python objects .*dtype=str") as e:
        read_embeddings(tmp_path / "obj.npz")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        bytes(range(256)) * 3,
        b"enroll test 1\nthis is a text file\n",
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'",
        b"PK\x03\x04\x14\x00",
    ],
    ids=["empty", "random", "text", "npy", "cut-zip"],
)
@pytest.mark.parametrize("suffix", [".npz", ".ark"])
def test_a_junk_embedding_file_is_one_line_naming_the_file_and_the_format(tmp_path, junk, suffix):
    p = tmp_path / f"E{suffix}"
    p.write_bytes(junk)
    with pytest.raises(BenchError) as e:
        read_embeddings(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg
    if suffix == ".npz":
        assert "not an .npz archive" in msg and "numpy.savez" in msg and "pickle" not in msg
    elif junk:
        assert "not a Kaldi archive of vectors" in msg and "copy-vector" in msg and "codec" not in msg
        # the same bytes reached through an scp: the error names the scp line and where it points
        (tmp_path / "E.scp").write_text(f"u0 {p}:0\n")
        with pytest.raises(BenchError) as e:
            read_embeddings(tmp_path / "E.scp")
        assert str(e.value).startswith(f"{tmp_path / 'E.scp'}:1: {p}:0 points at no Kaldi vector (expected a binary")
    else:
        assert msg.endswith("Kaldi file holds no embeddings")


def test_an_npz_without_the_arrays_names_those_it_has(tmp_path):
    np.savez(tmp_path / "E.npz", keys=np.array(["a"]), vectors=np.ones((1, 3)))
    with pytest.raises(BenchError, match=r"E.npz: embedding file needs arrays 'ids' and 'embeddings', "
                                         r"has \['keys', 'vectors'\]$"):  # fmt: skip
        read_embeddings(tmp_path / "E.npz")


def _same(a, b):
    """Reader results compared field by field (dataclasses, frames, dicts, tuples)."""
    import dataclasses

    import pandas as pd

    if hasattr(a, "utt_id") and hasattr(a, "missing"):  # corpus Row: paths differ by folder
        return a.utt_id == b.utt_id and a.speaker == b.speaker and a.src[1] == b.src[1]
    if dataclasses.is_dataclass(a):
        skip = {"path", "description", "sha256"}  # where it came from, not what was read
        a = {k: v for k, v in dataclasses.asdict(a).items() if k not in skip}
        b = {k: v for k, v in dataclasses.asdict(b).items() if k not in skip}
    if isinstance(a, pd.DataFrame):
        return a.drop(columns=["path"]).equals(b.drop(columns=["path"]))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("kind", sorted(READERS))
def test_bom_crlf_and_trailing_blanks_read_like_plain_text(tmp_path, kind):
    import soundfile

    name, first, reader = READERS[kind]
    soundfile.write(
        tmp_path / "a.wav", 0.1 * np.sin(np.arange(1600, dtype=np.float32) * 0.3), 16000
    )  # a signal: silent audio is refused
    plain, odd = tmp_path / "plain", tmp_path / "odd"
    plain.mkdir()
    odd.mkdir()
    shutil.copy(tmp_path / "a.wav", plain / "a.wav")
    shutil.copy(tmp_path / "a.wav", odd / "a.wav")
    (plain / name).write_text(first)
    (odd / name).write_bytes(BOM + first.replace("\n", " \t\r\n").encode() + b"\r\n  \r\n")
    assert _same(reader(plain / name), reader(odd / name))
