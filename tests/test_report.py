"""`bench report`: tables equal the metrics module, paired tests, refusals, rendered outputs.

The run directories here are written by the tests themselves: score files drawn from synthetic
Gaussian score distributions (a per-speaker offset makes trials of one speaker correlated, as in
real data), then the files the runner writes (config.toml from the real config code, run.json with
real provenance, metrics.json from ``bench.metrics.compute_metrics``). Nothing is hand-typed to look
right, and every expected value below is recomputed independently from the in-memory arrays.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config, to_dict, to_toml
from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json, git_revision, versions
from bench.metrics import compute_metrics
from bench.scoring import write_scores
from reports.build import Options, build, parse_formats
from reports.collect import load_runs, read_scores
from reports.stats import ONE_SEED_WARNING, speaker_of

GENRES = ["interview", "singing", "vlog"]
N_SPK, PER_SPK = 40, 40  # 1,600 trials, 10 target trials per enrolment speaker


def make_trials(n_spk: int = N_SPK, per_spk: int = PER_SPK, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """CN-Celeb-style trials: ``id00003-enroll test/id00007-vlog-01-012``, a quarter of them targets."""
    rng = np.random.default_rng(seed)
    enroll, test, labels = [], [], []
    for s in range(n_spk):
        for t in range(per_spk):
            other = s if t % 4 == 0 else int((s + 1 + rng.integers(n_spk - 1)) % n_spk)
            enroll.append(f"id{s:05d}-enroll")
            test.append(f"test/id{other:05d}-{GENRES[t % 3]}-01-{t:03d}")
            labels.append(other == s)
    return enroll, test, np.array(labels)


def draw_scores(labels: np.ndarray, sep: float, seed: int) -> np.ndarray:
    """Targets ~ N(sep, 1), non-targets ~ N(0, 1), plus a shared offset per enrolment speaker."""
    rng = np.random.default_rng(seed)
    offset = np.repeat(rng.normal(0, 0.3, labels.size // PER_SPK), PER_SPK)
    return np.where(labels, rng.normal(sep, 1, labels.size), rng.normal(0, 1, labels.size)) + offset


@functools.lru_cache(maxsize=1)
def _provenance() -> dict:
    # The run.json fields a report reads; device info is left out because it imports torch,
    # too slow for the fast suite on 2 shared cores.
    return {"versions": versions(), "git": git_revision()}


def write_trials(root: Path, enroll, test, labels, name: str = "trials.lst") -> Path:
    path = root / name
    atomic_write(path, "".join(f"{e} {t} {int(lab)}\n" for e, t, lab in zip(enroll, test, labels)))
    return path


def write_run(
    root: Path,
    loss: str,
    seed: int,
    scores: np.ndarray,
    trials: tuple,
    trials_path: Path,
    *,
    experiment: str = "exp",
    corpus: str = "synthetic",
    backbone: str = "tiny",
    sub: str = "",
) -> Path:
    """A finished run dir like the runner's (``sub`` = ``eval/<corpus>`` writes a cross-corpus eval)."""
    enroll, test, labels = trials
    run = root / experiment / loss / f"seed{seed}"
    d = run / sub if sub else run
    cfg = load_config(
        preset="demo",
        overrides=[f"loss.name={loss}", f"train.seed={seed}", f"experiment={experiment}", f"model.backbone={backbone}"],
    )
    atomic_write(run / "config.toml", to_toml(to_dict(cfg)))
    atomic_write_json(run / "run.json", {**_provenance(), "status": "finished", "loss": loss, "seed": seed})
    atomic_write(
        run / "epochs.csv",
        "epoch,train_loss,train_acc,lr,val_eer\n"
        + "".join(f"{e},{4 / e:.4f},{1 - 1 / (e + 1):.4f},{0.002 * 0.9**e:.6f},{30 / e:.3f}\n" for e in range(1, 5)),
    )
    write_scores(d / "scores.txt", (enroll, test), scores, labels)
    genre = np.array([t.split("-")[1] for t in test])
    per_genre = {g: compute_metrics(scores[genre == g], labels[genre == g]) for g in sorted(set(genre))}
    sha = hashlib.sha256(trials_path.read_bytes()).hexdigest()
    atomic_write_json(
        d / "metrics.json",
        {
            "overall": compute_metrics(scores, labels),
            "per_genre": per_genre,
            "trials": {"path": str(trials_path), "sha256": sha, "n": len(scores)},
            "enroll_mode": "concat",
            "corpus": corpus,
        },
    )
    return d


