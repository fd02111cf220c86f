"""`bench data check`: summary on good corpora, non-zero exit listing the problems on bad ones."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from bench.cli import app
from bench.config import DataConfig
from bench.data import fixtures
from bench.data.check import check_corpus, detect_corpus

runner = CliRunner()


def test_check_good_cnceleb_corpus_json(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=3, utts=2, eval_speakers=2)
    res = runner.invoke(app, ["data", "check", str(root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["corpus"] == "cnceleb" and report["problems"] == []
    assert report["splits"]["train"]["speakers"] == 3 and report["splits"]["train"]["utterances"] == 6
    assert report["splits"]["test"]["utterances"] == 4
    assert report["genres"]["singing"]["train_utts"] == 3 and report["genres"]["speech"]["test_utts"] == 2
    assert report["trials"]["eval"] == {"trials": 8, "target": 4, "nontarget": 4}
    hours = (
        sum(
            sf.info(str(p)).duration
            for p in (root / "data").rglob("*.flac")
            if p.parent.name in {"id00000", "id00001", "id00002"}
        )
        / 3600
    )
    assert abs(report["splits"]["train"]["hours"] - hours) < 1e-9


def test_check_table_output(tmp_path):
    root = fixtures.write_voxceleb(tmp_path)
    res = runner.invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 0, res.output
    assert "voxceleb" in res.output and "utterances" in res.output and "no problems found" in res.output


def test_check_lists_problems_and_exits_nonzero(tmp_path):
    root = fixtures.write_cnceleb1(tmp_path, train_speakers=3, utts=2, eval_speakers=1)
    corrupt = root / "data" / "id00001" / "speech-01-002.flac"
    corrupt.write_text("not audio")
    (root / "eval" / "test" / "id00003-singing-02-001.flac").unlink()
    wrong_rate = root / "data" / "id00002" / "singing-01-001.flac"
    fixtures.write(wrong_rate, np.full(4000, 0.1, dtype=np.float32), sr=8000)
    res = runner.invoke(app, ["data", "check", str(root), "--corpus", "cnceleb"])
    assert res.exit_code == 1
    out = res.output
    assert str(corrupt) in out and "unreadable" in out
    assert "id00003-singing-02-001" in out and "not found" in out
    assert str(wrong_rate) in out and "8000 Hz" in out


def test_check_structural_error_exit_2(tmp_path):
    res = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert res.exit_code == 2 and "cannot tell the corpus layout" in res.output


def test_detect_corpus_layouts(tmp_path):
    fixtures.write_cnceleb1(tmp_path / "cn1", train_speakers=2, utts=1, eval_speakers=1)
    fixtures.write_cnceleb1(tmp_path / "syn", train_speakers=2, utts=2, eval_speakers=1, val_speakers=2)
    fixtures.write_cnceleb2(tmp_path / "cn2", speakers=2, utts=1)
    fixtures.write_kaldi(tmp_path / "kal", speakers=2, utts=2)
    fixtures.write_voxceleb(tmp_path / "vox", train_speakers=1, test_speakers=2, videos=1)
    got = {n: detect_corpus(tmp_path / n) for n in ("cn1", "syn", "cn2", "kal", "vox")}
    assert got == {"cn1": "cnceleb", "syn": "synthetic", "cn2": "cnceleb2", "kal": "kaldi", "vox": "voxceleb"}


def test_check_deep_decodes(tmp_path):
    root = fixtures.write_kaldi(tmp_path, speakers=2, utts=2)
    report = check_corpus(DataConfig(corpus="kaldi", root=str(root)), deep=True)
    assert report.problems == [] and report.splits["test"]["utterances"] == 2
