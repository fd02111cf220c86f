"""Typed experiment configuration: dataclasses, TOML presets and ``--set key=value`` overrides.

An experiment config is resolved in three layers, later ones winning:

1. the dataclass defaults below,
2. a preset TOML file (``bench/presets/<name>.toml``) or a user TOML file,
3. ``--set section.key=value`` overrides from the command line.

Component parameters (``model.params``, ``loss.params``) are free tables validated against the
registry entry's own config dataclass by :func:`resolve`, which also fills in their defaults so
the resolved config written to a run directory is complete.

Example:
    >>> cfg = load_config(preset="demo", overrides=["train.epochs=2", "loss.name=aam"])
    >>> cfg.train.epochs, cfg.loss.name
    (2, 'aam')
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config_checks import check_batch_positives, check_config, check_effect, check_section
from bench.config_origin import Origins, dotted_keys
from bench.errors import BenchError
from bench.registry import config_from_mapping, suggest
from models.config import FrontendConfig, ModelConfig  # noqa: F401  (the model section is the models' own)

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    """Where the corpus is and how training crops are drawn."""

    corpus: str = "synthetic"  # synthetic | cnceleb | voxceleb | kaldi
    root: str = "data/synth-demo100"  # the embedded corpus, generated on first use (bench/data/prepare.py)
    # cnceleb12 only: the two corpus roots [CN-Celeb1, CN-Celeb2] it trains on (other readers ignore it)
    train_lists: list[str] = field(default_factory=list)
    eval_root: str = ""  # defaults to root
    trials: str = ""  # trial list file; defaults to the corpus' own (eval/lists/trials.lst, veri_test2.txt, trials)
    musan: str = ""  # MUSAN-layout noise folder; defaults to <root>/musan when present
    rirs: str = ""  # RIRS_NOISES-layout folder; defaults to <root>/rirs when present
    sample_rate: int = 16000
    crop_seconds: float = 2.0
    views: int = 5
    view_types: list[str] = field(default_factory=lambda: ["reverb", "babble", "music", "noise", "clean"])
    speed_perturb: bool = False
    speakers_per_batch: int = 32
    utts_per_speaker: int = 2
    workers: int = 2
    # MiB of decoded audio the training process keeps in memory (bench/data/cache.py): a corpus that
    # fits is decoded once instead of at every crop; 0 reads every crop from disk. Same batches either way.
    cache_mb: int = 0
    skip_bad: bool = False
    resample: bool = True  # resample wrong-rate audio (with a warning) instead of refusing it
    val_speakers: int = 0  # 0: use the corpus' own validation split
    # shortest audio accepted anywhere (training, validation, enrolment, test, embed, eval); shorter
    # files are bad audio. 0.1 s gives 8 frames of 25 ms / 10 ms
    min_seconds: float = 0.1
    augment_on: str = (
        "loader"  # loader | device: where the views' reverb/noise arithmetic runs (bench/data/ondevice.py)
    )

    def validate(self) -> None:
        check_section("data", self)  # ranges: bench/config_checks.py


@dataclass
class LossConfig:
    name: str = "aamsupcon"
    params: dict[str, Any] = field(default_factory=dict)
    # margin schedule (losses/schedule.py): margins are 0 until margin_start_epoch, then grow over
    # margin_warmup_epochs epochs with margin_shape "linear" or "exp" (WeSpeaker's form)
    margin_warmup_epochs: float = 0
    margin_start_epoch: float = 0
    margin_shape: str = "linear"
    # Parameters of one loss only, over `params` (e.g. [loss.per_loss.aam] scale = 12.0): where a study
    # tuned each loss of a comparison separately (scripts/tune_demo.sh).
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    # loss.params keys the user gave with --set: each must fit one of the experiment's losses. Keys from
    # a preset or config file apply to the losses that have them. Filled by load_config; run configs
    # (config.toml) carry it empty.
    set_params: list[str] = field(default_factory=list)

    def validate(self) -> None:
        from losses.schedule import SHAPES

        if not self.margin_warmup_epochs >= 0:
            raise BenchError(f"loss.margin_warmup_epochs must be >= 0, got {self.margin_warmup_epochs}")
        if not self.margin_start_epoch >= 0:
            raise BenchError(f"loss.margin_start_epoch must be >= 0, got {self.margin_start_epoch}")
        if self.margin_shape not in SHAPES:
            raise BenchError(f"loss.margin_shape must be one of {', '.join(SHAPES)}, got {self.margin_shape!r}")


@dataclass
class OptimConfig:
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "exponential"  # exponential | step | cosine | constant | plateau
    gamma: float = 0.97  # per-epoch factor (exponential), per-step_size factor (step) or per-cut factor (plateau)
    step_size: int = 10
    # plateau: lr cuts (x gamma) at validation plateaus (train.patience, train.min_delta) before a
    # plateau at the lowest lr counts as converged (bench/runner/convergence.py)
    max_reductions: int = 2
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    grad_clip: float = 0.0  # 0 disables clipping
    # Settings of one loss only, over the ones above (e.g. [optim.per_loss.aam] lr = 0.003): a learning
    # rate tuned per loss (bench tune --param optim.lr=...). Applied by bench.per_loss.optim_for.
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        check_section("optim", self)


@dataclass
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int = 0  # 0: one pass over the training utterances
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (GPU only)
    compile: bool = False
    max_bad_steps: int = 20  # NaN/inf losses tolerated before the run stops
    log_every: int = 10
    validate_every: int = 1  # epochs between validation-EER evaluations (0: never)
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: at epoch ends only)
    # Plateau rule (bench/runner/convergence.py): converged once `patience` validations in a row do not
    # lower the validation EER by more than `min_delta` points; early_stop ends the run there (epochs is
    # then the maximum budget) and scores the best-validation checkpoint.
    early_stop: bool = False
    patience: int = 3
    min_delta: float = 0.0
    # Exponential moving average of the model weights, updated after every step (0: none). Validation,
    # best.pt and scoring then use the averaged weights: they move less from one validation to the
    # next than the last step's, which steadies the plateau rule (bench/runner/train.py).
    ema_decay: float = 0.0

    def validate(self) -> None:
        check_section("train", self)
        if self.early_stop and self.validate_every <= 0:
            raise BenchError("train.early_stop needs validation: set train.validate_every >= 1")


@dataclass
class CalibrationConfig:
    """Score calibration fitted on the validation trials (``bench.calibration``), never the evaluation trials."""

    method: str = "linear"  # none | linear | qmf (linear + quality measures)
    quality: list[str] = field(default_factory=lambda: ["duration", "norm"])  # qmf measures
    prior: float = 0.0  # effective target prior of the fit; 0: the first of eval.p_targets
    # ridge on the weights (raw feature scale): keeps the fit finite on separable validation trials;
    # 1e-7 moves the slope of cosine scores (LLR slope ~30) by under 1 %, 1e-5 already by ~30 % at p 0.01
    l2: float = 1e-7

    def validate(self) -> None:
        if self.method not in ("none", "linear", "qmf"):
            raise BenchError(f"eval.calibration.method must be none, linear or qmf, got '{self.method}'")
        if not (self.prior == 0.0 or 0.0 < self.prior < 1.0):
            raise BenchError(f"eval.calibration.prior must be in (0, 1) (or 0: the first p_target), got {self.prior}")
        if self.l2 < 0:
            raise BenchError(f"eval.calibration.l2 must be >= 0, got {self.l2}")


@dataclass
class EvalConfig:
    enroll_mode: str = "concat"  # concat | mean
    crops: int = 0  # 0: full utterance; N: mean of N crops of crop_seconds
    crop_seconds: float = 3.0
    asnorm: bool = False
    cohort_size: int = 300
    asnorm_top: int = 100
    p_targets: list[float] = field(default_factory=lambda: [0.01, 0.05])
    max_seconds: float = 0.0  # 0: no cap on utterance length at evaluation
    batch_size: int = 32
    untrained: bool = True  # also score the untrained model (metrics.json "untrained"), as a baseline
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    label_style: str = "binary"  # labels in scores.txt: binary (1/0) | target (target/nontarget)

    def validate(self) -> None:
        check_section("eval", self)


@dataclass
class FinetuneConfig:
    """A second training stage started from a finished run (``bench run --finetune NAME``).

    ``name`` picks a recipe of ``bench.finetune.FINETUNES`` ("" = an ordinary run), ``params`` its
    settings; ``parent`` is filled in by the runner with the run folder whose best checkpoint it starts from.
    """

    name: str = ""
    parent: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """Everything that defines one training + evaluation run."""

    experiment: str = "default"
    preset: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def read_toml(path: str | Path, origins: Origins | None = None) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the file and line. ``origins`` records its keys' lines."""
    from bench.textio import read_text

    p = Path(path)
    text = read_text(p, "config file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        text = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)", text)
        line = getattr(e, "lineno", None) or (int(m.group(1)) if m else None)
        msg = getattr(e, "msg", None) or re.sub(r"\s*\(at line.*\)$", "", text)
        raise BenchError(f"invalid TOML: {msg}", path=p, line=line) from None
    if origins is not None:
        origins.add_file(p, text, data)
    return data


