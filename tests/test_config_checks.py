"""Every config setting has a range, checked when the config is read; AS-norm against a hand loop;
metrics.json records the settings that change scores and bench report refuses to pool differing runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig, load_config
from bench.config_checks import RANGES, check_tune
from bench.errors import BenchError
from bench.tune.options import TuneConfig

pytest_plugins = ["tests.faults"]


def _keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf setting of a config dataclass, as ``section.key`` (nested sections walked)."""
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        out += _keys(type(default), key) if dataclasses.is_dataclass(default) else [key]
    return out


EXPERIMENT_KEYS = _keys(ExperimentConfig)
TUNE_KEYS = _keys(TuneConfig, "tune")


def test_every_setting_of_every_section_has_a_range():
    missing = [k for k in EXPERIMENT_KEYS + TUNE_KEYS if k not in RANGES]
    assert not missing, f"settings without a range in bench/config_checks.py RANGES: {missing}"
    stale = sorted(set(RANGES) - set(EXPERIMENT_KEYS) - set(TUNE_KEYS))
    assert not stale, f"RANGES entries for settings that do not exist: {stale}"
    sections = {k.split(".")[0] for k in EXPERIMENT_KEYS if "." in k}
    assert sections == {"data", "model", "loss", "optim", "train", "eval", "finetune"}


def test_defaults_and_presets_are_in_range():
    from bench.config import preset_names

    load_config()
    for p in preset_names():
        load_config(preset=p)
    check_tune(TuneConfig())


@pytest.mark.parametrize("key", EXPERIMENT_KEYS)
def test_each_setting_out_of_range_is_refused_naming_the_key(key, fault_case):
    fault_case("bad lists and configs").bad_input()
    with pytest.raises(BenchError) as e:
        load_config(overrides=[f"{key}={RANGES[key].bad}"])
    assert key.split(".")[-1] in str(e.value) and key.split(".")[0] in str(e.value), str(e.value)


@pytest.mark.parametrize("key", TUNE_KEYS)
def test_each_tune_option_out_of_range_is_refused_naming_the_flag(key, fault_case):
    import tomllib

    from bench.registry import coerce

    fault_case("bad lists and configs").bad_input()
    name = key.split(".", 1)[1]
    bad = tomllib.loads(f"v = {RANGES[key].bad}")["v"]
    with pytest.raises(BenchError) as e:
        hint = {f.name: f.type for f in dataclasses.fields(TuneConfig)}[name]
        value = coerce(bad, eval(hint) if isinstance(hint, str) else hint, f"--{name}")  # wrong types fail here
        check_tune(dataclasses.replace(TuneConfig(), **{name: value}))
    assert f"--{name.replace('_', '-')}" in str(e.value) or f"--{name}" in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "sets, expect",
    [
        (["eval.asnorm=true", "eval.asnorm_top=0"], "eval.asnorm_top must be >= 2, got 0"),
        (["eval.asnorm=true", "eval.asnorm_top=1"], "eval.asnorm_top must be >= 2, got 1"),
        (["eval.cohort_size=1"], "eval.cohort_size must be >= 2"),
        (["eval.p_targets=[0.01, 1.5]"], "eval.p_targets must be a non-empty list of numbers in (0, 1)"),
        (["data.min_seconds=0.02"], "data.min_seconds must be >= 0.035 s"),
        (["optim.lr=0.01", "optim.min_lr=0.1"], "optim.min_lr must be <= optim.lr"),
        (["model.frontend.freq_mask_width=90"], "model.frontend.freq_mask_width must be < model.frontend.n_mels"),
        (["train.device=gpu"], "train.device must be auto, cpu, mps, cuda or cuda:N"),
        (["eval.max_seconds=0.05"], "eval.max_seconds must be >= data.min_seconds (0.1 s)"),
        (["eval.crops=2", "eval.crop_seconds=0.05"], "eval.crop_seconds must be >= data.min_seconds"),
        (["data.crop_seconds=0.05"], "data.crop_seconds must be >= data.min_seconds"),
        (["optim.scheduler=cosin"], "did you mean 'cosine'"),
    ],
)
def test_settings_refused_by_range_and_by_relation(sets, expect, fault_case):
    fault_case("bad lists and configs").bad_input()
    with pytest.raises(BenchError, match=None) as e:
        load_config(overrides=sets)
    assert expect in str(e.value)


def test_bench_run_refuses_asnorm_top_before_any_work(tmp_path, fault_case):
    """The issue's case: it used to train a whole model, then end in a ValueError traceback."""
    from typer.testing import CliRunner

    from bench.cli import app

    fault_case("bad lists and configs").bad_input()
    out = tmp_path / "runs"
    (tmp_path / "corpus").mkdir()  # an empty folder: reading any data would fail differently
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--losses",
            "aam",
            "--out",
            str(out),
            "--set",
            "data.corpus=cnceleb",
            "--set",
            f'data.root="{tmp_path / "corpus"}"',
            "--set",
            "eval.asnorm=true",
            "--set",
            "eval.asnorm_top=0",
        ],
    )
    assert res.exit_code == 2 and "eval.asnorm_top must be >= 2" in res.output and "Traceback" not in res.output
    assert not out.exists()


