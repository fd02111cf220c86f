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
    with pytest.raises(BenchError, match="searchable for 'supcon': temperature; recipe keys: optim.lr, "):
        parse_space([], "supcon")
    with pytest.raises(BenchError, match="unknown loss 'aamsupcn'"):
        parse_param("temperature=0.1:0.2", "aamsupcn")


def test_config_keys_parse_and_round_trip():
    lr = parse_param("optim.lr=1e-3:2e-2:log", "aam")
    assert (lr.name, lr.kind, lr.low, lr.high, lr.log, lr.step) == ("optim.lr", "float", 1e-3, 2e-2, True, None)
    wd = parse_param("optim.weight_decay=0,1e-5,1e-4", "aam")
    assert wd.kind == "categorical" and wd.choices == (0.0, 1e-5, 1e-4)
    g = parse_param("optim.gamma=0.9:0.99:0.01", "aamsupcon")
    assert g.step == pytest.approx(0.01)
    for spec in (lr, wd, g):
        assert parse_param(spec.text(), "aam") == spec


def test_searchable_config_keys_are_typed_fields_of_the_config():
    import dataclasses
    import typing

    from bench.config import ExperimentConfig
    from bench.tune.keys import CONFIG_KEYS

    assert {"optim.lr", "optim.weight_decay", "optim.gamma", "optim.warmup_epochs"} <= set(CONFIG_KEYS)
    for key, tp in CONFIG_KEYS.items():
        section, name = key.split(".")  # two levels: with_values and the study definition rely on it
        section_cls = type(getattr(ExperimentConfig(), section))
        assert name in {f.name for f in dataclasses.fields(section_cls)}
        assert typing.get_type_hints(section_cls)[name] is tp, key


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.lrr=1e-3:1e-2", r"'optim.lrr' is not a searchable config key \(did you mean 'optim.lr'\?\); "
                                "searchable: optim.lr, optim.weight_decay, optim.gamma, optim.warmup_epochs"),
        ("data.views=1:3", r"'data.views' is not a searchable config key; searchable: optim.lr"),
        ("optim.lr=0:0.1:log", "a log range needs low > 0"),
        ("optim.lr=0.1:0.01", r"low \(0.1\) must be < high \(0.01\)"),
        ("optim.lr=a:b", "expected a number"),
        ("optim.weight_decay=-1e-4:1e-4", r"optim.weight_decay=-0.0001 is not valid: optim.weight_decay must be >= 0"),
        ("optim.gamma=0.5:1.5", r"optim.gamma=1.5 is not valid: optim.gamma must be in \(0, 1\]"),
        ("optim.warmup_epochs=-1,1", r"optim.warmup_epochs=-1.0 is not valid: optim.warmup_epochs must be >= 0"),
        ("lr=1e-3:1e-2", r"'lr' is not a parameter of loss 'aam' \(did you mean 'optim.lr'\?\); searchable: scale"),
    ],
)  # fmt: skip
def test_bad_config_key_specs_are_one_line_user_errors(text, message):
    with pytest.raises(BenchError, match=message) as e:
        parse_param(text, "aam")
    assert "\n" not in str(e.value)


def test_config_key_ends_get_the_checks_of_set():
    # the refusal is the one `--set optim.lr=-1` gives, checked in the study's base config (relations too)
    with pytest.raises(BenchError) as by_set:
        load_config(overrides=["optim.lr=-1"])
    with pytest.raises(BenchError) as by_param:
        parse_param("optim.lr=-1:0.1", "aam")
    assert by_param.value.message == f"--param optim.lr=-1:0.1: optim.lr=-1.0 is not valid: {by_set.value.message}"
    base = load_config(overrides=["optim.min_lr=0.01"])
    with pytest.raises(BenchError, match=r"optim.lr=0.001 is not valid: optim.min_lr must be <= optim.lr"):
        parse_param("optim.lr=0.001:0.1", "aam", base=base)
    assert parse_param("optim.lr=0.02:0.1", "aam", base=base).low == 0.02