# System -> (separation, rng seed per run seed). "twin" scores are byte-identical to "base";
# "peer" is an independent draw from base's distribution; "good" is clearly better.
SYSTEMS = {"base": (1.5, 100), "twin": (1.5, 100), "peer": (1.5, 200), "good": (3.0, 300)}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    trials = make_trials()
    tpath = write_trials(root, *trials)
    scores = {}
    for loss, (sep, base_seed) in SYSTEMS.items():
        for seed in (0, 1):
            scores[loss, seed] = draw_scores(trials[2], sep, base_seed + seed)
            write_run(root, loss, seed, scores[loss, seed], trials, tpath)
    return root, trials, scores


@pytest.fixture(scope="module")
def report(experiment, tmp_path_factory):
    """One table-only build shared by the tests (figures are drawn in the slow suite)."""
    root, _, _ = experiment
    out = tmp_path_factory.mktemp("rep") / "report"
    out_dir, rep = build([root / "exp"], out, Options(n_boot=300, figures=False))
    return out_dir, rep


def _table(rep):
    (sec,) = rep.sections
    return sec, sec.table.set_index("system")


def test_table_equals_metrics_module(experiment, report):
    _, trials, scores = experiment
    sec, table = _table(report[1])
    labels = trials[2]
    assert set(table.index) == set(SYSTEMS)
    for loss in SYSTEMS:
        ref = [compute_metrics(scores[loss, s], labels) for s in (0, 1)]
        for m in ("eer", "mindcf@0.01", "mindcf@0.05", "min_cllr"):
            vals = np.array([r[m] for r in ref])
            assert table.loc[loss, f"{m}_mean"] == pytest.approx(vals.mean(), rel=1e-12, abs=1e-12)
            assert table.loc[loss, f"{m}_std"] == pytest.approx(vals.std(ddof=1), rel=1e-9, abs=1e-12)
    # the interval brackets the pooled-seed EER and the clearly better system's lies below the others'
    for loss in SYSTEMS:
        pooled = compute_metrics(np.concatenate([scores[loss, 0], scores[loss, 1]]), np.tile(labels, 2))["eer"]
        assert table.loc[loss, "eer_low"] <= pooled <= table.loc[loss, "eer_high"]
    assert table.loc["good", "eer_high"] < table.loc["base", "eer_low"]
    assert np.isnan(table.loc["good", "min_cllr_low"])  # bench.metrics does not bootstrap Cllr
    # these runs record no calibration: their raw scores get no actDCF / Cllr, not the raw-cosine values
    assert table["cal_cllr_mean"].isna().all() and table["cal_actdcf@0.01_mean"].isna().all()
    assert not table["cal_cllr_best"].any()
    assert table["eer_best"].tolist().count(True) == 1 and table.loc["good", "eer_best"]


def test_paired_tests_separate_identical_from_better(report):
    sec, _ = _table(report[1])
    pw = {frozenset((r.system_a, r.system_b)): r for r in sec.pairwise.itertuples()}
    assert len(pw) == 6  # every pair of the 4 systems
    twin = pw[frozenset(("base", "twin"))]
    assert twin.diff == 0 and twin.p_value > 0.05 and twin.verdict == "no significant difference"
    peer = pw[frozenset(("base", "peer"))]
    assert peer.p_value > 0.05 and peer.low <= 0 <= peer.high and peer.verdict == "no significant difference"
    good = pw[frozenset(("base", "good"))]
    assert good.p_value < 0.01 and good.verdict == "good better"
    assert not (good.low <= 0 <= good.high)


