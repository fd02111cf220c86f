"""The results schema: the run folder's file names and the ``metrics.json`` record.

Every writer of results (``bench.runner.experiment``, ``bench.crosseval``,
``bench.realvoices.baseline``) builds a :class:`MetricsRecord` and writes it with
:meth:`MetricsRecord.write`; every reader (``bench.runner.experiment`` on skip, ``reports.collect``)
reads it back with :meth:`MetricsRecord.from_json`, which checks it and names the file on malformed
input. Torch-free, so that ``bench report`` and the tests read results without loading a model.

On disk, ``metrics.json`` is one flat JSON object (keys sorted, non-finite numbers as ``null``, by
:func:`bench.io.to_json`). The groups of the record are flattened into it: a group that is absent
(``None``) writes none of its keys, a present one writes all of its keys, ``null`` included, except
those documented as "omitted when None". Keys this version does not know are kept in
:attr:`MetricsRecord.extra` and written back, so older and newer files stay readable.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# ----------------------------------------------------------------------------- run-folder file names
# runs/<experiment>/<loss>/seed<k>/ (bench.runner.rundir) and <run>/eval/<corpus>/ (bench.crosseval)
CONFIG_FILE = "config.toml"  # the resolved config
RUN_FILE = "run.json"  # provenance, status, timings
TRAIN_LOG_FILE = "train_log.csv"  # one row per logged step
EPOCHS_FILE = "epochs.csv"  # one row per epoch
SCORES_FILE = "scores.txt"  # enroll test score label, one trial per line
CALIBRATED_SCORES_FILE = "scores_calibrated.txt"  # the same trials with calibrated LLRs
METRICS_FILE = "metrics.json"  # MetricsRecord
NON_LEARNED = "non-learned"  # the train corpus recorded by a system that was not trained (MFCC baseline)
EMBEDDINGS_FILE = "embeddings.npz"  # bench eval: every embedding it computed
PROVENANCE_FILE = "provenance.json"  # bench eval: versions, checkpoint sha256, corpus, options
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOCK_FILE = ".lock"
EVAL_DIR = "eval"  # <run>/eval/<corpus>/: cross-corpus results (bench eval)
UNTRAINED_DIR = "eval_untrained"  # diagnostics of the untrained model; never a report system

# Budget keys the runner records (bench.runner.convergence.Budget), flattened into metrics.json.
# Kept here as names so that this module stays torch-free; tests/test_results.py checks they agree.
BUDGET_KEYS = (
    "converged",
    "stopped_early",
    "epochs",
    "max_epochs",
    "steps",
    "samples_seen",
    "best_epoch",
    "best_val_eer",
    "patience",
    "min_delta",
    "lr_reductions",
)


# ------------------------------------------------------------------------------------ the record


@dataclass
class TrialsRef:
    """Which trial list was scored: ``path`` as given, ``sha256`` of the file's bytes (None for trials
    generated in memory), ``n`` trials scored."""

    path: str = ""
    sha256: str | None = None
    n: int | None = None


@dataclass
class Scoring:
    """How the scores were computed (``bench.runner.evaluate.evaluate_corpus``): keys ``asnorm``,
    ``crops``, ``eval_settings`` (``bench.scoring.score_settings``; older files lack it and are
    rebuilt by the report), ``cohort_speakers`` (None without AS-norm, written as null). The other
    fields are omitted when None."""

    asnorm: bool | None = None
    crops: int | None = None
    eval_settings: dict[str, Any] | None = None
    cohort_speakers: int | None = None


@dataclass
class Training:
    """What the runner adds for a trained run (``bench.runner.experiment``).

    ``untrained``: metrics of the model before training (null when not scored); ``checkpoint``:
    ``last`` or ``best``; ``budget``: the flattened ``bench.runner.convergence.Budget`` (keys
    :data:`BUDGET_KEYS`); ``calibration``: ``bench.runner.calibrate`` record (omitted when None);
    ``parent`` and ``finetune`` (the recipe dict) only for fine-tuning runs (omitted when None).
    """

    untrained: dict[str, Any] | None
    checkpoint: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    parent: str | None = None
    finetune: dict[str, Any] | None = None


@dataclass
class CrossCorpus:
    """A result on another corpus than the training one (``bench eval``, the MFCC baseline).

    ``eval_corpus_type``, ``train_corpus_root`` and ``checkpoint`` are omitted when None (the
    baseline has no training corpus folder nor checkpoint).
    """

    eval_corpus: str
    train_corpus: str
    eval_corpus_root: str
    eval_corpus_type: str | None = None
    train_corpus_root: str | None = None
    checkpoint: str | None = None


@dataclass
class MetricsRecord:
    """The content of one ``metrics.json``.

    ``overall``: ``bench.metrics.compute_metrics`` of all trials (must hold ``eer``, percent);
    ``per_genre``: genre -> metrics (``eer`` None for a one-class genre); ``trials``: the scored list;
    ``corpus``: the evaluation corpus' name; ``enroll_mode``: ``concat`` | ``mean``; ``loss`` and
    ``seed``: the run's loss name and seed (older files may lack them: readers fall back to
    ``run.json``); ``method``: the scoring method of a non-learned baseline. Top-level fields that
    are None are omitted on disk.
    """

    overall: dict[str, Any]
    per_genre: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: TrialsRef | None = None
    corpus: str | None = None
    enroll_mode: str | None = None
    scoring: Scoring | None = None
    training: Training | None = None
    cross: CrossCorpus | None = None
    loss: str | None = None
    seed: int | None = None
    method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.training.calibration if self.training else self.extra.get("calibration")

    @property
    def checkpoint(self) -> str | None:
        if self.training is not None:
            return self.training.checkpoint
        return self.cross.checkpoint if self.cross is not None else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of the on-disk key ``key`` (``None`` counts as recorded), else ``default``."""
        flat = self.to_json()
        return flat[key] if key in flat else default

    def __getitem__(self, key: str) -> Any:
        """``record["cohort_speakers"]``-style access to the on-disk keys (KeyError when not recorded)."""
        return self.to_json()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()

    def to_json(self) -> dict[str, Any]:
        """The flat ``metrics.json`` object (see the module docstring for which keys are written)."""
        out: dict[str, Any] = dict(self.extra)
        out["overall"] = self.overall
        out["per_genre"] = self.per_genre
        if self.trials is not None:
            out["trials"] = dataclasses.asdict(self.trials)
        _put(out, corpus=self.corpus, enroll_mode=self.enroll_mode, loss=self.loss, seed=self.seed, method=self.method)
        if self.scoring is not None:
            sc = self.scoring
            _put(out, asnorm=sc.asnorm, crops=sc.crops, eval_settings=sc.eval_settings)
            out["cohort_speakers"] = sc.cohort_speakers
        if self.cross is not None:
            c = self.cross
            out.update(
                eval_corpus=c.eval_corpus,
                train_corpus=c.train_corpus,
                eval_corpus_root=c.eval_corpus_root,
                cross_corpus=True,
            )
            _put(
                out, eval_corpus_type=c.eval_corpus_type, train_corpus_root=c.train_corpus_root, checkpoint=c.checkpoint
            )
        if self.training is not None:
            t = self.training
            out["untrained"] = t.untrained
            out.update(t.budget)
            _put(out, checkpoint=t.checkpoint, calibration=t.calibration, parent=t.parent, finetune=t.finetune)
        return out

    def write(self, path: str | Path) -> None:
        """Write atomically (:func:`bench.io.atomic_write_json`)."""
        from bench.io import atomic_write_json

        atomic_write_json(path, self.to_json())

    @classmethod
    def from_dict(cls, m: dict[str, Any], path: str | Path | None = None) -> MetricsRecord:
        """The record of a parsed ``metrics.json`` object; errors name ``path``."""
        return _parse(dict(m), path)

    @classmethod
    def from_json(cls, path: str | Path) -> MetricsRecord:
        """Read and check ``path``.

        Raises:
            BenchError: missing file, invalid JSON (with its line), not an object, no ``overall``
                metrics with an ``eer``, a ``trials`` entry that is not an object, or a known key of
                the wrong type — each naming the file.
        """
        return _parse(read_json_object(path, "metrics file"), path)