def _merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[list[str], str]:
    """Split ``a.b.c=value`` into (["a","b","c"], "value")."""
    if "=" not in text:
        raise BenchError(f"--set expects key=value, got '{text}'")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise BenchError(f"--set expects key=value, got '{text}'")
    return parts, value.strip()


def _parse_scalar(value: str, key: str = "", default: Any = None) -> Any:
    """Interpret an override value as TOML when it parses (numbers, bools, lists), else as a string.

    ``default`` is the setting's default (:func:`_check_key`): a string setting keeps a value that
    opens ``[`` or ``{`` as a string.

    Raises:
        BenchError: a value that opens a TOML array or inline table (``[``, ``{``) but does not
            parse: read as a string it would only fail later as "expected a table" without the reason.
    """
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError as e:
        if value.lstrip().startswith(("[", "{")) and not isinstance(default, str):
            kind = "inline table" if value.lstrip().startswith("{") else "array"
            reason = str(e).split(" (at ")[0]
            raise BenchError(
                f"--set {key}={value}: not a valid TOML {kind} ({reason}); quote it to pass a string"
            ) from None
        return value


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any, str]]:
    """Each ``key=value`` string as (key parts, typed value, the text), its key checked against
    ExperimentConfig (keys under ``model.params`` and ``loss.params`` are checked later against the
    registry).

    Raises:
        BenchError: no ``=``, an unknown key, or a value that opens a TOML array or table but does
            not parse.
    """
    out = []
    for text in overrides:
        parts, value = parse_override(text)
        out.append((parts, _parse_scalar(value, ".".join(parts), _check_key(parts, text)), text))
    return out


