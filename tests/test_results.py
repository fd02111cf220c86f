"""The results schema (bench/results.py): metrics.json records round-trip, files written before the
record existed are read back unchanged, malformed files are one BenchError naming the file, and the
report takes loss and seed from the records, not from folder names.

The "old" files below are the exact key sets the three writers produced before the record (the
runner's evaluate_corpus + experiment, bench eval, the MFCC baseline), typed out from those writers;
reading one and writing it back must give the same JSON object.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json
from bench.results import (
    BUDGET_KEYS,
    METRICS_FILE,
    CrossCorpus,
    MetricsRecord,
    Scoring,
    Training,
    TrialsRef,
)

OVERALL = {
    "eer": 12.5,
    "eer_threshold": 0.31,
    "mindcf@0.01": 0.8,
    "mindcf@0.05": 0.6,
    "cllr": 0.9,
    "min_cllr": 0.5,
    "n_target": 10,
    "n_nontarget": 90,
}
PER_GENRE = {"speech": dict(OVERALL), "singing": {"eer": None, "n_target": 3, "n_nontarget": 0}}
SETTINGS = {
    "enroll_mode": "concat",
    "crops": 0,
    "crop_seconds": None,
    "max_seconds": 0.0,
    "score_norm": "none",
    "asnorm_top": None,
    "cohort_size": None,
}
TRIALS = {"path": "/data/eval/lists/trials.lst", "sha256": "ab" * 32, "n": 100}
BUDGET = {
    "converged": False,
    "stopped_early": False,
    "epochs": 2,
    "max_epochs": 2,
    "steps": 8,
    "samples_seen": 256,
    "best_epoch": None,
    "best_val_eer": None,
    "patience": 3,
    "min_delta": 0.0,
}

# evaluate_corpus's keys, then what bench.runner.experiment added (no fine-tuning)
OLD_TRAINING = {
    "overall": OVERALL,
    "per_genre": PER_GENRE,
    "corpus": "synthetic",
    "enroll_mode": "concat",
    "asnorm": False,
    "crops": 0,
    "eval_settings": SETTINGS,
    "cohort_speakers": None,
    "trials": TRIALS,
    "untrained": {"eer": 48.0},
    "checkpoint": "last",
    **BUDGET,
    "loss": "aam",
    "seed": 1,
    "calibration": {"method": "none"},
}
# a fine-tuning run: parent and the recipe; the untrained model is not scored (null)
OLD_FINETUNE = {
    **OLD_TRAINING,
    "untrained": None,
    "parent": "runs/e/aam/seed1",
    "finetune": {"recipe": "lm", "params": {"margin": 0.5}, "init": "best"},
}
# evaluate_corpus's keys, then what bench eval added
OLD_CROSS = {
    "overall": OVERALL,
    "per_genre": {},
    "corpus": "cnceleb",
    "enroll_mode": "mean",
    "asnorm": True,
    "crops": 3,
    "eval_settings": {**SETTINGS, "score_norm": "asnorm"},
    "cohort_speakers": 7,
    "trials": {**TRIALS, "sha256": None},
    "eval_corpus": "cnceleb",
    "eval_corpus_type": "cnceleb",
    "eval_corpus_root": "/data/cn",
    "train_corpus": "synthetic",
    "train_corpus_root": "/data/syn",
    "cross_corpus": True,
    "checkpoint": "best",
    "loss": "softmax",
    "seed": 0,
}
# bench.realvoices.baseline
OLD_BASELINE = {
    "overall": OVERALL,
    "per_genre": PER_GENRE,
    "corpus": "real",
    "eval_corpus": "real",
    "train_corpus": "non-learned",
    "eval_corpus_root": "/data/real",
    "cross_corpus": True,
    "enroll_mode": "concat",
    "loss": "mfcc-baseline",
    "seed": 0,
    "method": "mfcc-mean-cosine",
    "trials": TRIALS,
}
# the oldest form the report reads: no loss, seed, eval_settings, checkpoint
OLD_MINIMAL = {
    "overall": {"eer": 3.0},
    "trials": {"path": "t.lst", "sha256": "x"},
    "corpus": "synthetic",
    "enroll_mode": "concat",
    "asnorm": False,
    "crops": 0,
}

OLD_FILES = {"training": OLD_TRAINING, "finetune": OLD_FINETUNE, "cross": OLD_CROSS, "baseline": OLD_BASELINE}


def _write(path: Path, obj: dict) -> Path:
    atomic_write_json(path, obj)
    return path


@pytest.mark.parametrize("kind", sorted(OLD_FILES))
def test_files_of_every_writer_read_back_and_rewrite_unchanged(tmp_path, kind):
    old = copy.deepcopy(OLD_FILES[kind])
    rec = MetricsRecord.from_json(_write(tmp_path / METRICS_FILE, old))
    assert rec.to_json() == old
    assert json.loads((tmp_path / METRICS_FILE).read_text()) == old  # reading never touches the file
    rec.write(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == old
    assert rec.overall == old["overall"] and rec.loss == old.get("loss") and rec.seed == old.get("seed")


def test_the_oldest_form_is_read_and_rewritten_with_empty_defaults_only(tmp_path):
    rec = MetricsRecord.from_json(_write(tmp_path / METRICS_FILE, copy.deepcopy(OLD_MINIMAL)))
    assert rec.overall == {"eer": 3.0} and rec.per_genre == {} and rec.loss is None and rec.seed is None
    assert rec.trials == TrialsRef(path="t.lst", sha256="x", n=None) and rec.training is None and rec.cross is None
    assert rec.scoring == Scoring(asnorm=False, crops=0, eval_settings=None, cohort_speakers=None)
    flat = rec.to_json()
    added = {k: v for k, v in flat.items() if k not in OLD_MINIMAL}
    assert added == {"per_genre": {}, "cohort_speakers": None}
    assert flat["trials"] == {**OLD_MINIMAL["trials"], "n": None}
    assert MetricsRecord.from_dict(flat) == rec


def test_groups_are_typed_where_they_were_written():
    tr = MetricsRecord.from_dict(copy.deepcopy(OLD_TRAINING))
    assert tr.cross is None and tr.training is not None and tr.scoring is not None
    assert tr.training.budget == BUDGET and tr.training.checkpoint == "last" and tr.checkpoint == "last"
    assert tr.calibration == {"method": "none"} and tr.trials == TrialsRef(**TRIALS)
    cr = MetricsRecord.from_dict(copy.deepcopy(OLD_CROSS))
    assert cr.training is None and cr.cross is not None
    assert cr.cross.train_corpus == "synthetic" and cr.checkpoint == "best" and cr.scoring.cohort_speakers == 7
    assert cr.trials is not None and cr.trials.sha256 is None
    base = MetricsRecord.from_dict(copy.deepcopy(OLD_BASELINE))
    assert base.scoring is None and base.cross is not None and base.cross.checkpoint is None
    assert base.method == "mfcc-mean-cosine"
    ft = MetricsRecord.from_dict(copy.deepcopy(OLD_FINETUNE))
    assert ft.training is not None and ft.training.finetune["recipe"] == "lm" and ft.training.untrained is None
    assert "untrained" in ft.to_json()  # a null untrained score is written, not dropped


def test_record_built_in_code_round_trips(tmp_path):
    rec = MetricsRecord(
        overall=dict(OVERALL),
        per_genre=copy.deepcopy(PER_GENRE),
        trials=TrialsRef(path="t.lst", sha256="cd" * 32, n=100),
        corpus="synthetic",
        enroll_mode="concat",
        scoring=Scoring(asnorm=True, crops=2, eval_settings=dict(SETTINGS), cohort_speakers=9),
        training=Training(
            untrained={"eer": 50.0},
            checkpoint="best",
            budget=dict(BUDGET),
            calibration={"method": "linear", "weights": [1.5], "bias": -0.2},
        ),
        loss="aam",
        seed=4,
        extra={"from_a_newer_version": [1, 2]},
    )
    rec.write(tmp_path / METRICS_FILE)
    back = MetricsRecord.from_json(tmp_path / METRICS_FILE)
    assert back == rec
    assert back["from_a_newer_version"] == [1, 2]  # unknown keys survive a round trip
    cross = dataclasses.replace(
        rec,
        training=None,
        extra={},
        cross=CrossCorpus(
            eval_corpus="vox",
            train_corpus="synthetic",
            eval_corpus_root="/v",
            eval_corpus_type="voxceleb",
            checkpoint="last",
        ),
    )
    cross.write(tmp_path / "cross.json")
    assert MetricsRecord.from_json(tmp_path / "cross.json") == cross
    assert json.loads((tmp_path / "cross.json").read_text())["cross_corpus"] is True


def test_non_finite_numbers_are_written_as_null(tmp_path):
    rec = MetricsRecord(overall={"eer": 10.0, "cllr": float("inf")}, loss="aam", seed=0)
    rec.write(tmp_path / METRICS_FILE)
    text = (tmp_path / METRICS_FILE).read_text()
    assert "Infinity" not in text and json.loads(text)["overall"]["cllr"] is None
    assert MetricsRecord.from_json(tmp_path / METRICS_FILE).overall["cllr"] is None


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ('{"overall": {"eer": 1.0},\n "trials": }', "invalid JSON", 2),
        ("[1, 2]", "expected a JSON object", None),
        ('{"per_genre": {}}', "has no 'overall' metrics with an 'eer'", None),
        ('{"overall": {"auc": 0.5}}', "has no 'overall' metrics with an 'eer'", None),
        ('{"overall": {"eer": 1.0}, "trials": "t.lst"}', "'trials' should be an object with path and sha256", None),
        ('{"overall": {"eer": 1.0}, "seed": "one"}', "'seed' should be an integer, got str", None),
        ('{"overall": {"eer": 1.0}, "seed": true}', "'seed' should be an integer, got bool", None),
        ('{"overall": {"eer": 1.0}, "loss": 3}', "'loss' should be a loss name, got int", None),
        ('{"overall": {"eer": 1.0}, "per_genre": []}', "'per_genre' should be an object", None),
        ('{"overall": {"eer": 1.0}, "untrained": 5, "epochs": 1}', "'untrained' should be an object", None),
    ],
)
def test_malformed_files_name_the_file(tmp_path, content, message, line):
    path = tmp_path / "run" / METRICS_FILE
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(BenchError) as e:
        MetricsRecord.from_json(path)
    assert message in e.value.message
    assert e.value.path is not None and Path(e.value.path) == path and e.value.line == line
    assert str(path) in str(e.value)


def test_missing_file_is_a_bench_error(tmp_path):
    with pytest.raises(BenchError, match="not found") as e:
        MetricsRecord.from_json(tmp_path / METRICS_FILE)
    assert Path(e.value.path) == tmp_path / METRICS_FILE


def test_budget_keys_are_the_runners_budget():
    from bench.runner.convergence import Budget

    assert BUDGET_KEYS == tuple(f.name for f in dataclasses.fields(Budget))


def test_results_module_is_torch_free():
    import subprocess
    import sys

    code = "import sys, bench.results, reports.collect; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ what the report makes of them


def _run_folder(
    root: Path, loss_dir: str, seed_dir: str, metrics: dict, run_json: dict | None = None, config: str | None = None
) -> Path:
    d = root / "exp" / loss_dir / seed_dir
    d.mkdir(parents=True)
    _write(d / METRICS_FILE, metrics)
    if run_json is not None:
        _write(d / "run.json", run_json)
    if config is not None:
        atomic_write(d / "config.toml", config)
    return d


def test_report_takes_loss_and_seed_from_the_records_not_folder_names(tmp_path):
    from reports.collect import load_run

    # folders renamed by hand: the records still say what the run was
    d = _run_folder(tmp_path, "renamed", "seed9", {**OLD_TRAINING, "loss": "aam", "seed": 1})
    run = load_run(d)
    assert (run.loss, run.seed) == ("aam", 1)
    # an older metrics.json without loss/seed: run.json has them
    d = _run_folder(
        tmp_path, "renamed2", "seed9", OLD_MINIMAL, run_json={"status": "finished", "loss": "circle", "seed": 3}
    )
    run = load_run(d)
    assert (run.loss, run.seed, run.status) == ("circle", 3, "finished")
    # the oldest folders record neither: config.toml, else the folder names, are the fallback
    d = _run_folder(tmp_path, "softmax", "seed5", OLD_MINIMAL)
    assert (load_run(d).loss, load_run(d).seed) == ("softmax", 5)
    d = _run_folder(tmp_path, "x", "seed6", OLD_MINIMAL, config='[loss]\nname = "am"\n[train]\nseed = 2\n')
    assert (load_run(d).loss, load_run(d).seed) == ("am", 2)


def test_report_reads_cross_corpus_budget_from_the_training_run(tmp_path):
    from reports.collect import load_run

    run = _run_folder(tmp_path, "aam", "seed1", OLD_TRAINING, run_json={"status": "finished", **BUDGET, "epochs": 7})
    cross = run / "eval" / "cnceleb"
    cross.mkdir(parents=True)
    _write(cross / METRICS_FILE, {**OLD_CROSS, "loss": "aam", "seed": 1, "trials": TRIALS})
    r = load_run(cross)
    assert (r.train_corpus, r.eval_corpus, r.loss, r.seed) == ("synthetic", "cnceleb", "aam", 1)
    assert r.training["epochs"] == 7 and r.training["checkpoint"] == "best"  # run.json's budget, its own checkpoint
    own = load_run(run)
    assert own.training["epochs"] == 2 and own.eval_settings == SETTINGS and own.calibration == {"method": "none"}


def test_report_refuses_a_malformed_record_by_file(tmp_path):
    from reports.collect import load_run

    d = _run_folder(tmp_path, "aam", "seed0", {"overall": {"eer": 1.0}, "seed": "zero"})
    with pytest.raises(BenchError, match="'seed' should be an integer") as e:
        load_run(d)
    assert Path(e.value.path) == d / METRICS_FILE


# ------------------------------------------------------------------ trials hashed where read


def test_trial_reader_records_the_sha256_of_the_bytes_it_parsed(tmp_path):
    from bench.data.trials import read_trials

    body = b"\xef\xbb\xbfa-enroll test/x.wav 1\r\nb-enroll test/y.wav 0\r\n"
    (tmp_path / "t.lst").write_bytes(body)
    t = read_trials(tmp_path / "t.lst")
    assert t.sha256 == hashlib.sha256(body).hexdigest()
    assert (t.enroll, t.test, t.labels.tolist()) == (["a-enroll", "b-enroll"], ["test/x", "test/y"], [True, False])


def test_evaluate_records_the_readers_hash_and_falls_back_to_the_file(tmp_path):
    from bench.data.trials import Trials, read_trials
    from bench.runner.evaluate import trials_sha256

    (tmp_path / "t.lst").write_text("a b 1\nc d 0\n")
    t = read_trials(tmp_path / "t.lst")
    assert trials_sha256(t) == hashlib.sha256(b"a b 1\nc d 0\n").hexdigest()
    subset = Trials(t.enroll[:1], t.test[:1], t.labels[:1], t.path, t.format, t.lines[:1])  # as skip_bad builds
    assert trials_sha256(subset) == t.sha256
    generated = Trials(["a"], ["b"], np.array([True]), path="<generated validation trials>")
    assert trials_sha256(generated) is None


# ------------------------------------------------------------------ one Embeddings type through scoring


def test_scoring_takes_embeddings_and_trials_as_they_are():
    """Cosine scores of Embeddings + Trials equal a brute-force loop; the CN-Celeb ``enroll/`` ids map."""
    from bench.data.trials import Trials
    from bench.runner.evaluate import score_trials
    from bench.scoring import Embeddings, cosine_score

    rng = np.random.default_rng(3)
    e_ids, t_ids = ["enroll/m0", "enroll/m1"], ["test/a", "test/b", "test/c"]
    e = Embeddings(e_ids, rng.standard_normal((2, 5)).astype(np.float32))
    t = Embeddings(t_ids, rng.standard_normal((3, 5)).astype(np.float32))
    pairs = [(0, 0), (1, 2), (0, 1), (1, 0)]
    trials = Trials(
        [f"m{i}" for i, _ in pairs],
        [t_ids[j] for _, j in pairs],
        np.array([True, True, False, False]),
        path="t.lst",
        lines=[1, 2, 3, 4],
    )
    want = [
        float(e.matrix[i] @ t.matrix[j] / np.linalg.norm(e.matrix[i]) / np.linalg.norm(t.matrix[j])) for i, j in pairs
    ]
    ts = score_trials(e, t, trials)
    np.testing.assert_allclose(ts.scores, want, rtol=1e-5)
    assert ts.enroll == trials.enroll  # scores keep the trial list's own ids
    np.testing.assert_allclose(
        cosine_score((e.ids, e.matrix), (t.ids, t.matrix), trials, enroll_ids=[f"enroll/{u}" for u in trials.enroll]),
        want,
        rtol=1e-5,
    )
    with pytest.raises(BenchError, match="test id 'test/zz' has no embedding") as err:
        score_trials(e, t, dataclasses.replace(trials, test=["test/a", "test/zz", "test/a", "test/a"]))
    assert (err.value.path, err.value.line) == ("t.lst", 2)


def test_embeddings_concat_keeps_the_first_of_each_id_and_checks_shapes():
    from bench.scoring import Embeddings

    a = Embeddings(["u", "v"], np.array([[1, 0], [0, 1]], np.float32))
    b = Embeddings(["v", "w"], np.array([[5, 5], [2, 2]], np.float32))
    c = Embeddings.concat([a, b])
    assert c.ids == ["u", "v", "w"] and c.matrix.tolist() == [[1, 0], [0, 1], [2, 2]] and c.dim == 2
    assert "w" in c and "x" not in c and len(c) == 3
    assert Embeddings.concat([]).matrix.shape == (0, 0)
    with pytest.raises(ValueError):
        Embeddings(["u"], np.zeros((2, 3), np.float32))