def read_json_object(path: str | Path, what: str = "JSON file") -> dict[str, Any]:
    """A JSON file that must hold an object; errors name the file (and line for syntax errors)."""
    from bench.textio import read_text

    try:
        data = json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise BenchError(f"invalid JSON: {e.msg}", path=path, line=e.lineno) from None
    if not isinstance(data, dict):
        raise BenchError("expected a JSON object", path=path)
    return data


def _put(out: dict[str, Any], **values: Any) -> None:
    out.update({k: v for k, v in values.items() if v is not None})


_SCORING_KEYS = tuple(f.name for f in dataclasses.fields(Scoring))
_CROSS_KEYS = (
    "eval_corpus",
    "train_corpus",
    "eval_corpus_root",
    "eval_corpus_type",
    "train_corpus_root",
    "cross_corpus",
)
_TRAINING_KEYS = ("untrained", "calibration", "parent", "finetune", *BUDGET_KEYS)


def _parse(m: dict[str, Any], path: str | Path | None) -> MetricsRecord:
    def take(key: str, types: type | tuple[type, ...], what: str, default: Any = None) -> Any:
        if key not in m or m[key] is None:
            m.pop(key, None)
            return default
        v = m.pop(key)
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in _tuple(types)):
            raise BenchError(f"{METRICS_FILE}: '{key}' should be {what}, got {type(v).__name__}", path=path)
        return v

    overall = m.pop("overall", None)
    if not isinstance(overall, dict) or "eer" not in overall:
        raise BenchError(f"{METRICS_FILE} has no 'overall' metrics with an 'eer'", path=path)
    per_genre = take("per_genre", dict, "an object of genre -> metrics", {})
    trials_raw = m.pop("trials", None)
    trials = None
    if trials_raw is not None:
        if not isinstance(trials_raw, dict):
            raise BenchError(f"{METRICS_FILE}: 'trials' should be an object with path and sha256", path=path)
        n = trials_raw.get("n")
        trials = TrialsRef(
            path=str(trials_raw.get("path") or ""),
            sha256=trials_raw.get("sha256") or None,
            n=int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None,
        )
    rec = MetricsRecord(overall=overall, per_genre=per_genre, trials=trials)
    rec.corpus = take("corpus", str, "a corpus name")
    rec.enroll_mode = take("enroll_mode", str, "an enrolment mode")
    rec.loss = take("loss", str, "a loss name")
    rec.seed = take("seed", int, "an integer")
    rec.method = take("method", str, "a method name")
    if any(k in m for k in _SCORING_KEYS):
        rec.scoring = Scoring(
            asnorm=take("asnorm", bool, "true or false"),
            crops=take("crops", int, "an integer"),
            eval_settings=take("eval_settings", dict, "an object"),
            cohort_speakers=take("cohort_speakers", int, "an integer"),
        )
    is_cross, is_training = any(k in m for k in _CROSS_KEYS), any(k in m for k in _TRAINING_KEYS)
    checkpoint = take("checkpoint", str, "a checkpoint name")
    if is_training:
        untrained = take("untrained", dict, "an object of metrics")
        rec.training = Training(
            untrained=untrained,
            checkpoint=checkpoint,
            budget={k: m.pop(k) for k in BUDGET_KEYS if k in m},
            calibration=take("calibration", dict, "an object"),
            parent=take("parent", str, "a run folder"),
            finetune=_finetune(m, path),
        )
    if is_cross:
        rec.cross = CrossCorpus(
            eval_corpus=str(take("eval_corpus", str, "a corpus name", rec.corpus or "")),
            train_corpus=str(take("train_corpus", str, "a corpus name", "")),
            eval_corpus_root=str(take("eval_corpus_root", str, "a folder", "")),
            eval_corpus_type=take("eval_corpus_type", str, "a corpus type"),
            train_corpus_root=take("train_corpus_root", str, "a folder"),
            checkpoint=None if is_training else checkpoint,
        )
        m.pop("cross_corpus", None)
    if checkpoint is not None and not (is_training or is_cross):
        m["checkpoint"] = checkpoint
    rec.extra.update(m)
    return rec


def _finetune(m: dict[str, Any], path: str | Path | None) -> dict[str, Any] | None:
    v = m.pop("finetune", None)
    if v is None:
        return None
    if isinstance(v, str):  # the recipe name alone (never written by a finished run, kept readable)
        return {"recipe": v}
    if not isinstance(v, dict):
        raise BenchError(f"{METRICS_FILE}: 'finetune' should be an object, got {type(v).__name__}", path=path)
    return v


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
