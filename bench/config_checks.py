"""Valid ranges of every config setting, checked when a config is read (before any data is touched).

One table, :data:`RANGES`, maps ``"section.key"`` to a :class:`Rule`; :func:`check_config` applies it
to a whole :class:`~bench.config.ExperimentConfig` (``load_config`` calls it) and
:func:`check_section` to one section (the sections' ``validate()`` and ``bench tune``'s
:class:`~bench.tune.options.TuneConfig`). Every message starts with the key, e.g.
``eval.asnorm_top must be >= 2, got 0``. Adding a setting means adding one line here::

    "train.patience": at_least(0),

``tests/test_config_checks.py`` walks every field of every section and fails when one has no entry,
then feeds each entry its ``bad`` example and expects the refusal.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class Rule:
    """``ok(value)`` says whether a value is valid; ``text`` completes '<key> must ...'; ``bad`` is an
    out-of-range example (TOML text, as ``--set key=<bad>`` would give it) the tests feed in;
    ``choices`` gives the valid names of a name setting (``{choices}`` in ``text``, and suggestions)."""

    ok: Callable[[Any], bool]
    text: str
    bad: str
    choices: Callable[[], list[str]] | None = None


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def greater(lo: float, bad: str | None = None) -> Rule:
    return Rule(lambda v: _num(v) and v > lo, f"be > {lo:g}", bad or f"{lo:g}")


def at_least(lo: float, bad: str | None = None) -> Rule:
    return Rule(lambda v: _num(v) and v >= lo, f"be >= {lo:g}", bad or f"{lo - 1:g}")


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, bad: str | None = None) -> Rule:
    def ok(v: Any) -> bool:
        return _num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    text = f"be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return Rule(ok, text, bad or f"{hi + 1:g}")


def one_of(choices: Sequence[str] | Callable[[], Sequence[str]], text: str | None = None) -> Rule:
    """A name from ``choices`` (a list, or a function giving a registry's names when called)."""

    def names() -> list[str]:
        return list(choices() if callable(choices) else choices)

    # the message is built lazily so registries are imported only when a value is wrong
    return Rule(lambda v: isinstance(v, str) and v in names(), text or "be one of {choices}", '"nonesuch"', names)


def flag() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "be true or false", '"maybe"')


def text(*, nonempty: bool = False, pattern: str | None = None, what: str = "") -> Rule:
    """A string without control characters (no path or name holds a NUL or a newline)."""
    rx = re.compile(pattern) if pattern else None

    def ok(v: Any) -> bool:
        return (
            isinstance(v, str)
            and (bool(v) or not nonempty)
            and not _CONTROL.search(v)
            and (rx is None or not v or bool(rx.fullmatch(v)))
        )

    default = ("be a non-empty string" if nonempty else "be a string") + " without control characters"
    return Rule(ok, what or default, '""' if nonempty else '"a\\nb"')


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def strings(*, nonempty: bool = False) -> Rule:
    return Rule(
        lambda v: (
            isinstance(v, list)
            and all(isinstance(x, str) and x and not _CONTROL.search(x) for x in v)
            and (bool(v) or not nonempty)
        ),
        "be a non-empty list of names" if nonempty else "be a list of non-empty strings",
        "[]" if nonempty else '[""]',
    )


def table() -> Rule:
    # entries are checked against the registry entry's own config dataclass by bench.config.resolve
    return Rule(lambda v: isinstance(v, dict), "be a table", "3")


def probabilities() -> Rule:
    return Rule(
        lambda v: isinstance(v, list) and bool(v) and all(_num(x) and 0 < x < 1 for x in v),
        "be a non-empty list of numbers in (0, 1)",
        "[0.0]",
    )


def _optimizers() -> list[str]:
    from bench.runner.optim import OPTIMIZERS

    return sorted(OPTIMIZERS)


def _schedules() -> list[str]:
    from bench.runner.optim import SCHEDULES

    return sorted(SCHEDULES)


NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

