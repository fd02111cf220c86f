"""bench tune: search-space parsing, the study loop (stubbed training), pruning, resume, workers, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config
from bench.errors import BenchError
from bench.tune import TuneConfig, parse_param, parse_space
from bench.tune.study import run_study
from bench.tune.summary import summarize

# --- search spaces ------------------------------------------------------------------------------


def test_param_specs_parse_and_round_trip():
    t = parse_param("temperature=0.02:0.3:log", "aamsupcon")
    assert (t.kind, t.low, t.high, t.log, t.step) == ("float", 0.02, 0.3, True, None)
    g = parse_param("margin=0.0:0.5:0.1", "aamsupcon")
    assert g.step == pytest.approx(0.1) and not g.log
    c = parse_param("easy_margin=true,false", "aamsupcon")
    assert c.kind == "categorical" and c.choices == (True, False)
    for spec in (t, g, c):
        assert parse_param(spec.text(), "aamsupcon") == spec


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "aam_margin=0.0:0.5",
            r"'aam_margin' is not a parameter of loss 'aamsupcon' \(did you mean 'margin'\?\); searchable: temperature, weight",
        ),
        ("classifier_views=0:1", "cannot be searched"),
        ("temperature=0.3:0.02", r"low \(0.3\) must be < high \(0.02\)"),
        ("temperature=0.1:0.1", "must be < high"),
        ("temperature=0.0:0.3:log", "a log range needs low > 0"),
        ("temperature=0.0:0.3", r"temperature=0.0 is not valid: .*temperature must be > 0"),
        ("weight=-1:2", "weight must be >= 0"),
        ("temperature=a:b", "expected a number"),
        ("temperature=0.1:0.3:0", "step must be > 0"),
        ("temperature=0.1:0.3:lg", "expected a number"),
        ("temperature", "--param expects NAME=LOW:HIGH"),
        ("temperature=0.1:0.2:log:x", "a range is LOW:HIGH"),
        ("easy_margin=0:1", "is a bool; give choices"),
        ("temperature=0.1:inf", "must be finite"),
    ],
)
def test_bad_param_specs_are_clear_user_errors(text, message):
    with pytest.raises(BenchError, match=message):
        parse_param(text, "aamsupcon")


def test_space_rejects_duplicates_fixed_params_and_empty():
    with pytest.raises(BenchError, match="more than once for: temperature"):
        parse_space(["temperature=0.1:0.2", "temperature=0.05:0.2"], "aamsupcon")
    with pytest.raises(BenchError, match="both searched .* and fixed"):
        parse_space(["temperature=0.1:0.2"], "aamsupcon", fixed={"temperature": 0.1})
    with pytest.raises(BenchError, match="searchable for 'supcon': temperature"):
        parse_space([], "supcon")
    with pytest.raises(BenchError, match="unknown loss 'aamsupcn'"):
        parse_param("temperature=0.1:0.2", "aamsupcn")


# --- studies with a stubbed trainer -------------------------------------------------------------


def _base(epochs: int = 3):
    return load_config(preset="demo", overrides=[f"train.epochs={epochs}"])


def _space():
    return parse_space(["margin=0.0:0.5", "temperature=0.02:0.3:log"], "aamsupcon")


def _tune(tmp_path: Path, **kw) -> TuneConfig:
    opts = dict(loss="aamsupcon", trials=4, study="s", pruner="none", out=str(tmp_path / "runs"), startup_trials=2)
    opts.update(kw)
    return TuneConfig(**opts)


def curve_trainer(cfg, rd, reporter):
    """val EER per epoch, a smooth function of the trial's params (minimum near margin .2, tau .07)."""
    p = cfg.loss.params
    base = 10 + 40 * (p["margin"] - 0.2) ** 2 + 30 * (p["temperature"] - 0.07) ** 2
    for e in range(1, cfg.train.epochs + 1):
        reporter.end_epoch({"epoch": e, "val_eer": base + 5.0 / e})


def bad_trial_trainer(bad: int):
    """Trial ``bad`` reports a clearly bad EER (90 %) from epoch 1; the others report ~10-20 %."""

    def fn(cfg, rd, reporter):
        number = int(rd.path.name.removeprefix("trial"))
        for e in range(1, cfg.train.epochs + 1):
            reporter.end_epoch({"epoch": e, "val_eer": 90.0 if number == bad else 20.0 - e - 0.1 * number})

    return fn