# ------------------------------------------------------------------------------------ AS-norm


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_asnorm_scores_of_a_run_equal_a_hand_computation():
    """Adaptive S-norm (Matejka et al. 2017, Cumani et al. 2011) by hand, through the runner's
    evaluate_corpus: cohort = unit-norm mean embedding of each training speaker's first 3 utterances,
    statistics of the top-k cohort scores of the enrolment and of the test side."""
    from bench.config import EvalConfig
    from bench.data.trials import Trials
    from bench.runner.evaluate import Embeddings, evaluate_corpus

    rng = np.random.default_rng(7)
    dim = 8
    vec = {}

    def row(uid: str, spk: str, genre: str = "") -> dict:
        vec[uid] = rng.standard_normal(dim)
        return {
            "utt_id": uid,
            "path": f"/x/{uid}.flac",
            "speaker": spk,
            "genre": genre,
            "duration": 1.0,
            "sample_rate": 16000,
        }

    train = pd.DataFrame([row(f"c{s}/u{u}", f"c{s}") for s in range(7) for u in range(4)])
    enroll = pd.DataFrame([row(f"e{i}-enroll", f"e{i}") for i in range(3)])
    test = pd.DataFrame([row(f"test/t{i}", f"e{i % 3}", "speech") for i in range(5)])
    pairs = [(f"e{i}-enroll", f"test/t{j}") for i in range(3) for j in range(5)]
    labels = np.array([i == j % 3 for i in range(3) for j in range(5)])
    trials = Trials(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        labels,
        path="",
        format="cnceleb",
        lines=list(range(1, len(pairs) + 1)),
    )

    class C:
        name = "toy"

    corpus = C()
    corpus.train, corpus.enroll, corpus.test, corpus.trials = train, enroll, test, trials

    def embed(index: pd.DataFrame) -> Embeddings:
        m = np.stack([vec[u] for u in index["utt_id"]]).astype(np.float32)
        return Embeddings(list(index["utt_id"]), m / np.linalg.norm(m, axis=1, keepdims=True))

    top = 4
    cfg = EvalConfig(asnorm=True, asnorm_top=top, cohort_size=7, p_targets=[0.01])
    ts, metrics = evaluate_corpus(embed, corpus, cfg)

    unit = {u: v / np.linalg.norm(v) for u, v in vec.items()}
    cohort = []
    for s in range(7):
        mean = np.mean([unit[f"c{s}/u{u}"] for u in range(3)], axis=0)
        cohort.append(mean / np.linalg.norm(mean))

    def stats(v: np.ndarray) -> tuple[float, float]:
        c = sorted((_cos(v, x) for x in cohort), reverse=True)[:top]
        mu = sum(c) / top
        return mu, (sum((x - mu) ** 2 for x in c) / top) ** 0.5

    for k, (e, t) in enumerate(pairs):
        s = _cos(vec[e], vec[t])
        (me, se), (mt, st) = stats(vec[e]), stats(vec[t])
        assert ts.scores[k] == pytest.approx(0.5 * ((s - me) / se + (s - mt) / st), rel=1e-5, abs=1e-5)
    assert metrics["eval_settings"] == {
        "enroll_mode": "concat",
        "crops": 0,
        "crop_seconds": None,
        "max_seconds": 0.0,
        "score_norm": "asnorm",
        "asnorm_top": 4,
        "cohort_size": 7,
    }
    assert metrics["cohort_speakers"] == 7


def test_asnorm_refuses_a_cohort_without_spread():
    from bench.scoring import asnorm

    emb = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    cohort = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])  # one direction three times
    with pytest.raises(BenchError, match="no spread"):
        asnorm(np.array([0.0]), ["a"], ["b"], emb, cohort, top_k=3)
    with pytest.raises(BenchError, match="eval.asnorm_top must be >= 2"):
        asnorm(np.array([0.0]), ["a"], ["b"], emb, np.eye(2), top_k=1)


# ------------------------------------------------------------------------------------ report pooling


def test_report_refuses_to_pool_runs_scored_with_different_settings(tmp_path, fault_case):
    from reports.collect import group_systems, load_runs

    fault_case("bad lists and configs").bad_input()
    from bench.config import EvalConfig
    from bench.scoring import score_settings

    def write(seed: int, ev: EvalConfig) -> None:
        d = tmp_path / "exp" / "aam" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "config.toml").write_text(f'experiment = "exp"\n[loss]\nname = "aam"\n[train]\nseed = {seed}\n')
        (d / "run.json").write_text('{"status": "finished"}\n')
        m = {
            "overall": {"eer": 10.0},
            "trials": {"path": "t.lst", "sha256": "ab" * 32},
            "corpus": "c",
            "eval_settings": score_settings(ev),
        }
        (d / "metrics.json").write_text(json.dumps(m))

    write(0, EvalConfig(asnorm=True, asnorm_top=100))
    write(1, EvalConfig(asnorm=True, asnorm_top=100))
    assert len(group_systems(load_runs([tmp_path / "exp"]))["c"][0].runs) == 2
    shutil.rmtree(tmp_path / "exp" / "aam" / "seed1")
    write(1, EvalConfig(asnorm=True, asnorm_top=300))
    with pytest.raises(BenchError, match=r"asnorm_top: 100 .* vs 300 .*cannot be pooled"):
        group_systems(load_runs([tmp_path / "exp"]))
    # settings that are off do not count: crop length without crops, AS-norm sizes without AS-norm
    assert score_settings(EvalConfig(crop_seconds=2.0, asnorm_top=5)) == score_settings(EvalConfig())


def test_score_settings_of_old_metrics_come_from_config(tmp_path):
    from reports.collect import load_run

    d = tmp_path / "r"
    d.mkdir()
    (d / "config.toml").write_text("[eval]\nasnorm = true\nasnorm_top = 50\ncohort_size = 200\n")
    (d / "metrics.json").write_text(
        json.dumps(
            {"overall": {"eer": 1.0}, "trials": {"sha256": "x"}, "asnorm": True, "crops": 0, "enroll_mode": "mean"}
        )
    )
    s = load_run(d).eval_settings
    assert (s["score_norm"], s["asnorm_top"], s["cohort_size"], s["enroll_mode"]) == ("asnorm", 50, 200, "mean")