def test_config_key_both_searched_and_fixed_is_refused():
    with pytest.raises(BenchError, match=r"optim.lr: both searched \(--param\) and fixed \(--set optim.lr"):
        parse_space(["scale=4:32:log", "optim.lr=1e-3:1e-2:log"], "aam", fixed={"optim.lr": 0.01})
    with pytest.raises(BenchError, match="more than once for: optim.lr"):
        parse_space(["optim.lr=1e-3:1e-2", "optim.lr=1e-3:2e-2"], "aam")
    # a fixed config key does not reach the loss's own config check, and vice versa
    assert [s.name for s in parse_space(["scale=4:32", "optim.lr=1e-3:1e-2"], "aam", fixed={"optim.gamma": 0.9})] == [
        "scale",
        "optim.lr",
    ]


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


def test_no_trial_is_pruned_within_the_warmup_epochs(tmp_path):
    from optuna.trial import TrialState

    tune = _tune(tmp_path, trials=4, pruner="median", startup_trials=2, warmup_epochs=3)
    bad = run_study(_base(6), tune, _space(), bad_trial_trainer(bad=3)).study.trials[3]
    assert bad.state == TrialState.PRUNED and sorted(bad.intermediate_values) == [1, 2, 3, 4]
    r = CliRunner().invoke(app, ["tune", "--preset", "demo", "--loss", "aam", "--param", "margin=0.1:0.3",
                                 "--warmup-epochs", "-1", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert r.exit_code == 2 and "--warmup-epochs must be >= 0, got -1" in r.output
    assert not (tmp_path / "cli").exists()


def test_no_pruning_with_pruner_none(tmp_path):
    from optuna.trial import TrialState

    study = run_study(_base(3), _tune(tmp_path, pruner="none"), _space(), bad_trial_trainer(bad=3)).study
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def scripted_trainer(eers, dcfs):
    """Every trial reports the same validation EERs and minDCFs, one pair per epoch."""

    def fn(cfg, rd, reporter):
        for e, (eer, dcf) in enumerate(zip(eers, dcfs), start=1):
            reporter.end_epoch({"epoch": e, "val_eer": eer, "val_mindcf": dcf})

    return fn


@pytest.mark.parametrize("early_stop, want", [("true", 0.8), ("false", 0.5)])
def test_mindcf_objective_is_that_of_the_weights_bench_run_scores(tmp_path, early_stop, want):
    # EER 20, 15, 15, 18: under early stopping bench run scores epoch 2 (the first of the best EER; the
    # plateau rule and the kept weights follow the EER), so the objective is epoch 2's minDCF (0.8),
    # neither the lowest minDCF (0.5, epoch 4) nor epoch 3's (0.6); without early stopping the last (0.5).
    base = load_config(preset="demo", overrides=["train.epochs=4", f"train.early_stop={early_stop}"])
    trainer = scripted_trainer([20.0, 15.0, 15.0, 18.0], [0.9, 0.8, 0.6, 0.5])
    study = run_study(base, _tune(tmp_path, trials=1, objective="mindcf"), _space(), trainer).study
    t = study.trials[0]
    assert t.value == pytest.approx(want)
    assert t.intermediate_values == pytest.approx({1: 0.9, 2: 0.8, 3: 0.6, 4: 0.5})  # pruning sees the minDCF
    run = json.loads((Path(t.user_attrs["run_dir"]) / "run.json").read_text())
    assert run["objective"] == "val_mindcf" and run["objective_value"] == pytest.approx(want)
    assert run["val_eer"] == (15.0 if early_stop == "true" else 18.0) and run["best_val_eer"] == 15.0
    assert run["val_mindcfs"] == [[1, 0.9], [2, 0.8], [3, 0.6], [4, 0.5]]
    assert summarize(study)["metric"] == "mindcf"
    # the same run under the EER objective: the scored epoch's EER
    eer = run_study(base, _tune(tmp_path / "e", trials=1), _space(), trainer).study.trials[0]
    assert eer.value == (15.0 if early_stop == "true" else 18.0)


def test_a_study_keeps_its_objective(tmp_path):
    from bench.config_checks import RANGES
    from bench.tune.options import OBJECTIVES, PRUNERS

    assert RANGES["tune.objective"].choices() == list(OBJECTIVES)  # the --set checks name the same choices
    assert RANGES["tune.pruner"].choices() == list(PRUNERS)
    run_study(_base(1), _tune(tmp_path, trials=1), _space(), scripted_trainer([20.0], [0.9]))
    with pytest.raises(BenchError, match=r"different settings \(--objective eer\)"):
        run_study(_base(1), _tune(tmp_path, trials=2, objective="mindcf"), _space(), scripted_trainer([20.0], [0.9]))
    with pytest.raises(
        BenchError, match=r"--objective must be one of eer, mindcf \(did you mean 'mindcf'\?\), got 'dcf'"
    ):
        _tune(tmp_path, objective="dcf").validate()


def test_cli_show_labels_a_mindcf_study(tmp_path):
    trainer = scripted_trainer([20.0, 15.0], [0.9, 0.812])
    run_study(_base(2), _tune(tmp_path, trials=2, objective="mindcf"), _space(), trainer, origin={"preset": "demo"})
    r = CliRunner().invoke(app, ["tune", "--show", "s", "--out", str(tmp_path / "runs"), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert "val minDCF" in r.output and "val EER" not in r.output
    assert "best: trial 0, val minDCF 0.812:" in r.output


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


# --- searching training-recipe keys (optim.lr) ----------------------------------------------------


def lr_trainer(seen: dict):
    """val EER a smooth function of the trial's lr (best at 0.005) and AAM scale; records the lr it got."""

    def fn(cfg, rd, reporter):
        import math

        seen[rd.path.name] = cfg.optim.lr
        base = 10 + 5 * (math.log10(cfg.optim.lr / 0.005)) ** 2 + 0.01 * cfg.loss.params["scale"]
        for e in range(1, cfg.train.epochs + 1):
            reporter.end_epoch({"epoch": e, "val_eer": base + 5.0 / e})

    return fn


def _lr_space():
    return parse_space(["scale=4:32:log", "optim.lr=1e-3:2e-2:log"], "aam")


def test_study_over_lr_sets_it_in_every_trial_config(tmp_path):
    import tomllib

    from bench.runner.experiment import run_config

    # a per-loss lr of the base config is a default the search replaces, like a preset's scale
    sets = ["train.epochs=2", "optim.per_loss.aam.lr=0.5"]
    base = load_config(preset="demo", overrides=sets)
    seen: dict[str, float] = {}
    tune = _tune(tmp_path, loss="aam", trials=3)
    res = run_study(base, tune, _lr_space(), lr_trainer(seen), origin={"preset": "demo", "sets": sets})
    trials = res.study.trials
    assert len({t.params["optim.lr"] for t in trials}) == 3
    for t in trials:
        rd = Path(t.user_attrs["run_dir"])
        assert seen[rd.name] == t.params["optim.lr"] and 1e-3 <= t.params["optim.lr"] <= 2e-2
        cfg = tomllib.loads((rd / "config.toml").read_text())
        assert cfg["optim"]["lr"] == t.params["optim.lr"] and cfg["loss"]["params"]["scale"] == t.params["scale"]
        assert cfg["optim"]["per_loss"] == {} and cfg["optim"]["optimizer"] == "adam"  # the rest is the preset's
        run = json.loads((rd / "run.json").read_text())
        assert run["tune"] == {"study": "s", "trial": t.number, "params": t.params}
    # the final command trains with the best values: rebuild its config as bench run would
    best = summarize(res.study, res.storage)["best"]
    cmd = best["command"].split()
    assert f"optim.lr={best['params']['optim.lr']!r}" in cmd and "optim.per_loss.aam.lr=0.5" not in cmd
    overrides = [cmd[i + 1] for i, w in enumerate(cmd) if w == "--set"]
    final = run_config(load_config(preset="demo", overrides=overrides), "aam", 0)
    assert final.optim.lr == best["params"]["optim.lr"] and final.loss.params["scale"] == best["params"]["scale"]
    assert final.train.epochs == 2
    # resuming: another base lr is no other study (it is searched), another space is
    done = run_study(load_config(preset="demo", overrides=["train.epochs=2", "optim.lr=0.02"]), tune, _lr_space(),
                     lr_trainer(seen))  # fmt: skip
    assert done.stopped == "done" and done.started == 0
    with pytest.raises(BenchError, match=r"different settings \(space"):
        run_study(base, tune, parse_space(["scale=4:32:log"], "aam"), lr_trainer(seen))


def test_cli_show_prints_the_preset_tables_of_the_best_trial(tmp_path):
    from bench.runner.experiment import run_config

    run_study(_base(2), _tune(tmp_path, loss="aam", trials=3), _lr_space(), lr_trainer({}), origin={"preset": "demo"})
    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["tune", "--show", "s", "--out", str(out), "--json", "--no-plots"])
    assert r.exit_code == 0, r.output
    best = json.loads(r.output)["best"]
    scale, lr = best["params"]["scale"], best["params"]["optim.lr"]
    assert best["preset"] == f"[loss.per_loss.aam]\nscale = {scale!r}\n\n[optim.per_loss.aam]\nlr = {lr!r}"
    r = CliRunner().invoke(app, ["tune", "--show", "s", "--out", str(out), "--no-plots"])
    assert r.exit_code == 0, r.output
    text = "\n".join(line.strip() for line in r.output.splitlines())
    assert f"best: trial {best['number']}" in text and f"optim.lr={lr:.4g}" in text
    assert f"or put these values in the preset (for this loss only):\n{best['preset']}" in text
    # pasted into a config file over the preset, the tables give aam the tuned values and leave aamsupcon's
    toml = tmp_path / "tuned.toml"
    toml.write_text(best["preset"] + "\n")
    cfg = load_config(preset="demo", file=toml)
    aam = run_config(cfg, "aam", 0, ["aam", "aamsupcon"])
    assert (aam.optim.lr, aam.loss.params["scale"]) == (lr, scale)
    other = run_config(cfg, "aamsupcon", 0, ["aam", "aamsupcon"])
    assert other.optim.lr == load_config(preset="demo").optim.per_loss["aamsupcon"]["lr"]
    assert other.loss.params["scale"] == load_config(preset="demo").loss.per_loss["aamsupcon"]["scale"]


def test_cli_refuses_a_searched_key_fixed_with_set_before_training(tmp_path):
    base = ["tune", "--preset", "demo", "--loss", "aam", "--param", "optim.lr=1e-3:2e-2:log", "--out", str(tmp_path)]
    for fixed in ("optim.lr=0.01", "optim.per_loss.aam.lr=0.01"):
        r = CliRunner().invoke(app, [*base, "--set", fixed])
        assert r.exit_code == 2 and "optim.lr: both searched (--param) and fixed" in r.output, r.output
    r = CliRunner().invoke(app, [*base[:-4], "--param", "optim.lrate=1e-3:1e-2", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "did you mean 'optim.lr'" in r.output
    # a per-loss lr of another loss fixes nothing for aam
    r = CliRunner().invoke(app, [*base, "--set", "optim.per_loss.aamsupcon.lr=0.01", "--param", "scale=0:1"])
    assert r.exit_code == 2 and "scale=0.0 is not valid" in r.output  # got past the fixed check to the scale one
    assert not any(tmp_path.iterdir())  # nothing was written: refused before any study or corpus


def test_a_searched_lr_replaces_the_presets_per_loss_lr_before_the_user_settings_are_checked(tmp_path):
    # the demo preset gives aam its own lr (0.0017); with optim.lr searched that value is never used,
    # so --set optim.min_lr above it is checked against the searched range only
    args = ["tune", "--preset", "demo", "--loss", "aam", "--set", "optim.min_lr=0.003", "--out", str(tmp_path)]
    r = CliRunner().invoke(app, [*args, "--param", "optim.lr=1e-3:2e-2:log"])
    assert r.exit_code == 2 and "optim.per_loss" not in r.output
    assert "--param optim.lr=1e-3:2e-2:log: optim.lr=0.001 is not valid: optim.min_lr must be <= optim.lr" in r.output
    r = CliRunner().invoke(app, [*args, "--param", "scale=4:16"])  # lr not searched: the preset's lr stays
    assert r.exit_code == 2 and "optim.per_loss.aam: optim.min_lr must be <= optim.lr (0.0017)" in r.output
    assert not (tmp_path / "tune").exists()
