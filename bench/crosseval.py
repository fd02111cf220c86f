"""Cross-corpus evaluation (``bench eval``): score any corpus with a finished run's model, without retraining.

The run's model and the corpus it embeds come from :mod:`bench.runmodel` (re-exported here, with
``bench embed``'s :func:`embed_to_file`); embedding, scoring and metrics are the runner's
(:func:`bench.runner.evaluate.evaluate_corpus`), so a cross-corpus result is computed exactly like
the run's own.

Results of ``bench eval`` go to ``<run>/eval/<name>/`` (file names in :mod:`bench.results`)::

    scores.txt        enroll test score label, one trial per line
    metrics.json      bench.results.MetricsRecord: the run's schema (overall, per_genre, trials path +
                      sha256, enroll_mode, corpus) plus the cross-corpus group (train_corpus,
                      eval_corpus, checkpoint, ...), loss, seed
    embeddings.npz    ids + float32 embeddings of every utterance embedded (enrolment, test, cohort)
    provenance.json   versions, git revision, device, checkpoint sha256, corpus root, command options

The folder is built beside its final place and renamed into it, so a crash never leaves a
half-written result that ``bench report`` would pick up; a finished one is replaced only with
``force``. ``<name>`` defaults to the corpus type (``cnceleb``, ``voxceleb``, ...); when that is
also the training corpus' name it becomes ``<type>-<folder name>``, so the report does not mistake
the new result for the run's own evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.config import EvalConfig, ExperimentConfig
from bench.data.corpus import Corpus
from bench.errors import BenchError
from bench.results import (
    EMBEDDINGS_FILE,
    EVAL_DIR,
    METRICS_FILE,
    PROVENANCE_FILE,
    SCORES_FILE,
    CrossCorpus,
    MetricsRecord,
)

# the run's model, the corpora it embeds and bench embed; imported from here since bench eval began
from bench.runmodel import (  # noqa: F401
    CHECKPOINT_CHOICES,
    EmbedResult,
    ProgressFactory,
    RunModel,
    _eval_cfg,
    _refuse_unusable,
    _workers,
    checkpoint_path,
    detect_corpus_type,
    embed_to_file,
    embedder,
    eval_data_config,
    eval_side,
    list_index,
    load_eval_corpus,
    load_run_model,
    read_run_config,
)
from bench.scoring import Embeddings

if TYPE_CHECKING:  # the runner's module loads torch; bench eval imports it when it scores
    from bench.runner.evaluate import TrialScores

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------------- bench eval


@dataclass
class EvalResult:
    eval_dir: Path
    metrics: MetricsRecord  # what metrics.json holds
    seconds: float
    replaced: bool = False
    notes: list[str] = field(default_factory=list)


def default_name(run_cfg: ExperimentConfig, corpus_type: str, root: str | Path) -> str:
    """``corpus_type``, or ``<type>-<folder>`` when that is the training corpus' name.

    The run's own metrics.json is recorded under the training corpus' name; a second result with
    that name and the same seed would make ``bench report`` see one system twice.
    """
    if corpus_type != run_cfg.data.corpus:
        return corpus_type
    return _slug(f"{corpus_type}-{Path(root).resolve().name}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "corpus"


def evaluate_run(
    run_dir: str | Path,
    corpus_root: str | Path,
    *,
    corpus_type: str | None = None,
    trials: str | Path | None = None,
    enroll_mode: str | None = None,
    asnorm: bool | None = None,
    label_style: str | None = None,
    name: str | None = None,
    checkpoint: str | None = None,
    crops: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    force: bool = False,
    progress: ProgressFactory | None = None,
) -> EvalResult:
    """Embed, score and record a finished run on the corpus at ``corpus_root`` (module docstring)."""
    from bench.data.layout import resolve
    from bench.runner.rundir import RunDir

    t0 = time.time()
    choice = resolve(corpus_root, corpus_type)  # DIR (detected) or KIND:DIR
    # absolute paths, so metrics.json names the same trial list from wherever the report runs
    corpus_root = choice.root.resolve()
    trials = Path(trials).resolve() if trials else None
    rd = RunDir(Path(run_dir))
    cfg = read_run_config(rd.path)
    kind = choice.kind
    train_name = cfg.data.corpus
    if name is None:
        name = default_name(cfg, kind, corpus_root)
    elif not _NAME_RE.match(name):
        raise BenchError(f"--name '{name}' must be letters, digits, '.', '_' or '-' (a folder name)")
    elif name == train_name:
        raise BenchError(
            f"--name '{name}' is the training corpus' name; bench report would mix this result with the run's "
            "own evaluation. Pick another name"
        )
    final = rd.path / EVAL_DIR / name
    status = rd.status()
    if status != "finished":
        raise BenchError(f"run is not finished (status '{status}'); bench eval scores finished runs", path=rd.path)

    with rd.lock():
        replaced = (final / METRICS_FILE).exists()
        if replaced and not force:
            raise BenchError("this run was already evaluated on this corpus; pass --force to replace it", path=final)
        rm = load_run_model(rd.path, checkpoint, device)
        corpus = load_eval_corpus(cfg, corpus_root, kind, str(trials) if trials else None)
        eval_cfg = _eval_cfg(cfg, crops=crops, enroll_mode=enroll_mode, asnorm=asnorm, label_style=label_style)
        if eval_cfg.enroll_mode == "mean" and not corpus.enroll_map:
            raise BenchError(
                f"enrolment mode 'mean' needs an enrolment map, and corpus '{kind}' has none here (CN-Celeb's "
                "eval/lists/enroll.map names utterances under data/, which an evaluation-only copy lacks); "
                "pass --enroll-mode concat",
                path=corpus_root,
            )
        if eval_cfg.asnorm and corpus.train["speaker"].nunique() < 2:
            raise BenchError(
                f"--asnorm needs a cohort of at least 2 speakers from the corpus' training side, and corpus "
                f"'{kind}' here has {len(corpus.train)} training utterances (an evaluation-only corpus has no "
                "training side); score without AS-norm or point --corpus at a folder with one",
                path=corpus_root,
            )
        scores, record, emb = _score(rm, corpus, eval_cfg, _workers(rm, workers), progress)
        record.corpus = name
        record.cross = CrossCorpus(
            eval_corpus=name,
            train_corpus=train_name,
            eval_corpus_root=str(Path(corpus_root).resolve()),
            eval_corpus_type=kind,
            train_corpus_root=cfg.data.root,
            checkpoint=rm.checkpoint_name,
        )
        record.loss, record.seed = cfg.loss.name, cfg.train.seed
        prov = _provenance(rm, corpus_root, kind, eval_cfg, time.time() - t0)
        _write_atomically(final, scores, record, emb, prov, eval_cfg.label_style)
    return EvalResult(final, record, time.time() - t0, replaced, [choice.note] if choice.note else [])


def _score(
    rm: RunModel, corpus: Corpus, eval_cfg: EvalConfig, workers: int, progress: ProgressFactory | None
) -> tuple[TrialScores, MetricsRecord, Embeddings]:
    """The runner's :func:`evaluate_corpus`, and every embedding it computed (enrolment, test, cohort)
    for ``embeddings.npz``, each utterance once."""
    from bench.runner.evaluate import evaluate_corpus

    embed = embedder(rm, eval_cfg, workers, progress)
    kept: list[Embeddings] = []
    labels = iter(["enrolment", "test", "AS-norm cohort"])

    def embed_and_keep(index: pd.DataFrame) -> Embeddings:
        emb = embed(index, f"{next(labels, 'utterances')} ({len(index)})")
        kept.append(emb)
        return emb

    scores, record = evaluate_corpus(embed_and_keep, corpus, eval_cfg)
    return scores, record, Embeddings.concat(kept)


def _provenance(rm: RunModel, root: str | Path, kind: str, eval_cfg: EvalConfig, seconds: float) -> dict[str, Any]:
    from bench.io import file_sha256, provenance

    return {
        **provenance(),
        "run_dir": str(rm.run_dir.resolve()),
        "checkpoint": {
            "name": rm.checkpoint_name,
            "path": str(rm.checkpoint.resolve()),
            "sha256": file_sha256(rm.checkpoint),
        },
        "corpus": {"type": kind, "root": str(Path(root).resolve())},
        "eval": dataclasses.asdict(eval_cfg),
        "device": str(rm.device),
        "amp": rm.amp,
        "seconds": seconds,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_atomically(
    final: Path,
    scores: TrialScores,
    record: MetricsRecord,
    emb: Embeddings,
    prov: dict[str, Any],
    label_style: str = "binary",
) -> None:
    """Write the result folder beside ``final`` and rename it into place (old one removed after)."""
    from bench.io import atomic_write_json
    from bench.runner.evaluate import write_scores
    from bench.scoring import write_embeddings

    final.parent.mkdir(parents=True, exist_ok=True)
    # dot-prefixed so that bench report never collects a half-built or superseded folder
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_scores(tmp / SCORES_FILE, scores, label_style)
        write_embeddings(tmp / EMBEDDINGS_FILE, emb.ids, emb.matrix)
        atomic_write_json(tmp / PROVENANCE_FILE, prov)
        record.write(tmp / METRICS_FILE)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            with contextlib.suppress(OSError):
                os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
