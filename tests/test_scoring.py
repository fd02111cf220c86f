"""bench.scoring (cosine, AS-norm, file formats) and the `bench score` command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import metrics
from bench import scoring as S
from bench.cli import app
from bench.errors import BenchError

runner = CliRunner()


def _naive_cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def toy(tmp_path):
    """20 speakers, one enrolment and 4 test utterances each, all-pairs trials (CN-Celeb style)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 8))
    ids, emb, trials = [], [], []
    for i in range(20):
        ids.append(f"id{i:05d}-enroll")
        emb.append(centres[i] + 0.9 * rng.standard_normal(8))
        for k in range(4):
            ids.append(f"test/id{i:05d}-speech-{k}")
            emb.append(centres[i] + 0.9 * rng.standard_normal(8))
    for i in range(20):
        for j in range(20):
            for k in range(4):
                trials.append((f"id{i:05d}-enroll", f"test/id{j:05d}-speech-{k}.wav", int(i == j)))
    emb = np.asarray(emb, np.float32)
    S.write_embeddings(tmp_path / "emb.npz", ids, emb)
    (tmp_path / "trials.lst").write_text("".join(f"{e} {t} {lab}\n" for e, t, lab in trials))
    return SimpleNamespace(dir=tmp_path, ids=ids, emb=emb, trials=trials)


def _trials_obj(rows, path="trials.lst"):
    return SimpleNamespace(
        enroll=[e for e, _, _ in rows],
        test=[S.strip_ext(t) for _, t, _ in rows],
        labels=np.array([lab for _, _, lab in rows], bool),
        path=path,
        lines=list(range(1, len(rows) + 1)),
    )


# --------------------------------------------------------------------------------------------
# Cosine scoring and AS-norm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_block", [1 << 22, 7])
def test_cosine_score_matrix_and_gather_paths(toy, max_block):
    look = dict(zip(toy.ids, toy.emb))
    tr = _trials_obj(toy.trials)
    want = np.array([_naive_cos(look[e], look[t]) for e, t in zip(tr.enroll, tr.test)])
    got = S.cosine_score(look, (toy.ids, toy.emb), tr, max_block=max_block)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # sparse trials (few pairs of a big grid) take the gather path
    sub = [toy.trials[i] for i in (0, 17, 400, 1599)]
    got = S.cosine_score((toy.ids, toy.emb), (toy.ids, toy.emb), ([r[0] for r in sub], [r[1] for r in sub]))
    np.testing.assert_allclose(got, [_naive_cos(look[e], look[S.strip_ext(t)]) for e, t, _ in sub], atol=1e-6)


def test_cosine_score_unknown_id_names_line(toy):
    rows = toy.trials[:3] + [("id00000-enroll", "test/nobody.wav", 0)]
    with pytest.raises(BenchError) as e:
        S.cosine_score((toy.ids, toy.emb), (toy.ids, toy.emb), _trials_obj(rows, "t.lst"))
    assert "test/nobody" in str(e.value) and e.value.line == 4 and e.value.path == "t.lst"


def test_asnorm_against_loop():
    rng = np.random.default_rng(1)
    emb = {f"u{i}": rng.standard_normal(6) for i in range(10)}
    cohort = rng.standard_normal((30, 6))
    enroll, test = ["u0", "u1", "u1", "u2"], ["u5", "u6", "u7", "u5"]
    raw = S.cosine_score(emb, emb, (enroll, test))
    got = S.asnorm(raw, enroll, test, emb, cohort, top_k=5, max_block=13)

    def stats(v):
        c = sorted((_naive_cos(v, x) for x in cohort), reverse=True)[:5]
        return np.mean(c), np.std(c)

    for s, e, t, g in zip(raw, enroll, test, got):
        (me, se), (mt, st) = stats(emb[e]), stats(emb[t])
        # float32 embeddings against a float64 loop: the normalised scores reach |30|, so the error is relative
        assert g == pytest.approx(0.5 * ((s - me) / se + (s - mt) / st), rel=2e-6, abs=1e-5)
    whole = S.asnorm(raw, enroll, test, emb, cohort, top_k=10**6)
    assert whole.shape == raw.shape and np.isfinite(whole).all()


