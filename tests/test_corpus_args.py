"""One corpus argument everywhere: DIR (layout detected by the CORPORA entries, one level down into
archive folders) or KIND:DIR, for run, tune, eval, embed and data check; evaluation-only corpora."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.data import fixtures
from bench.data.corpus import CORPORA
from bench.data.layout import ARCHIVE_FOLDERS, detect, resolve
from bench.errors import BenchError
from tests.test_crosseval import train_run


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_reader_carries_its_detector(tmp_path):
    assert all(callable(e.detect) and e.summary for e in CORPORA.values())
    roots = {
        "cnceleb": fixtures.write_cnceleb1(tmp_path / "cn1", train_speakers=2, utts=1, eval_speakers=1),
        "synthetic": fixtures.write_cnceleb1(
            tmp_path / "syn", train_speakers=2, utts=2, eval_speakers=1, val_speakers=2
        ),
        "cnceleb2": fixtures.write_cnceleb2(tmp_path / "cn2", speakers=2, utts=1),
        "kaldi": fixtures.write_kaldi(tmp_path / "kal", speakers=2, utts=2),
        "voxceleb": fixtures.write_voxceleb(tmp_path / "vox", train_speakers=1, test_speakers=2, videos=1),
    }
    for kind, root in roots.items():
        # the winner is the entry that scores highest, and the others score strictly less
        scores = {k: e.detect(root) for k, e in CORPORA.items()}
        assert max(scores, key=scores.get) == kind and detect(root).kind == kind
        assert sorted(scores.values())[-2] < scores[kind]


def test_archive_folder_one_level_down(tmp_path):
    ext = tmp_path / "extracted"
    fixtures.write_cnceleb1(ext / "CN-Celeb_flac", train_speakers=2, utts=1, eval_speakers=1)
    choice = detect(ext)
    assert choice.kind == "cnceleb" and choice.root == ext / "CN-Celeb_flac" and "CN-Celeb_flac" in choice.note
    res = invoke("data", "check", ext, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["root"] == str(ext / "CN-Celeb_flac") and "using" in res.stderr
    # with CN-Celeb2 beside it the folder is the cnceleb12 root itself
    fixtures.write_cnceleb2(ext / "CN-Celeb2_flac", speakers=2, utts=1)
    assert detect(ext).kind == "cnceleb12" and detect(ext).root == ext
    vox = tmp_path / "vox"
    fixtures.write_voxceleb(vox / "vox1_test_wav", train_speakers=1, test_speakers=2, videos=1)
    assert detect(vox).root == vox / "vox1_test_wav" and "vox1_test_wav" in ARCHIVE_FOLDERS
    # two different corpora below one folder: refused, both named
    both = tmp_path / "both"
    shutil.copytree(ext / "CN-Celeb_flac", both / "CN-Celeb_flac")
    shutil.copytree(vox / "vox1_test_wav", both / "vox1_test_wav")
    with pytest.raises(BenchError, match=r"CN-Celeb_flac/ \(cnceleb\), vox1_test_wav/ \(voxceleb\)"):
        detect(both)
    # KIND:DIR picks one of them
    assert resolve(f"voxceleb:{both}").root == both / "vox1_test_wav"
    with pytest.raises(BenchError, match="cannot tell the corpus layout"):
        detect(tmp_path / "both" / "vox1_test_wav" / "wav" / "id10002")


def test_kind_dir_everywhere_and_run_detects_kaldi(tmp_path):
    kal = fixtures.write_kaldi(tmp_path / "kal", speakers=3, utts=2)
    res = invoke("run", "--corpus", kal, "--print-config")
    assert res.exit_code == 0, res.output
    assert 'corpus = "kaldi"' in res.stdout and str(kal) in res.stdout  # was the preset's CN-Celeb reader
    res = invoke("run", "--corpus", f"kaldi:{kal}", "--print-config")
    assert res.exit_code == 0 and 'corpus = "kaldi"' in res.stdout
    from bench.commands.run import shortcut_overrides  # what bench tune --corpus goes through too

    assert shortcut_overrides([], backbone=None, corpus=str(kal), experiment=None)[-1] == "data.corpus=kaldi"
    res = invoke("data", "check", f"kaldi:{kal}", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["corpus"] == "kaldi"
    res = invoke("data", "check", f"kaldii:{kal}")
    assert res.exit_code == 2 and "not found" in res.output  # not a kind: the whole text is the folder
    res = invoke("run", "--corpus", tmp_path / "nowhere", "--print-config")
    assert res.exit_code == 2 and "neither a corpus kind" in res.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("args")
    train_root = fixtures.write_cnceleb1(
        base / "demo", train_speakers=4, utts=3, eval_speakers=2, test_utts=2, val_speakers=2, seed=0
    )
    full = fixtures.write_cnceleb1(
        base / "CN-full", train_speakers=3, utts=2, eval_speakers=3, test_utts=2, genres=("vlog", "drama"), seed=7
    )
    evalonly = base / "CN-evalonly"
    shutil.copytree(full / "eval", evalonly / "eval")  # eval/enroll, eval/test, eval/lists; no data/
    # the run writes scores.txt with target/nontarget labels (eval.label_style), read back by the report
    return train_run(base / "runs", train_root, 'eval.label_style="target"'), full, evalonly, base


def _last_column(path: Path) -> set[str]:
    return {ln.split()[-1] for ln in path.read_text().splitlines()}


def test_run_writes_the_label_style_it_was_asked_for(trained):
    from reports.collect import read_scores

    run, *_ = trained
    assert _last_column(run / "scores.txt") == {"target", "nontarget"}
    m = json.loads((run / "metrics.json").read_text())
    df = read_scores(run / "scores.txt")
    from bench.metrics import compute_metrics

    assert compute_metrics(df["score"].to_numpy(), df["label"].to_numpy())["eer"] == pytest.approx(m["overall"]["eer"])


def test_evaluation_only_corpus_is_enough_for_eval_embed_and_check(trained, tmp_path):
    run, full, evalonly, _ = trained
    assert not (evalonly / "data").exists() and detect(evalonly).kind == "cnceleb"
    a = invoke("eval", run, "--corpus", full, "--name", "full", "--json", "--enroll-mode", "concat")
    assert a.exit_code == 0, a.output
    b = invoke(
        "eval", run, "--corpus", f"cnceleb:{evalonly}", "--name", "evalonly", "--json", "--enroll-mode", "concat"
    )
    assert b.exit_code == 0, b.output
    ma, mb = json.loads(a.stdout), json.loads(b.stdout)
    assert ma["overall"] == mb["overall"] and set(mb["per_genre"]) == {"vlog", "drama"}
    res = invoke("eval", run, "--corpus", evalonly, "--name", "x", "--asnorm", "--enroll-mode", "concat")
    assert res.exit_code == 2 and "evaluation-only corpus has no training side" in res.output
    res = invoke("eval", run, "--corpus", evalonly, "--name", "x", "--enroll-mode", "mean")
    assert res.exit_code == 2 and "--enroll-mode concat" in res.output
    assert invoke("eval", run, "--corpus", full, "--name", "m", "--enroll-mode", "mean").exit_code == 0
    res = invoke("embed", run, "--corpus", evalonly, "-o", tmp_path / "E.ark", "--json")
    assert res.exit_code == 0, res.output
    res = invoke("data", "check", evalonly, "--json")
    assert res.exit_code == 0, res.output
    assert "train" not in json.loads(res.stdout)["splits"]
    res = invoke("run", "--corpus", evalonly, "--set", "train.epochs=1", "--json")
    assert res.exit_code == 2 and "evaluation-only" in res.output


def test_kaldi_eval_has_no_genre_rows_and_ark_scores_like_npz(trained, tmp_path):
    run, *_ = trained
    kal = fixtures.write_kaldi(tmp_path / "kal", speakers=3, utts=2)
    res = invoke("eval", run, "--corpus", kal, "--json", "--label-style", "binary")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["per_genre"] == {}
    eval_dir = Path(m["eval_dir"])
    assert _last_column(eval_dir / "scores.txt") == {"1", "0"}  # the option beats the run's 'target'
    assert invoke("eval", run, "--corpus", kal, "--force", "--json").exit_code == 0
    assert _last_column(eval_dir / "scores.txt") == {"target", "nontarget"}  # the run's own style
    table = invoke("eval", run, "--corpus", kal, "--force")
    rows = [ln.split("│")[1].strip() for ln in table.stdout.splitlines() if ln.startswith("│")]
    assert table.exit_code == 0 and rows == ["all"], table.stdout  # no genre rows, no empty-named one
    for fmt in ("npz", "ark", "scp", "npy"):
        res = invoke("embed", run, "--corpus", f"kaldi:{kal}", "-o", tmp_path / f"E.{fmt}", "--json")
        assert res.exit_code == 0, res.output
    got = {}
    for fmt in ("npz", "ark", "scp", "npy"):
        res = invoke("score", "--trials", kal / "trials", "--embeddings", tmp_path / f"E.{fmt}", "--json")
        assert res.exit_code == 0, res.output
        got[fmt] = json.loads(res.stdout)
    assert got["ark"] == got["npz"] == got["scp"] == got["npy"]
    assert got["npz"]["eer"] == pytest.approx(m["overall"]["eer"])
    res = invoke("embed", run, "--corpus", kal, "-o", tmp_path / "E.h5")
    assert res.exit_code == 2 and "accepted" in res.output
    np.testing.assert_array_equal(
        np.load(tmp_path / "E.npy").shape[0], len((tmp_path / "E.ids.txt").read_text().split())
    )
