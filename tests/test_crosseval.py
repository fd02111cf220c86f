"""Cross-corpus evaluation: `bench embed` and `bench eval` on a run trained by the test.

One tiny run is trained once per module (tiny ECAPA narrowed further, 1 epoch of 2 steps, clean
views only) on a tone corpus in the CN-Celeb layout; a second corpus with other speakers and seed
is the cross-corpus target. Expected scores are recomputed here with plain numpy from the npz.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.config import DataConfig, load_config
from bench.errors import BenchError
from tests.runner_helpers import TINY_MODEL

TINY = [
    "model.backbone=tiny",
    *TINY_MODEL,
    "model.frontend.specaug=false",
    "data.corpus=synthetic",
    "data.views=1",
    'data.view_types=["clean"]',
    "data.crop_seconds=0.5",
    "data.speakers_per_batch=4",
    "data.utts_per_speaker=2",
    "data.workers=0",
    "loss.name=aam",
    "optim.optimizer=sgd",
    "optim.lr=0.05",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.device=cpu",
    "eval.batch_size=8",
    "eval.untrained=false",
]


def train_run(out: Path, corpus_root: Path, *extra: str) -> Path:
    """Train one tiny run on ``corpus_root`` into ``out``; returns its run directory."""
    from bench.runner.experiment import run_experiment

    cfg = load_config(overrides=[*TINY, f'data.root="{corpus_root}"', 'experiment="x"', *extra])
    (outcome,) = run_experiment(cfg, [cfg.loss.name], [0], out)
    assert outcome.action == "trained", outcome.error
    return Path(outcome.run_dir)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(run dir, training corpus, a second CN-Celeb-layout corpus with other speakers)."""
    from bench.data.fixtures import write_cnceleb1

    base = tmp_path_factory.mktemp("xeval")
    train_root = write_cnceleb1(
        base / "demo", train_speakers=4, utts=3, eval_speakers=2, test_utts=2, val_speakers=2, seed=0
    )
    other = write_cnceleb1(
        base / "CN-other",
        train_speakers=9,  # its evaluation speakers get tones no training speaker of "demo" has
        utts=2,
        eval_speakers=3,
        test_utts=2,
        genres=("vlog", "drama"),
        seed=7,
    )
    return train_run(base / "runs", train_root), train_root, other


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def cosine_reference(npz: Path, trials_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scores recomputed from the npz with numpy alone: normalise, dot product per trial line."""
    z = np.load(npz)
    ids = [str(i) for i in z["ids"]]
    mat = z["embeddings"].astype(np.float64)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    row = {u: i for i, u in enumerate(ids)}
    scores, labels = [], []
    for line in trials_path.read_text().split("\n"):
        if not line.strip():
            continue
        e, t, lab = line.split()
        scores.append(mat[row[e]] @ mat[row[t.removesuffix(".wav")]])
        labels.append(lab == "1")
    return np.array(scores), np.array(labels)


def test_embed_file_scores_like_numpy_and_bench_score(world, tmp_path):
    run, _, other = world
    npz = tmp_path / "emb.npz"
    res = invoke("embed", run, "--corpus", other, "--out", npz, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    z = np.load(npz)
    assert z["embeddings"].dtype == np.float32
    # 3 enrolment files + 3 x 2 enrolment-map utterances + 3 x 2 test utterances
    assert info["utterances"] == len(z["ids"]) == 15 and info["dim"] == 16
    # the weights the run scored itself (it finished its schedule: last), not whichever is lowest
    assert info["checkpoint"] == json.loads((Path(run) / "metrics.json").read_text())["checkpoint"] == "last"
    trials = other / "eval" / "lists" / "trials.lst"
    ref, labels = cosine_reference(npz, trials)

    saved = tmp_path / "scores.txt"
    res = invoke("score", "--embeddings", npz, "--trials", trials, "--save-scores", saved, "--json")
    assert res.exit_code == 0, res.output
    got = np.array([float(line.split()[2]) for line in saved.read_text().splitlines()])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert not np.allclose(ref, ref[0])  # a degenerate model would make the comparison vacuous

    # in-process: the run's model embedding the same utterances gives the same scores
    from bench import crosseval
    from bench.config import EvalConfig
    from bench.runner.evaluate import score_trials

    rm = crosseval.load_run_model(run)
    corpus = crosseval.load_eval_corpus(rm.cfg, other, None, None)
    embed = crosseval.embedder(rm, EvalConfig(batch_size=3))
    ts = score_trials(embed(corpus.enroll), embed(corpus.test), corpus.trials)
    np.testing.assert_allclose(ts.scores, ref, atol=1e-5)
    np.testing.assert_array_equal(ts.labels, labels)


def test_embed_list_crops_and_refusals(world, tmp_path):
    run, _, other = world
    lst = tmp_path / "utts.lst"
    lst.write_text("# a comment\ntest/id00009-vlog-02-001.wav\nmine eval/test/id00010-drama-02-002.wav\n\n")
    full, cropped = tmp_path / "full.npz", tmp_path / "crops.npz"
    assert invoke("embed", run, "--corpus", other, "--list", lst, "--out", full).exit_code == 0
    assert [str(i) for i in np.load(full)["ids"]] == ["test/id00009-vlog-02-001", "mine"]
    res = invoke("embed", run, "--corpus", other, "--list", lst, "--crops", "3", "--checkpoint", "last", "-o", cropped)
    assert res.exit_code == 0, res.output
    a, b = np.load(full)["embeddings"], np.load(cropped)["embeddings"]
    assert a.shape == b.shape and not np.allclose(a, b)  # crops change the embedding
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)

    res = invoke("embed", run, "--corpus", other, "--list", lst, "--out", full)
    assert res.exit_code == 2 and "--force" in res.output and "full.npz" in res.output
    lst.write_text("test/nope.wav\n")
    res = invoke("embed", run, "--corpus", other, "--list", lst, "--out", tmp_path / "x.npz")
    assert res.exit_code == 2 and "utts.lst:1" in res.output and "nope.wav" in res.output


def test_eval_writes_results_refuses_overwrite_and_is_reported(world, tmp_path):
    run, _, other = world
    res = invoke("eval", run, "--corpus", other, "--json")
    assert res.exit_code == 0, res.output
    d = run / "eval" / "cnceleb"
    assert sorted(p.name for p in d.iterdir()) == ["embeddings.npz", "metrics.json", "provenance.json", "scores.txt"]
    m = json.loads((d / "metrics.json").read_text())
    own = json.loads((run / "metrics.json").read_text())
    for key in ("overall", "per_genre", "trials", "enroll_mode", "corpus"):
        assert key in m and key in own
    assert (m["train_corpus"], m["eval_corpus"], m["corpus"]) == ("synthetic", "cnceleb", "cnceleb")
    trials = other / "eval" / "lists" / "trials.lst"
    import hashlib

    assert m["trials"]["sha256"] == hashlib.sha256(trials.read_bytes()).hexdigest()
    assert sorted(m["per_genre"]) == ["drama", "vlog"]
    assert m["trials"]["n"] == 18 and m["overall"]["n_target"] == 6

    # the recorded scores are the cosine of the recorded embeddings, and the metrics are those of the scores
    ref, labels = cosine_reference(d / "embeddings.npz", trials)
    lines = [ln.split() for ln in (d / "scores.txt").read_text().splitlines()]
    np.testing.assert_allclose([float(x[2]) for x in lines], ref, atol=1e-6)
    assert [x[3] == "1" for x in lines] == labels.tolist()
    from bench.metrics import compute_metrics

    assert m["overall"]["eer"] == pytest.approx(compute_metrics(ref, labels)["eer"], abs=1e-6)

    before = (d / "metrics.json").read_bytes()
    res = invoke("eval", run, "--corpus", other)
    assert res.exit_code == 2 and "--force" in res.output
    assert (d / "metrics.json").read_bytes() == before
    res = invoke("eval", run, "--corpus", other, "--enroll-mode", "mean", "--force", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads((d / "metrics.json").read_text())["enroll_mode"] == "mean"
    assert not [p for p in (run / "eval").iterdir() if p.name.startswith(".")]  # no temp folders left

    from reports.collect import group_systems, load_runs

    runs = load_runs([run])
    assert sorted((r.train_corpus, r.eval_corpus) for r in runs) == [
        ("synthetic", "cnceleb"),
        ("synthetic", "synthetic"),
    ]
    systems = group_systems(runs)
    assert "synthetic -> cnceleb" in systems["cnceleb"][0].label
    assert "->" not in systems["synthetic"][0].label


def test_eval_name_rules(world, tmp_path):
    run, train_root, other = world
    res = invoke("eval", run, "--corpus", other, "--name", "synthetic")
    assert res.exit_code == 2 and "training corpus" in res.output
    res = invoke("eval", run, "--corpus", other, "--name", "../x")
    assert res.exit_code == 2 and "folder name" in res.output
    from bench import crosseval

    cfg = crosseval.read_run_config(run)
    assert crosseval.default_name(cfg, "cnceleb", other) == "cnceleb"
    assert crosseval.default_name(cfg, "synthetic", train_root) == "synthetic-demo"
    res = invoke("eval", run, "--corpus", tmp_path)
    assert res.exit_code == 2 and "cannot tell the corpus layout" in res.output and "KIND:DIR" in res.output


def _broken_run(world, tmp_path) -> Path:
    """A copy of the trained run whose checkpoints the test may damage."""
    run = world[0]
    dst = tmp_path / "run"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("eval", ".lock"))
    return dst


def test_missing_and_truncated_checkpoints_name_the_file(world, tmp_path):
    run = _broken_run(world, tmp_path)
    other = world[2]
    res = invoke("embed", run, "--corpus", other, "--checkpoint", tmp_path / "none.pt", "-o", tmp_path / "a.npz")
    assert res.exit_code == 2 and "none.pt" in res.output and "not found" in res.output
    last = run / "checkpoints" / "last.pt"  # the one the run scored, so the default
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    res = invoke("eval", run, "--corpus", other)
    assert res.exit_code == 2 and "last.pt" in res.output and "unreadable checkpoint" in res.output
    assert not (run / "eval" / "cnceleb").exists()
    last.unlink()
    (run / "checkpoints" / "best.pt").unlink()
    res = invoke("embed", run, "--corpus", other, "-o", tmp_path / "b.npz")
    assert res.exit_code == 2 and "last.pt" in res.output
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


def test_checkpoint_of_another_model_is_refused(world, tmp_path):
    run = _broken_run(world, tmp_path)
    best = run / "checkpoints" / "best.pt"
    ck = torch.load(best, weights_only=False)
    # a checkpoint from a run with another embedding size: its own config is consistent, config.toml is not
    from bench.config import ExperimentConfig
    from bench.registry import config_from_mapping
    from models import build_model

    foreign = dict(ck, config=json.loads(json.dumps(ck["config"])))
    foreign["config"]["model"]["params"]["embed_dim"] = 8
    other_model = build_model(config_from_mapping(ExperimentConfig, foreign["config"]).model)
    foreign["model"] = other_model.state_dict()
    from bench.io import atomic_save

    atomic_save(best, lambda fh: torch.save(foreign, fh))
    with pytest.raises(BenchError, match="another model") as e:
        from bench.crosseval import load_run_model

        load_run_model(run, "best")
    assert e.value.path and str(e.value.path).endswith("best.pt") and "embed_dim" in str(e.value)
    # weights that do not fit the backbone their checkpoint names
    bad = dict(ck, model={k: v[..., :1] if v.ndim else v for k, v in ck["model"].items()})
    atomic_save(best, lambda fh: torch.save(bad, fh))
    res = invoke("embed", run, "--corpus", world[2], "--checkpoint", "best", "-o", tmp_path / "c.npz")
    assert res.exit_code == 2 and "best.pt" in res.output and "does not fit" in res.output


def test_eval_refuses_unfinished_run_and_detects_layouts(world, tmp_path):
    from bench import crosseval
    from bench.data.fixtures import write_kaldi, write_voxceleb

    run = _broken_run(world, tmp_path)
    rec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(rec, status="running")))
    res = invoke("eval", run, "--corpus", world[2])
    assert res.exit_code == 2 and "not finished" in res.output
    assert crosseval.detect_corpus_type(world[2]) == "cnceleb"
    assert crosseval.detect_corpus_type(write_kaldi(tmp_path / "k")) == "kaldi"
    assert crosseval.detect_corpus_type(write_voxceleb(tmp_path / "v")) == "voxceleb"
    cfg = crosseval.eval_data_config(crosseval.read_run_config(run), tmp_path / "v", None, None)
    assert isinstance(cfg, DataConfig) and cfg.corpus == "voxceleb" and cfg.train_lists == []


def test_default_checkpoint_is_the_one_the_run_scored(world, tmp_path):
    """A cross-corpus result must be of the weights behind the run's own result: metrics.json's
    ``checkpoint`` when recorded, else best, else last."""
    import shutil

    from bench.runmodel import checkpoint_path

    run = tmp_path / "run"
    shutil.copytree(world[0], run)
    ck = run / "checkpoints"
    assert (ck / "best.pt").exists() and (ck / "last.pt").exists()
    for recorded, expected in (("last", "last"), ("best", "best"), (None, "best"), ("junk", "best")):
        m = json.loads((run / "metrics.json").read_text())
        m["checkpoint"] = recorded
        (run / "metrics.json").write_text(json.dumps(m))
        assert checkpoint_path(run, None) == (ck / f"{expected}.pt", expected), recorded
    (run / "metrics.json").write_text("{not json")
    assert checkpoint_path(run, None)[1] == "best"
    (ck / "best.pt").unlink()
    assert checkpoint_path(run, None)[1] == "last"
    assert checkpoint_path(run, "best") == (ck / "best.pt", "best")  # explicit: loading it is the error