def apply_overrides(data: dict[str, Any], overrides: list[tuple[list[str], Any, str]]) -> dict[str, Any]:
    """Apply parsed overrides (:func:`parse_overrides`) to a copy of a nested dict."""
    out = _merge({}, data)
    for parts, parsed, text in overrides:
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BenchError(f"--set {text}: '{p}' is not a section")
        # A table value merges into the table, as a config file's table does over the preset's:
        # `--set 'optim={lr=0.01}'` changes the lr and keeps the preset's other optim settings.
        old = node.get(parts[-1])
        node[parts[-1]] = _merge(old, parsed) if isinstance(old, dict) and isinstance(parsed, dict) else parsed
    return out


def _check_key(parts: list[str], text: str) -> Any:
    """Check that ``parts`` names a setting of ExperimentConfig (any key inside a free params table
    passes) and return its default value (None inside a free table), so that a string setting keeps
    a value such as ``[dev]trials.txt``."""
    node: Any = ExperimentConfig()
    for i, p in enumerate(parts):
        if isinstance(node, dict):
            return None  # inside a free params table, checked later against the registry
        if not dataclasses.is_dataclass(node):
            raise BenchError(f"--set {text}: '{parts[i - 1]}' is not a section")
        names = [f.name for f in dataclasses.fields(node)]
        if p not in names:
            where = ".".join(parts[:i]) or "config"
            raise BenchError(
                f"--set {text}: unknown key '{p}' in {where}{suggest(p, names)}; valid: {', '.join(names)}"
            )
        node = getattr(node, p)
    return node