#: ``"section.key" -> Rule`` for every setting of ExperimentConfig (and ``tune.*`` for TuneConfig).
RANGES: dict[str, Rule] = {
    "experiment": text(nonempty=True, pattern=NAME, what="be a folder name (letters, digits, '.', '_', '-')"),
    "preset": text(),
    # data
    "data.corpus": text(nonempty=True),  # the name is checked against CORPORA by load_corpus, before any file
    "data.root": text(nonempty=True),
    "data.train_lists": strings(),
    "data.eval_root": text(),
    "data.trials": text(),
    "data.musan": text(),
    "data.rirs": text(),
    "data.sample_rate": between(1000, 384000, bad="0"),
    "data.crop_seconds": greater(0),
    "data.views": at_least(1),
    "data.view_types": strings(nonempty=True),
    "data.speed_perturb": flag(),
    "data.speakers_per_batch": at_least(1),
    "data.utts_per_speaker": at_least(1),
    "data.workers": at_least(0),
    "data.cache_mb": at_least(0),
    "data.skip_bad": flag(),
    "data.resample": flag(),
    "data.val_speakers": at_least(0),
    "data.min_seconds": greater(0),
    "data.augment_on": one_of(("loader", "device"), "be loader or device"),
    # model
    "model.backbone": text(nonempty=True),  # registry name, checked by resolve
    "model.params": table(),
    "model.frontend.n_mels": at_least(1),
    "model.frontend.win_ms": greater(0),
    "model.frontend.hop_ms": greater(0),
    "model.frontend.mean_norm": flag(),
    "model.frontend.specaug": flag(),
    "model.frontend.freq_masks": at_least(0),
    "model.frontend.freq_mask_width": at_least(0),
    "model.frontend.time_masks": at_least(0),
    "model.frontend.time_mask_width": at_least(0),
    # loss
    "loss.name": text(nonempty=True),  # registry name, checked by resolve
    "loss.params": table(),
    "loss.margin_warmup_epochs": at_least(0),
    "loss.margin_start_epoch": at_least(0),
    "loss.margin_shape": one_of(("linear", "exp"), "be linear or exp"),  # losses.schedule.SHAPES
    "loss.set_params": strings(),
    "loss.per_loss": table(),
    # optim
    "optim.optimizer": one_of(_optimizers),
    "optim.lr": greater(0, bad="-1"),
    "optim.momentum": between(0, 1, hi_open=True, bad="1"),
    "optim.weight_decay": at_least(0),
    "optim.scheduler": one_of(_schedules),
    "optim.gamma": between(0, 1, lo_open=True, bad="0"),
    "optim.step_size": at_least(1),
    "optim.max_reductions": at_least(0),
    "optim.warmup_epochs": at_least(0),
    "optim.min_lr": at_least(0),
    "optim.grad_clip": at_least(0),
    "optim.per_loss": table(),  # each table's keys and values: bench.per_loss.optim_for
    # train
    "train.epochs": at_least(1),
    "train.steps_per_epoch": at_least(0),
    "train.seed": at_least(0),  # numpy seeds are non-negative
    "train.device": text(nonempty=True, pattern=r"auto|cpu|mps|cuda(:\d+)?", what="be auto, cpu, mps, cuda or cuda:N"),
    "train.amp": one_of(("none", "bf16", "fp16"), "be none, bf16 or fp16"),
    "train.compile": flag(),
    "train.max_bad_steps": at_least(0),
    "train.log_every": at_least(1),
    "train.validate_every": at_least(0),
    "train.checkpoint_every": at_least(0),
    # eval
    "eval.enroll_mode": one_of(("concat", "mean"), "be concat or mean"),
    "eval.crops": at_least(0),
    "eval.crop_seconds": greater(0),
    "eval.asnorm": flag(),
    "eval.cohort_size": at_least(2),  # a spread needs two cohort scores
    "eval.asnorm_top": at_least(2),  # top-1 has zero spread: the normalised score would divide by 0
    "eval.p_targets": probabilities(),
    "eval.max_seconds": at_least(0),
    "eval.batch_size": at_least(1),
    "eval.untrained": flag(),
    "eval.label_style": one_of(("binary", "target"), "be binary or target"),  # bench.scorefile.LABEL_STYLES
    "eval.calibration.method": one_of(("none", "linear", "qmf"), "be none, linear or qmf"),
    "eval.calibration.quality": Rule(
        lambda v: isinstance(v, list) and all(x in ("duration", "norm") for x in v),
        "be a list of duration, norm",
        '["loudness"]',
    ),
    "eval.calibration.prior": Rule(
        lambda v: _num(v) and (v == 0 or 0 < v < 1), "be in (0, 1) (or 0: the first p_target)", "1"
    ),
    "eval.calibration.l2": at_least(0),
    "finetune.name": text(),  # recipe name, checked against bench.finetune.FINETUNES by plan_runs
    "finetune.parent": text(),
    "finetune.params": table(),
    "train.early_stop": flag(),
    "train.patience": at_least(1),
    "train.min_delta": at_least(0),
    "train.ema_decay": between(0, 1, hi_open=True, bad="1"),
    # tune (bench tune's own options, bench.tune.options.TuneConfig; shown as their command-line flags)
    "tune.loss": text(nonempty=True),
    "tune.params": strings(),
    "tune.trials": at_least(1),
    "tune.study": text(pattern=NAME, what="use letters, digits, '.', '_' and '-' only"),
    "tune.storage": text(),
    # literals: bench.tune.options imports this module (a lazy import back would be a cycle);
    # tests/test_tune.py checks they are PRUNERS and OBJECTIVES
    "tune.pruner": one_of(("median", "hyperband", "none")),
    "tune.objective": one_of(("eer", "mindcf")),
    "tune.seed": at_least(0),
    "tune.out": text(nonempty=True),
    "tune.startup_trials": at_least(0),
    "tune.warmup_epochs": at_least(0),
    "tune.keep_checkpoints": flag(),
    "tune.heartbeat_seconds": at_least(1),
    "tune.grace_seconds": at_least(2),
    "tune.poll_seconds": greater(0),
}