def test_study_best_trial_is_lowest_value_and_trials_are_run_dirs(tmp_path):
    tune = _tune(tmp_path)
    res = run_study(_base(), tune, _space(), curve_trainer, origin={"preset": "demo", "sets": ["train.epochs=3"]})
    study = res.study
    assert res.stopped == "done" and len(study.trials) == 4
    values = {t.number: t.value for t in study.trials}
    assert study.best_trial.value == min(values.values())
    s = summarize(study, res.storage)
    assert s["best"]["number"] == min(values, key=values.get) and s["finished"] == 4
    best = s["best"]["params"]
    cmd = s["best"]["command"]
    assert cmd.startswith("bench run --losses aamsupcon --preset demo --set train.epochs=3")
    assert f"--set loss.params.margin={best['margin']!r}" in cmd
    assert f"--set loss.params.temperature={best['temperature']!r}" in cmd
    # each trial is a run directory whose resolved config holds the trial's parameters
    for t in study.trials:
        rd = Path(t.user_attrs["run_dir"])
        assert rd == Path(tmp_path / "runs" / "demo-tune-s" / "aamsupcon" / f"trial{t.number:04d}")
        cfg = (rd / "config.toml").read_text()
        assert f"margin = {t.params['margin']!r}" in cfg
        run = json.loads((rd / "run.json").read_text())
        assert run["status"] == "finished" and run["val_eer"] == pytest.approx(t.value)
        assert run["tune"] == {"study": "s", "trial": t.number, "params": t.params}
        assert not (rd / "metrics.json").exists()  # evaluation trials are never scored while tuning
    # the objective is the last epoch's value, not the best
    t0 = study.trials[0]
    assert t0.value == t0.intermediate_values[3]
    assert Path(res.storage.removeprefix("sqlite:///")) == (tmp_path / "runs" / "tune" / "s.db").resolve()


def test_same_seed_same_trials_other_seed_other_trials(tmp_path):
    a = run_study(_base(1), _tune(tmp_path / "a", trials=2), _space(), curve_trainer).study
    b = run_study(_base(1), _tune(tmp_path / "b", trials=2), _space(), curve_trainer).study
    c = run_study(_base(1), _tune(tmp_path / "c", trials=2, seed=1), _space(), curve_trainer).study
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_clearly_bad_trial_is_pruned_early(tmp_path, pruner):
    from optuna.trial import TrialState

    tune = _tune(tmp_path, trials=4, pruner=pruner, startup_trials=2)
    study = run_study(_base(5), tune, _space(), bad_trial_trainer(bad=3)).study
    bad = study.trials[3]
    assert bad.state == TrialState.PRUNED
    assert max(bad.intermediate_values) < 5  # stopped before the last epoch
    run = json.loads((Path(bad.user_attrs["run_dir"]) / "run.json").read_text())
    assert run["status"] == "pruned" and "validation EER 90.00%" in run["error"]
    good = [t for t in study.trials if t.number != 3]
    assert all(t.state == TrialState.COMPLETE and len(t.intermediate_values) == 5 for t in good)