def load_config(
    preset: str | None = None,
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    origins: Origins | None = None,
) -> ExperimentConfig:
    """Build an ExperimentConfig from defaults, a preset and/or TOML file, and overrides.

    ``origins``, when given, is filled with where each setting came from (bench.config_origin), so
    that later checks (a loss's own parameters) can name the file and line too.

    Raises:
        BenchError: a syntax error, unknown key or out-of-range value, at the file and line that set
            it (or the ``--set`` that gave it) where that is known.
    """
    origins = origins if origins is not None else Origins()
    data: dict[str, Any] = {}
    if preset:
        if preset not in preset_names():
            raise BenchError(
                f"unknown preset '{preset}'{suggest(preset, preset_names())}; known: {', '.join(preset_names())}"
            )
        path = PRESET_DIR / f"{preset}.toml"
        data = _merge(data, read_toml(path, origins))
        data.setdefault("preset", preset)
    if file:
        data = _merge(data, read_toml(file, origins))
    from bench.per_loss import drop_overridden

    parsed = parse_overrides(overrides or [])
    # `--set 'optim={lr=0.01}'` types optim.lr just as `--set optim.lr=0.01` does
    typed = [
        p
        for parts, value, _ in parsed
        for p in [parts, *(k.split(".") for k in dotted_keys(value, ".".join(parts), set()))]
    ]
    origins.add_overrides([(parts, value) for parts, value, _ in parsed])
    data = apply_overrides(drop_overridden(data, typed), parsed)
    with origins.located():
        cfg = config_from_mapping(ExperimentConfig, data, where="config")
        cfg.loss.set_params = sorted(set(cfg.loss.set_params) | user_loss_params(overrides or []))
        check_config(cfg)  # every setting's range (bench/config_checks.py), before any data is touched
        check_effect(cfg, lambda key: origins.user_set(key, PRESET_DIR / f"{preset}.toml" if preset else None))
    return cfg


def user_loss_params(overrides: list[str]) -> set[str]:
    """The loss parameters the user typed with ``--set``: ``NAME`` for ``loss.params.NAME=...`` and
    ``LOSS.NAME`` for ``loss.per_loss.LOSS.NAME=...`` (parameter names never hold a dot)."""
    out = set()
    for text in overrides:
        parts, _ = parse_override(text)
        if parts[:2] == ["loss", "params"] and len(parts) == 3:
            out.add(parts[2])
        elif parts[:2] == ["loss", "per_loss"] and len(parts) == 4:
            out.add(f"{parts[2]}.{parts[3]}")
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (JSON/TOML friendly)."""
    return dataclasses.asdict(cfg)


def to_toml(data: dict[str, Any]) -> str:
    """Serialise a nested dict of scalars/lists/tables to TOML (enough for configs)."""
    lines: list[str] = []

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if v is None:
            return '""'
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def emit(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {fmt(v)}")
        if scalars:
            lines.append("")
        for k, v in tables.items():
            emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", data)
    return "\n".join(lines).rstrip() + "\n"


def value_at(d: Any, dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"`` (None where a key is missing)."""
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def config_diff(a: Any, b: Any, prefix: str = "", *, empty_equal: bool = False, missing_ok: bool = False) -> list[str]:
    """Dotted keys whose values differ between nested config dicts ``a`` (e.g. stored) and ``b`` (new).

    ``empty_equal``: "", None and [] count as equal. ``missing_ok``: a key that ``a`` lacks is no
    difference (a stored config recorded before that setting existed). The one config diff of the
    toolkit: resume/skip checks, tuning-study definitions and checkpoint-vs-run checks use it.

    Example:
        >>> config_diff({"train": {"epochs": 1}}, {"train": {"epochs": 2, "new": 0}}, missing_ok=True)
        ['train.epochs']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if k in a or not missing_ok:
                out += config_diff(a.get(k), b.get(k), f"{prefix}{k}.", empty_equal=empty_equal, missing_ok=missing_ok)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    empty = ("", None, [])
    if a != b and not (empty_equal and a in empty and b in empty):
        return [prefix.rstrip(".")]
    return []


def resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Validate component names/params against the registries and fill in their defaults."""
    from losses import LOSSES
    from models import BACKBONES

    model_cfg = BACKBONES.make_config(cfg.model.backbone, cfg.model.params)
    loss_cfg = LOSSES.make_config(cfg.loss.name, cfg.loss.params)
    check_batch_positives(cfg)
    out = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, params=dataclasses.asdict(model_cfg)),
        loss=dataclasses.replace(cfg.loss, params=dataclasses.asdict(loss_cfg)),
    )
    if cfg.finetune.name:
        from bench.finetune_recipes import FINETUNES

        ft_cfg = FINETUNES.make_config(cfg.finetune.name, cfg.finetune.params)
        out = dataclasses.replace(out, finetune=dataclasses.replace(cfg.finetune, params=dataclasses.asdict(ft_cfg)))
    return out