def _plain_two_stage(mats, labels, groups, n_boot, seed):
    """EER of each resampled trial list written out: speakers drawn (one multinomial per resample),
    then seeds; every trial of seed s and speaker g repeated m_s * w_g times (the definition)."""
    rng = np.random.default_rng(seed)
    n_groups = groups.max() + 1
    w = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)
    k = mats[0].shape[0]
    m = rng.multinomial(k, np.full(k, 1 / k), size=n_boot)
    out = []
    for wr, mr in zip(w, m):
        reps = (mr[:, None] * wr[groups][None, :]).ravel()
        lab = np.repeat(np.tile(labels, k), reps)
        out.append([compute_metrics(np.repeat(x.ravel(), reps), lab)["eer"] for x in mats])
    return np.array(out).T


def test_intervals_and_tests_resample_seeds_and_speakers(experiment, report):
    """The table's interval and the paired test equal the two-stage bootstrap written out by hand:
    seeds and enrolment speakers drawn with replacement, seed i of A paired with seed i of B."""
    _, trials, scores = experiment
    sec, table = _table(report[1])
    first: dict[str, int] = {}
    groups = np.array([first.setdefault(speaker_of(e), len(first)) for e in trials[0]])
    mats = [np.stack([scores[loss, 0], scores[loss, 1]]) for loss in ("base", "good")]
    reps = _plain_two_stage(mats, trials[2], groups, 300, 0)
    for loss, r in zip(("base", "good"), reps):
        lo, hi = np.quantile(r, [0.025, 0.975])
        assert table.loc[loss, "eer_low"] == pytest.approx(lo, abs=1e-9)
        assert table.loc[loss, "eer_high"] == pytest.approx(hi, abs=1e-9)
        assert table.loc[loss, "warning"] == ""
    row = next(p for p in sec.pairwise.itertuples() if {p.system_a, p.system_b} == {"base", "good"})
    d = reps[0] - reps[1] if row.system_a == "base" else reps[1] - reps[0]
    assert (row.low, row.high) == pytest.approx(tuple(np.quantile(d, [0.025, 0.975])), abs=1e-9)
    assert row.warning == "" and row.seed_pairs == 2


def test_one_seed_verdicts_carry_a_warning(experiment, tmp_path):
    root, _, _ = experiment
    out, rep = build(
        [root / "exp" / "good" / "seed0", root / "exp" / "base" / "seed0", root / "exp" / "peer"],
        tmp_path / "r",
        Options(n_boot=100, figures=False),
    )
    (sec,) = rep.sections
    assert len(sec.pairwise) == 3 and (sec.pairwise["warning"] == ONE_SEED_WARNING).all()  # every pair has 1 seed
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    for p in data["pairwise"]:
        assert p["warning"] == ONE_SEED_WARNING
        verdict = f"{p['verdict']} ⚠ {ONE_SEED_WARNING}"
        assert verdict in md and verdict in html
    table = {r["system"]: r for r in data["table"]}
    assert table["good"]["warning"] == ONE_SEED_WARNING and "warning" not in table["peer"]  # peer has 2 seeds
    assert md.count("⚠") == 3 + 2 + 1  # three verdicts, two one-seed systems, the settings note


def test_outputs_state_provenance(report):
    out, _ = report
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["preset"]) == {"demo"} and set(runs["enroll_mode"]) == {"concat"}
    # each loss's recipe stands beside its result: the lr and the loss's numeric parameters of config.toml
    assert set(runs["lr"]) == {0.005} and all("scale=8" in p for p in runs["loss_params"])
    assert "| lr | loss_params |" in md
    torch_version = _provenance()["versions"]["torch"]
    for text in (md, html):
        assert "synthetic" in text and "trials.lst" in text and "concat" in text and torch_version in text
        assert "enrolment speakers" in text  # the bootstrap unit is stated