def test_no_pruning_with_pruner_none(tmp_path):
    from optuna.trial import TrialState

    study = run_study(_base(3), _tune(tmp_path, pruner="none"), _space(), bad_trial_trainer(bad=3)).study
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_resume_after_interruption_keeps_finished_trials(tmp_path):
    from optuna.trial import TrialState

    calls = []

    def interrupted(cfg, rd, reporter):
        calls.append(rd.path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        curve_trainer(cfg, rd, reporter)

    tune = _tune(tmp_path, trials=4)
    with pytest.raises(KeyboardInterrupt):
        run_study(_base(2), tune, _space(), interrupted)
    res = run_study(_base(2), tune, _space(), curve_trainer)
    trials = res.study.trials
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4 and len(trials) == 5
    assert res.started == 2  # only the missing trials were run
    assert json.loads((Path(trials[2].user_attrs["run_dir"]) / "run.json").read_text())["status"] == "failed"


def test_trial_of_a_killed_worker_is_failed_after_its_heartbeat_stops(tmp_path):
    """A RUNNING trial whose worker died stops the study from completing until its heartbeat is stale."""
    import optuna
    from optuna.trial import TrialState

    tune = _tune(tmp_path, trials=2, heartbeat_seconds=1, grace_seconds=2, poll_seconds=0.2)
    run_study(_base(1), tune, _space(), curve_trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'runs' / 'tune' / 's.db'}", heartbeat_interval=1)
    study = optuna.load_study(study_name="s", storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ghost = study.ask()  # a trial whose worker was killed: RUNNING, heartbeat then silence
    storage.record_heartbeat(ghost._trial_id)
    tune3 = _tune(tmp_path, trials=3, heartbeat_seconds=1, grace_seconds=2, poll_seconds=0.2)
    t0 = time.time()
    res = run_study(_base(1), tune3, _space(), curve_trainer)
    states = [t.state for t in res.study.trials]
    assert states[2] == TrialState.FAIL and states.count(TrialState.COMPLETE) == 3
    assert time.time() - t0 >= 1.5  # it waited for the grace period instead of finishing at once


def test_study_settings_must_match_when_joining(tmp_path):
    run_study(_base(1), _tune(tmp_path, trials=1), _space(), curve_trainer)
    other = parse_space(["temperature=0.02:0.3:log"], "aamsupcon")
    with pytest.raises(BenchError, match=r"study 's' was created with different settings \(space"):
        run_study(_base(1), _tune(tmp_path, trials=2), other, curve_trainer)
    with pytest.raises(BenchError, match=r"different settings \(.*optim.lr"):
        run_study(load_config(preset="demo", overrides=["train.epochs=1", "optim.lr=0.1"]), _tune(tmp_path, trials=2),
                  _space(), curve_trainer)  # fmt: skip


def test_new_study_refuses_to_overwrite_old_trial_folders(tmp_path):
    run_study(_base(1), _tune(tmp_path, trials=1), _space(), curve_trainer)
    (tmp_path / "runs" / "tune" / "s.db").unlink()
    with pytest.raises(BenchError, match="holds trials of an earlier study"):
        run_study(_base(1), _tune(tmp_path, trials=1), _space(), curve_trainer)


def _worker(out: str, q) -> None:
    def slow(cfg, rd, reporter):
        time.sleep(0.3)  # long enough that the two workers overlap
        curve_trainer(cfg, rd, reporter)

    res = run_study(_base(1), TuneConfig(loss="aamsupcon", trials=6, study="w", pruner="none", out=out,
                                         poll_seconds=0.1), _space(), slow)  # fmt: skip
    q.put(res.started)


def test_two_workers_share_one_sqlite_study(tmp_path):
    from optuna.trial import TrialState

    from bench.tune.storage import load_study

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "runs"), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    started = [q.get(timeout=5) for _ in procs]
    study = load_study("w", f"sqlite:///{(tmp_path / 'runs' / 'tune' / 'w.db').resolve()}")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6 == len(study.trials)
    assert sum(started) == 6 and min(started) >= 1
    # trial numbers are unique across workers, and so are the parameters they drew
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6


# --- plots and CLI ------------------------------------------------------------------------------


def test_cli_bad_param_and_unknown_study(tmp_path):
    r = CliRunner().invoke(app, ["tune", "--preset", "demo", "--param", "marign=0:0.5", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "did you mean 'margin'" in r.output
    r = CliRunner().invoke(app, ["tune", "--preset", "demo", "--param", "temperature=0.02:0.3", "--pruner", "mean"])
    assert r.exit_code == 2 and "--pruner must be one of median, hyperband, none" in r.output
    r = CliRunner().invoke(app, ["tune", "--show", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no study storage at" in r.output
    r = CliRunner().invoke(app, ["tune", "--show", "x", "--storage", "postgres-db"])
    assert r.exit_code == 2 and "expected an Optuna RDB URL" in r.output


def test_cli_show_summarises_a_study(tmp_path):
    run_study(_base(2), _tune(tmp_path, trials=3), _space(), curve_trainer, origin={"preset": "demo"})
    r = CliRunner().invoke(app, ["tune", "--show", "s", "--out", str(tmp_path / "runs"), "--json", "--no-plots"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["finished"] == 3 and s["best"]["value"] == min(t["value"] for t in s["trials"])
    assert s["best"]["command"].startswith("bench run --losses aamsupcon --preset demo --set loss.params.margin=")
    assert json.loads((tmp_path / "runs" / "demo-tune-s" / "study.json").read_text())["best"] == s["best"]
    r = CliRunner().invoke(app, ["tune", "--show", "other", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["tune", "--show", "s", "--out", str(tmp_path / "runs"), "--no-plots"])
    assert r.exit_code == 0 and "train the final model with:" in r.output and "bench run --losses aamsupcon" in r.output