def test_mean_enroll_and_map(tmp_path):
    p = tmp_path / "enroll.map"
    p.write_text("spkA a1.wav a2.flac\n\nspkB b1\n")
    mp = S.read_enroll_map(p)
    assert mp == {"spkA": ["a1", "a2"], "spkB": ["b1"]}
    emb = {"a1": np.array([3.0, 0.0]), "a2": np.array([0.0, 1.0]), "b1": np.array([1.0, 1.0])}
    ids, mat = S.mean_enroll(emb, mp)
    assert ids == ["spkA", "spkB"]
    np.testing.assert_allclose(mat[0], [0.5, 0.5], atol=1e-6)
    p.write_text("spkA a1\nspkA a2\n")
    with pytest.raises(BenchError) as e:
        S.read_enroll_map(p)
    assert e.value.line == 2


# --------------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------------


def test_embeddings_roundtrip_and_errors(tmp_path):
    p = tmp_path / "e.npz"
    S.write_embeddings(p, ["a.wav", "b"], np.eye(2, 3))
    ids, mat = S.read_embeddings(p)
    assert ids == ["a", "b"] and mat.dtype == np.float32 and mat.shape == (2, 3)
    np.savez(tmp_path / "dup.npz", ids=np.array(["a", "a"]), embeddings=np.zeros((2, 2), np.float32))
    with pytest.raises(BenchError, match="duplicate id 'a'"):
        S.read_embeddings(tmp_path / "dup.npz")
    np.savez(tmp_path / "nan.npz", ids=np.array(["a", "b"]), embeddings=np.array([[0, 1], [np.nan, 0]], np.float32))
    with pytest.raises(BenchError, match="not finite, first 'b'"):
        S.read_embeddings(tmp_path / "nan.npz")
    np.savez(tmp_path / "keys.npz", names=np.array(["a"]))
    with pytest.raises(BenchError, match="'ids' and 'embeddings'"):
        S.read_embeddings(tmp_path / "keys.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(BenchError, match="junk.npz: not an .npz archive"):
        S.read_embeddings(tmp_path / "junk.npz")


def test_scores_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(2)
    s = rng.standard_normal(50) * 1e-3
    tr = _trials_obj([(f"e{i % 3}", f"t{i}.wav", i % 2) for i in range(50)])
    S.write_scores(tmp_path / "s.txt", tr, s)
    back = S.read_scores(tmp_path / "s.txt")
    np.testing.assert_array_equal(back.scores, s)  # repr round-trips exactly
    np.testing.assert_array_equal(back.labels, tr.labels)
    assert back.test[1] == "t1" and back.lines[0] == 1


@pytest.mark.parametrize(
    "body, line, match",
    [
        ("a b 0.5 1\na c 0.1\n", 2, "3 fields where earlier lines have 4"),
        ("a b 0.5\na c zero\n", 2, "is not a number"),
        ("a b 0.5 1\n# note\na c nan 0\n", 3, "NaN"),
        ("a b 0.5 maybe\n", 1, "not 1/0, target/nontarget or true/false"),
        ("a b\n", 1, "got 2 fields"),
    ],
)
def test_read_scores_errors_name_line(tmp_path, body, line, match):
    p = tmp_path / "s.txt"
    p.write_text(body)
    with pytest.raises(BenchError, match=match) as e:
        S.read_scores(p)
    assert e.value.line == line and e.value.path == str(p)


def test_kaldi_labels_in_score_files(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a b 0.9 target\na c 0.1 nontarget\n")
    assert S.read_scores(p).labels.tolist() == [True, False]


# --------------------------------------------------------------------------------------------
# bench score
# --------------------------------------------------------------------------------------------


def _invoke(*args):
    return runner.invoke(app, ["score", *map(str, args)])


def _err(res):
    return res.output  # Click's runner mixes stderr into output


def test_score_file_with_labels_json(toy):
    tr = _trials_obj(toy.trials)
    s = S.cosine_score((toy.ids, toy.emb), (toy.ids, toy.emb), tr)
    S.write_scores(toy.dir / "scores.txt", tr, s)
    res = _invoke("--scores", toy.dir / "scores.txt", "--json", "--out", toy.dir / "m.json")
    assert res.exit_code == 0, _err(res)
    got = json.loads(res.stdout)
    want = metrics.compute_metrics(s, tr.labels)
    for k, v in want.items():
        assert got[k] == pytest.approx(v)
    assert json.loads((toy.dir / "m.json").read_text())["eer"] == got["eer"]
    table = _invoke("--scores", toy.dir / "scores.txt", "--bootstrap", "50")
    assert table.exit_code == 0 and "EER" in table.stdout and "minDCF (p=0.01)" in table.stdout


def test_score_errors_without_trials(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a b 0.5 1\na c 0.2 1\n")
    res = _invoke("--scores", p)
    assert res.exit_code == 2 and "target trials" in _err(res)
    p.write_text("a b 0.5 1\na c 0.2 0\na b 0.3 0\n")
    res = _invoke("--scores", p)
    assert res.exit_code == 2 and f"{p}:3: duplicate trial 'a b' (first on line 1)" in _err(res)
    p.write_text("a b 0.5\n")
    res = _invoke("--scores", p)
    assert res.exit_code == 2 and "no label column" in _err(res)
    res = _invoke()
    assert res.exit_code == 2 and "exactly one of --scores and --embeddings" in _err(res)


@pytest.fixture
def with_trial_reader():
    return pytest.importorskip("bench.data.trials")


def test_score_join_to_trials(toy, with_trial_reader):
    tr = _trials_obj(toy.trials)
    s = S.cosine_score((toy.ids, toy.emb), (toy.ids, toy.emb), tr)
    # score file without labels, different order, extensions and one extra line
    order = np.random.default_rng(0).permutation(len(s))
    lines = [f"{tr.enroll[i]}.wav {tr.test[i]}.flac {float(s[i])!r}\n" for i in order] + ["x y 0.3\n"]
    (toy.dir / "scores.txt").write_text("".join(lines))
    res = _invoke("--trials", toy.dir / "trials.lst", "--scores", toy.dir / "scores.txt", "--json")
    assert res.exit_code == 0, _err(res)
    got = json.loads(res.stdout)
    assert got["eer"] == pytest.approx(metrics.eer(s, tr.labels)) and got["ignored_score_lines"] == 1
    # a trial without a score: error at its line in the trial list
    del lines[int(np.flatnonzero(order == 41)[0])]
    (toy.dir / "scores.txt").write_text("".join(lines))
    res = _invoke("--trials", toy.dir / "trials.lst", "--scores", toy.dir / "scores.txt")
    assert res.exit_code == 2 and f"trials.lst:42: no score for trial '{tr.enroll[41]} {tr.test[41]}'" in _err(res)


def test_score_label_clash_and_nan(toy, with_trial_reader):
    (toy.dir / "t.lst").write_text("a b 1\na c 0\n")
    (toy.dir / "s.txt").write_text("a b 0.9 1\na c 0.1 1\n")
    res = _invoke("--trials", toy.dir / "t.lst", "--scores", toy.dir / "s.txt")
    assert res.exit_code == 2 and "s.txt:2: label 1 disagrees with the trial list" in _err(res)
    (toy.dir / "s.txt").write_text("a b 0.9\na c NaN\n")
    res = _invoke("--trials", toy.dir / "t.lst", "--scores", toy.dir / "s.txt")
    assert res.exit_code == 2 and "s.txt:2: score is NaN" in _err(res)
    (toy.dir / "t.lst").write_text("a b 1\na c 1\n")
    (toy.dir / "s.txt").write_text("a b 0.9\na c 0.1\n")
    res = _invoke("--trials", toy.dir / "t.lst", "--scores", toy.dir / "s.txt")
    assert res.exit_code == 2 and "all 2 trials are target trials" in _err(res)


def test_score_embeddings(toy, with_trial_reader):
    out = toy.dir / "saved.txt"
    res = _invoke(
        "--trials", toy.dir / "trials.lst", "--embeddings", toy.dir / "emb.npz", "--json", "--save-scores", out
    )
    assert res.exit_code == 0, _err(res)
    tr = _trials_obj(toy.trials)
    s = S.cosine_score((toy.ids, toy.emb), (toy.ids, toy.emb), tr)
    assert json.loads(res.stdout)["eer"] == pytest.approx(metrics.eer(s, tr.labels))
    assert S.read_scores(out).scores.size == len(toy.trials)
    # mean enrolment from a map: models are the enrolment utterances themselves here
    mp = Path(toy.dir / "enroll.map")
    mp.write_text("".join(f"id{i:05d}-enroll id{i:05d}-enroll.wav\n" for i in range(20)))
    res2 = _invoke(
        "--trials", toy.dir / "trials.lst", "--embeddings", toy.dir / "emb.npz", "--enroll-map", mp, "--json"
    )
    assert res2.exit_code == 0 and json.loads(res2.stdout)["eer"] == pytest.approx(json.loads(res.stdout)["eer"])
    (toy.dir / "t2.lst").write_text("id00000-enroll test/id00000-speech-0 1\nid00000-enroll test/ghost.wav 0\n")
    res = _invoke("--trials", toy.dir / "t2.lst", "--embeddings", toy.dir / "emb.npz")
    assert res.exit_code == 2 and "t2.lst:2: test id 'test/ghost' has no embedding" in _err(res)


# --------------------------------------------------------------------------------------------
# Fast score-file parsing agrees with the line-by-line definition
# --------------------------------------------------------------------------------------------


def _parse_both(p):
    out = []
    for reader in (S.read_scores, lambda q: S.ScoreFile(*S._parse_lines(q.read_bytes().decode(), q), q)):
        try:
            sf = reader(p)
            labels = None if sf.labels is None else sf.labels.tolist()
            out.append(("ok", sf.enroll, sf.test, sf.scores.tolist(), labels, sf.lines.tolist()))
        except BenchError as e:
            out.append(("error", str(e), e.line))
    return out


def test_fast_score_parser_equals_line_reader(tmp_path):
    rng = np.random.default_rng(21)
    ids = ["a", "b.wav", "b", "x/y.flac", "NA", "nan", "1", "01", "null", "TRUE", "c.WAV", "#x", 'p"q', "é"]
    vals = ["True", "false", "1_0", "0x10", "nan", "NA", "inf", "-Infinity", "1e500", ".5", "1.", "zero", "5,", "-0.0"]
    labs = ["1", "0", "target", "NonTarget", "true", "01", "1.0", "maybe"]
    p = tmp_path / "s.txt"
    fast = 0
    for _ in range(400):
        ncols, lines = int(rng.choice([3, 4])), []
        for _ in range(rng.integers(1, 5)):
            if rng.random() < 0.05:
                lines.append(str(rng.choice(["", "  ", "# note", "\t"])))
                continue
            weird = rng.random() < 0.1
            f = [
                str(rng.choice(ids[:11] if rng.random() < 0.9 else ids)),
                str(rng.choice(ids[:11])),
                str(rng.choice(vals)) if weird else repr(float(rng.standard_normal())),
                str(rng.choice(labs[:4] if rng.random() < 0.95 else labs)),
            ][:ncols]
            if rng.random() < 0.05:
                f = f[: rng.integers(2, 4)] if rng.random() < 0.5 else [*f, "extra"]
            lines.append(str(rng.choice([" ", "\t", "  "])).join(f))
        body = str(rng.choice(["\n", "\n", "\r\n"])).join(lines) + str(rng.choice(["", "\n", "\n\n"]))
        p.write_bytes(body.encode())
        got, want = _parse_both(p)
        assert got == want, body
        fast += S._parse_fast(p.read_bytes()) is not None
    assert fast > 100  # the fast path really ran


def test_fast_score_parser_is_used_and_exact(tmp_path):
    rng = np.random.default_rng(22)
    s = rng.standard_normal(3000) * 10.0 ** rng.integers(-300, 300, 3000)
    tr = _trials_obj([(f"id{i % 7:05d}-enroll", f"test/u{i}.wav", i % 3 == 0) for i in range(3000)])
    S.write_scores(tmp_path / "s.txt", tr, s)
    data = (tmp_path / "s.txt").read_bytes()
    assert S._parse_fast(data) is not None
    (tmp_path / "b.txt").write_bytes(b"\n" + data.replace(b"\n", b"\n\n", 5))
    for name in ("s.txt", "b.txt"):
        got, want = _parse_both(tmp_path / name)
        assert got == want
        np.testing.assert_array_equal(got[3], s)
        assert got[2][1] == "test/u1"
    assert _parse_both(tmp_path / "b.txt")[0][5][:7] == [2, 4, 6, 8, 10, 12, 13]