def test_csv_and_latex_tables(report):
    out, rep = report
    _, table = _table(rep)
    csv = pd.read_csv(out / "table.csv").set_index("system")
    for loss in SYSTEMS:
        assert csv.loc[loss, "eer_mean"] == pytest.approx(table.loc[loss, "eer_mean"], rel=1e-5)
    pw = pd.read_csv(out / "pairwise.csv")
    assert set(pw["verdict"]) >= {"no significant difference", "good better"}
    tex = (out / "table.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"\textbf{" in tex and r"$\pm$" in tex
    good_row = next(line for line in tex.splitlines() if line.startswith("good &"))
    assert good_row.split("&")[2].strip().startswith(r"\textbf{")  # EER column: best is bold
    marker = json.loads((out / "report.json").read_text())
    assert {r["system"] for r in marker["table"]} == set(SYSTEMS)


def test_another_report_is_not_overwritten_but_its_own_is_regenerated(experiment, report, tmp_path):
    import shutil

    root, _, _ = experiment
    out = tmp_path / "copy"
    shutil.copytree(report[0], out)
    before = (out / "report.md").read_text()
    with pytest.raises(BenchError, match="--force"):
        build([root / "exp" / "good"], out, Options(n_boot=0, figures=False))  # other runs
    assert (out / "report.md").read_text() == before
    build([root / "exp"], out, Options(n_boot=0, figures=False))  # the same runs: regenerated in place
    assert (out / "report.md").read_text() != before  # n_boot=0: no intervals this time


def test_a_report_knows_whether_it_still_shows_the_results_there(experiment, report, tmp_path):
    import shutil

    from reports.build import report_is_current

    root, trials, scores = experiment
    exp = tmp_path / "runs" / "exp"
    shutil.copytree(root / "exp", exp)
    out, _ = build([exp], tmp_path / "rep", Options(n_boot=0, figures=False))
    assert report_is_current(out, [exp])
    (exp / "base" / "seed0" / ".lock").write_text("pid 1")  # a run's lock: not a result
    assert report_is_current(out, [exp])
    metrics = exp / "base" / "seed0" / "metrics.json"
    kept = metrics.read_bytes()
    metrics.write_bytes(kept.replace(b'"enroll_mode": "concat"', b'"enroll_mode": "mean"'))  # re-scored
    assert not report_is_current(out, [exp])
    metrics.write_bytes(kept)
    assert report_is_current(out, [exp])
    write_run(tmp_path / "runs", "base", 0, scores["base", 0], trials, root / "trials.lst", sub="eval/other")
    assert not report_is_current(out, [exp])  # a `bench eval` result added
    shutil.rmtree(exp / "base" / "seed0" / "eval")
    assert report_is_current(out, [exp])
    shutil.rmtree(exp / "peer" / "seed1")  # a run removed
    assert not report_is_current(out, [exp])
    assert not report_is_current(tmp_path / "nowhere", [exp])


def test_force_replaces_and_formats_are_honoured(experiment, tmp_path):
    root, _, _ = experiment
    out = tmp_path / "r"
    build([root / "exp" / "base"], out, Options(n_boot=0, figures=False, formats=("csv",)))
    assert sorted(p.name for p in out.iterdir()) == ["pairwise.csv", "report.json", "runs.csv", "table.csv"]
    build([root / "exp" / "good"], out, Options(n_boot=0, figures=False, formats=("md",), force=True))
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    assert "| good |" in (out / "report.md").read_text()
    # every format writes the files bench demo checks for (FORMAT_FILES) and nothing else
    from reports.build import FORMAT_FILES
    from reports.render import FORMATS

    build([root / "exp" / "good"], out, Options(n_boot=0, figures=False, formats=FORMATS, force=True))
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.json", *sum(FORMAT_FILES.values(), ())])
    with pytest.raises(BenchError, match="unknown report format 'pdf'"):
        parse_formats("md,pdf")


@pytest.mark.parametrize("fails", ["move_old_aside", "move_new_in"])
def test_a_report_that_cannot_be_replaced_is_left_whole(experiment, tmp_path, monkeypatch, fails):
    # e.g. an immutable or read-only report folder: the old report stays complete, the error names
    # the folder, no traceback and no temporary folder is left
    import os

    root, _, _ = experiment
    out = tmp_path / "r"
    build([root / "exp" / "base"], out, Options(n_boot=0, figures=False, formats=("md",)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = os.rename

    def rename(src, dst, *a, **k):
        src, dst = Path(src), Path(dst)
        if (fails == "move_old_aside" and src == out) or (fails == "move_new_in" and src.name == ".r.tmp"):
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(
        BenchError, match="cannot replace the report folder: Operation not permitted; the old report"
    ) as e:
        build([root / "exp" / "good"], out, Options(n_boot=0, figures=False, formats=("md",), force=True))
    assert str(out) in str(e.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_replaced_report_that_cannot_be_deleted_is_set_aside_with_a_warning(experiment, tmp_path, monkeypatch):
    import reports.build as rb

    root, _, _ = experiment
    out = tmp_path / "r"
    build([root / "exp" / "base"], out, Options(n_boot=0, figures=False, formats=("md",)))
    real = rb.shutil.rmtree
    monkeypatch.setattr(rb.shutil, "rmtree", lambda p, *a, **k: None if Path(p).name == ".r.old" else real(p, *a, **k))
    with pytest.warns(UserWarning, match=r"\.r\.old: part of the replaced report could not be deleted"):
        build([root / "exp" / "good"], out, Options(n_boot=0, figures=False, formats=("md",), force=True))
    assert "| good |" in (out / "report.md").read_text()  # the new report is in place, whole
    assert "| base |" in (tmp_path / ".r.old" / "report.md").read_text()


def test_cli_json_output(experiment, tmp_path):
    root, trials, scores = experiment
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(root / "exp" / "good"),
            str(root / "exp" / "base" / "seed0"),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--no-figures",
            "--n-boot",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rec = {r["system"]: r for r in data}
    assert rec["base"]["seeds"] == [0] and rec["good"]["seeds"] == [0, 1]
    assert rec["base"]["eer"]["mean"] == pytest.approx(compute_metrics(scores["base", 0], trials[2])["eer"])
    assert rec["base"]["eer"]["std"] is None  # one seed: no spread to report


def test_cli_errors_name_the_path(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output and "no such run" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no metrics.json" in res.output and "empty" in res.output


def test_different_trial_lists_are_refused(tmp_path):
    trials = make_trials()
    other = make_trials(seed=1)
    t1 = write_trials(tmp_path, *trials, name="a.lst")
    t2 = write_trials(tmp_path, *other, name="b.lst")
    write_run(tmp_path, "aam", 0, draw_scores(trials[2], 2, 1), trials, t1)
    write_run(tmp_path, "supcon", 0, draw_scores(other[2], 2, 2), other, t2)
    with pytest.raises(BenchError, match="different trial lists") as e:
        build([tmp_path / "exp"], tmp_path / "out", Options(n_boot=0, figures=False))
    assert "aam/seed0" in str(e.value) and "supcon/seed0" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_eval_corpora_are_reported_separately(tmp_path):
    trials, other = make_trials(), make_trials(seed=1)
    t1, t2 = write_trials(tmp_path, *trials, name="a.lst"), write_trials(tmp_path, *other, name="b.lst")
    for loss, sep in (("aam", 2.0), ("supcon", 2.5)):
        write_run(tmp_path, loss, 0, draw_scores(trials[2], sep, 5), trials, t1)
        write_run(tmp_path, loss, 0, draw_scores(other[2], sep, 6), other, t2, corpus="vox", sub="eval/vox")
    _, rep = build([tmp_path / "exp"], tmp_path / "out", Options(n_boot=50, figures=False))
    assert [s.corpus for s in rep.sections] == ["synthetic", "vox"]
    assert all(len(s.table) == 2 and len(s.pairwise) == 1 for s in rep.sections)
    runs = {(r.loss, r.eval_corpus) for r in load_runs([tmp_path / "exp"])}
    assert runs == {("aam", "synthetic"), ("supcon", "synthetic"), ("aam", "vox"), ("supcon", "vox")}


def test_backbones_are_separate_systems(tmp_path):
    trials = make_trials()
    t = write_trials(tmp_path, *trials)
    write_run(tmp_path, "aam", 0, draw_scores(trials[2], 2, 1), trials, t, experiment="e1", backbone="tiny")
    write_run(tmp_path, "aam", 0, draw_scores(trials[2], 2, 2), trials, t, experiment="e2", backbone="ecapa")
    _, rep = build([tmp_path / "e1", tmp_path / "e2"], tmp_path / "out", Options(n_boot=0, figures=False))
    assert sorted(rep.sections[0].table["system"]) == ["aam / backbone=ecapa", "aam / backbone=tiny"]


def test_mismatched_score_file_is_refused(tmp_path):
    trials = make_trials()
    t = write_trials(tmp_path, *trials)
    write_run(tmp_path, "aam", 0, draw_scores(trials[2], 2, 1), trials, t)
    d = write_run(tmp_path, "supcon", 0, draw_scores(trials[2], 2, 2), trials, t)
    lines = (d / "scores.txt").read_text().splitlines(keepends=True)
    atomic_write(d / "scores.txt", "".join(lines[:-1]))  # one trial lost, metrics.json still claims the list
    with pytest.raises(BenchError, match="do not match") as e:
        build([tmp_path / "exp"], tmp_path / "out", Options(n_boot=0, figures=False))
    assert str(d / "scores.txt") in str(e.value)


def test_read_scores_reports_bad_lines(tmp_path):
    p = tmp_path / "scores.txt"
    p.write_text("a b 0.5 1\n\nc d oops 0\n")
    with pytest.raises(BenchError, match=r"scores.txt:3: score 'oops'"):
        read_scores(p)
    p.write_text("a b 0.5 1\nc d 0.1\n")
    with pytest.raises(BenchError, match=r"scores.txt:2: 3 fields"):
        read_scores(p)
    p.write_text("a b 0.5\n")
    with pytest.raises(BenchError, match=r"no label column"):
        read_scores(p)
    p.write_text("a b 0.5 1\na b 0.7 1\n")
    with pytest.raises(BenchError, match=r"scores.txt:2: duplicate trial"):
        read_scores(p)
    p.write_text("a b 0.5 target\nc d -1 nontarget\n")
    assert read_scores(p)["label"].tolist() == [True, False]


def test_unfinished_run_is_refused(tmp_path):
    trials = make_trials()
    t = write_trials(tmp_path, *trials)
    d = write_run(tmp_path, "aam", 0, draw_scores(trials[2], 2, 1), trials, t)
    atomic_write_json(d / "run.json", {"status": "running"})
    with pytest.raises(BenchError, match="not finished"):
        load_runs([tmp_path])


def test_speaker_of_enrolment_ids():
    assert speaker_of("id00800-enroll") == "id00800"
    assert speaker_of("id10270/x6uYqmx31kE/00001") == "id10270"
    assert speaker_of("spk3") == "spk3"


def test_align_puts_reordered_score_files_on_one_trial_order(tmp_path):
    from reports.collect import group_systems
    from reports.stats import align

    enroll, test, labels = make_trials(n_spk=6, per_spk=12, seed=3)
    enroll = [f"id{(7 * i) % 5:05d}/utt{i // 3}" for i in range(len(enroll))]  # speakers interleave
    tpath = write_trials(tmp_path, enroll, test, labels)
    rng = np.random.default_rng(0)
    scores = {(loss, s): rng.standard_normal(labels.size) + labels for loss in ("a", "b") for s in (0, 1)}
    for (loss, s), sc in scores.items():
        write_run(tmp_path, loss, s, sc, (enroll, test, labels), tpath)
    moved = tmp_path / "exp" / "b" / "seed1" / "scores.txt"
    lines = moved.read_text().splitlines(keepends=True)
    atomic_write(moved, "".join(lines[i] for i in rng.permutation(len(lines))))
    (systems,) = group_systems(load_runs([tmp_path / "exp"])).values()
    al = align(systems)
    for i, loss in enumerate(("a", "b")):
        for s in (0, 1):
            np.testing.assert_array_equal(al.scores[i][s], scores[loss, s])
    assert al.trials["enroll"].tolist() == enroll and al.labels.tolist() == labels.tolist()
    first_seen: dict[str, int] = {}
    want = [first_seen.setdefault(speaker_of(e), len(first_seen)) for e in enroll]
    assert al.groups.tolist() == want
    atomic_write(moved, "".join(lines[:-1]) + lines[-1].replace("test/", "test/x", 1))
    with pytest.raises(BenchError, match="do not match"):
        align(systems)
    flipped = lines[-1].rsplit(" ", 1)[0] + (" 0\n" if lines[-1].endswith(" 1\n") else " 1\n")
    atomic_write(moved, "".join(lines[:-1]) + flipped)
    with pytest.raises(BenchError, match="labels differ"):
        align(systems)


def test_holm_adjusted_p_values_match_the_step_down_procedure():
    from reports.stats import holm

    # textbook case: sorted 0.005, 0.01, 0.03, 0.04 scaled by 4, 3, 2, 1 -> 0.02, 0.03, 0.06, max(0.04, 0.06)
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(5)
    for _ in range(200):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 8))
        alpha = 0.05
        # Holm's procedure as published: walk up the sorted p-values, reject while p_(k) <= alpha / (m - k)
        rejected = np.zeros(len(p), bool)
        for k, i in enumerate(np.argsort(p)):
            if p[i] > alpha / (len(p) - k):
                break
            rejected[i] = True
        adjusted = holm(p)
        assert np.array_equal(adjusted <= alpha, rejected)
        assert np.all(adjusted >= p) and np.all(adjusted <= 1)


def test_one_loss_from_two_experiments_is_two_systems_named_by_experiment(tmp_path):
    """The same loss trained on two corpora of one kind (both "synthetic") or with two recipes, each in
    its own experiment, must not be pooled as one system (nor refused as duplicate seeds)."""
    from reports.collect import group_systems

    trials = make_trials()
    tpath = write_trials(tmp_path, *trials)
    for exp, sep in (("demo", 1.0), ("demo-transfer", 3.0)):
        for seed in (0, 1):
            write_run(tmp_path, "aam", seed, draw_scores(trials[2], sep, seed), trials, tpath, experiment=exp)
    runs = load_runs([tmp_path / "demo", tmp_path / "demo-transfer"])
    (systems,) = group_systems(runs).values()
    assert sorted(s.label for s in systems) == ["aam [demo-transfer]", "aam [demo]"]
    assert all(len(s.runs) == 2 and len({r.experiment for r in s.runs}) == 1 for s in systems)
    # within one experiment a repeated seed is still refused
    write_run(tmp_path / "copy", "aam", 0, draw_scores(trials[2], 1.0, 0), trials, tpath, experiment="demo")
    with pytest.raises(BenchError, match="more than one run with seed 0"):
        group_systems(load_runs([tmp_path / "demo", tmp_path / "copy"]))


def test_recipe_lists_the_lr_and_the_numeric_loss_parameters():
    from reports.collect import recipe

    cfg = {
        "optim": {"lr": 0.00862},
        "loss": {
            "params": {
                "scale": 12.18,
                "margin": 0.249,
                "easy_margin": False,
                "classifier_views": [0],
                "temperature": 0.0459,
            }
        },
    }
    assert recipe(cfg) == {"lr": 0.00862, "loss_params": "scale=12.18 margin=0.249 temperature=0.0459"}
    assert recipe({}) == {"lr": "", "loss_params": ""}