def _label(key: str) -> str:
    section, _, name = key.partition(".")
    return f"--{name.replace('_', '-')}" if section == "tune" else key


def check_value(key: str, value: Any) -> None:
    """Raise a BenchError naming ``key`` when ``value`` is outside its range (unknown keys pass)."""
    rule = RANGES.get(key)
    if rule is None or rule.ok(value):
        return
    msg = rule.text
    if "{choices}" in msg and rule.choices is not None:
        from bench.registry import suggest

        names = rule.choices()
        msg = msg.format(choices=", ".join(names)) + (suggest(value, names) if isinstance(value, str) else "")
    raise BenchError(f"{_label(key)} must {msg}, got {value!r}")


def check_section(prefix: str, obj: Any) -> None:
    """Check every field of dataclass ``obj`` (nested dataclasses too) under ``prefix`` ('' for the top)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            check_section(key, value)
        else:
            check_value(key, value)


#: ``"section.key" -> (applies(cfg), when)``: settings that only act under another setting. A value the
#: user set (config file or ``--set``) where it would do nothing is refused by ``load_config`` unless
#: it is the default; a preset's value is not, so ``--set optim.scheduler=cosine`` on a plateau preset
#: still works.
ONLY_WITH: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optim.max_reductions": (lambda c: c.optim.scheduler == "plateau", "optim.scheduler = 'plateau'"),
    "optim.step_size": (lambda c: c.optim.scheduler == "step", "optim.scheduler = 'step'"),
    "optim.gamma": (
        lambda c: c.optim.scheduler in ("exponential", "step", "plateau"),
        "an exponential, step or plateau schedule",
    ),
    "optim.momentum": (lambda c: c.optim.optimizer == "sgd", "optim.optimizer = 'sgd'"),
}


def check_effect(cfg: Any, user_set: Callable[[str], bool]) -> None:
    """Refuse a setting the user gave that the rest of ``cfg`` makes inert (:data:`ONLY_WITH`).

    Raises:
        BenchError: ``optim.max_reductions has no effect without optim.scheduler = 'plateau' ...``.
    """
    defaults = type(cfg)()
    for key, (applies, when) in ONLY_WITH.items():
        # the default value is harmless: a config printed by --print-config holds every key
        if user_set(key) and not applies(cfg) and _get(cfg, key) != _get(defaults, key):
            raise BenchError(f"{key} has no effect without {when} (got {_describe(cfg, when)}); leave it out")


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _describe(cfg: Any, when: str) -> str:
    if "optimizer" in when:
        return f"optim.optimizer = {cfg.optim.optimizer!r}"
    return f"optim.scheduler = {cfg.optim.scheduler!r}"


def check_config(cfg: Any) -> None:
    """Every setting of an ExperimentConfig, then the rules that relate two settings.

    Raises:
        BenchError: the first setting out of range, naming its key.
    """
    check_section("", cfg)
    fe, data = cfg.model.frontend, cfg.data
    # mean normalisation of a single analysis frame leaves all zeros: every such clip would get the
    # same embedding, so the shortest accepted clip must give at least two frames
    two_frames = (fe.win_ms + fe.hop_ms) / 1000.0
    if data.min_seconds < two_frames:
        raise BenchError(
            f"data.min_seconds must be >= {two_frames:g} s (two analysis frames of "
            f"{fe.win_ms:g} ms every {fe.hop_ms:g} ms), got {data.min_seconds!r}"
        )
    # every length the toolkit cuts audio to must itself be analysable
    ev = cfg.eval
    for key, seconds, active in (
        ("data.crop_seconds", data.crop_seconds, True),
        ("eval.crop_seconds", ev.crop_seconds, ev.crops > 0),
        ("eval.max_seconds", ev.max_seconds, ev.max_seconds > 0),
    ):
        if active and seconds < data.min_seconds:
            raise BenchError(f"{key} must be >= data.min_seconds ({data.min_seconds:g} s), got {seconds!r}")
    if fe.freq_mask_width >= fe.n_mels:
        raise BenchError(
            f"model.frontend.freq_mask_width must be < model.frontend.n_mels ({fe.n_mels}), got {fe.freq_mask_width}"
        )
    if cfg.optim.scheduler == "plateau" and cfg.train.validate_every <= 0:
        raise BenchError("optim.scheduler='plateau' cuts the lr at validation plateaus: set train.validate_every >= 1")
    if cfg.optim.scheduler == "plateau" and cfg.optim.gamma > 0.5:
        raise BenchError(
            "optim.gamma is the factor of each lr cut under optim.scheduler='plateau' and must be <= 0.5 "
            f"(SpeechBrain's NewBob halves the lr, torch's ReduceLROnPlateau cuts it x0.1), got {cfg.optim.gamma!r}"
            + (" (the exponential schedule's per-epoch default)" if cfg.optim.gamma == 0.97 else "")
        )
    if cfg.optim.min_lr > cfg.optim.lr:
        raise BenchError(f"optim.min_lr must be <= optim.lr ({cfg.optim.lr!r}), got {cfg.optim.min_lr!r}")


def check_tune(tune: Any) -> None:
    """``bench tune``'s options (TuneConfig), with the relation between the heartbeat and its grace."""
    check_section("tune", tune)
    if tune.grace_seconds <= tune.heartbeat_seconds:
        raise BenchError(
            f"--grace-seconds must be > --heartbeat-seconds ({tune.heartbeat_seconds}), got {tune.grace_seconds}"
        )


def check_batch_positives(cfg: Any) -> None:
    """A loss that needs positive pairs (``needs_positives``) gets none from batches of one view of
    one utterance per speaker: refused before any data is read."""
    from losses import LOSSES

    cls = LOSSES.get(cfg.loss.name).cls
    m, v = cfg.data.utts_per_speaker, cfg.data.views
    if getattr(cls, "needs_positives", False) and m * v < 2:
        raise BenchError(
            f"loss '{cfg.loss.name}' needs positive pairs in every batch, but data.utts_per_speaker={m} "
            f"and data.views={v} give none: set data.utts_per_speaker >= 2 or data.views >= 2"
        )
