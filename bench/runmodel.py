"""A finished run's model, ready to embed any corpus, and ``bench embed``.

A run directory alone is enough: the model and frontend come from its ``config.toml`` and a
checkpoint (``best``, ``last`` or a file), and the checkpoint's own recorded config must agree with
``config.toml``, so a checkpoint copied in from another run is refused instead of silently
evaluated. Embedding is the runner's (:func:`bench.runner.evaluate.embed_utterances`), so an
embedding computed here is the one the run's own evaluation computed. ``bench eval`` builds on this
module (:mod:`bench.crosseval`, which re-exports its names).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import DataConfig, EvalConfig, ExperimentConfig
from bench.data.corpus import Corpus
from bench.errors import BenchError
from bench.results import BEST_CHECKPOINT, CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE, MetricsRecord
from bench.scoring import Embeddings

# progress(description, total) -> advance(n): one bar per embedding pass
ProgressFactory = Callable[[str, int], Callable[[int], None]]
# embed(index, what) -> Embeddings of the index's utterances, in its order
Embedder = Callable[..., Embeddings]

CHECKPOINT_CHOICES = ("best", "last")


# ------------------------------------------------------------------------------------ the run's model


@dataclass
class RunModel:
    """A trained run's model, ready to embed, and where it came from."""

    run_dir: Path
    cfg: ExperimentConfig
    checkpoint: Path
    checkpoint_name: str  # best | last | the path given
    model: Any  # torch.nn.Module in eval mode on ``device``
    device: Any  # torch.device
    amp: str = "none"


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a run recorded in its ``config.toml``; errors name the file."""
    from bench.config import read_toml
    from bench.registry import config_from_mapping

    d = Path(run_dir)
    if not d.is_dir():
        raise BenchError("run directory not found", path=d)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise BenchError(f"not a run directory: {CONFIG_FILE} is missing", path=d)
    return config_from_mapping(ExperimentConfig, read_toml(path), where=str(path))


def scored_checkpoint(run_dir: str | Path) -> str | None:
    """``best`` or ``last``: the checkpoint the run itself scored, as its ``metrics.json`` records it
    (``last`` when it finished its schedule, ``best`` under early stopping); None when unrecorded or
    the file is missing or unreadable (the caller then falls back)."""
    try:
        name = MetricsRecord.from_json(Path(run_dir) / METRICS_FILE).checkpoint
    except (BenchError, OSError):
        return None
    return name if name in CHECKPOINT_CHOICES else None


def checkpoint_path(run_dir: str | Path, which: str | None) -> tuple[Path, str]:
    """(file, label) of ``which``: ``best``, ``last``, a path, or None.

    None is the checkpoint the run scored itself (:func:`scored_checkpoint`), so a cross-corpus
    result ("synthetic -> real") is of the same weights as the run's own result; without that
    record, ``best``, else ``last`` (without validation a run may have no ``best.pt`` for long).
    An explicit ``best`` that is missing is an error.
    """
    ck = Path(run_dir) / CHECKPOINT_DIR
    if which is None:
        scored = scored_checkpoint(run_dir)
        if scored is not None and (ck / f"{scored}.pt").exists():
            return ck / f"{scored}.pt", scored
        best = ck / BEST_CHECKPOINT
        return (best, "best") if best.exists() else (ck / LAST_CHECKPOINT, "last")
    if which in CHECKPOINT_CHOICES:
        return ck / f"{which}.pt", which
    return Path(which), str(which)


def load_run_model(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> RunModel:
    """Build the run's model from its ``config.toml`` and load ``checkpoint`` into it.

    Raises:
        BenchError: missing/truncated/foreign checkpoint, or one whose recorded model config
            (backbone, parameters, frontend) differs from the run's ``config.toml`` — each naming
            the checkpoint file.
    """
    from bench.config import config_diff, to_dict, value_at
    from bench.registry import config_from_mapping
    from bench.runner.ddp import pick_device
    from bench.runner.train import load_for_eval

    d = Path(run_dir)
    cfg = read_run_config(d)
    path, label = checkpoint_path(d, checkpoint)
    dev = pick_device(device)
    # load_for_eval checks the file (missing, truncated, not a bench checkpoint) and that the weights
    # fit the model its own config describes; what it cannot see is a checkpoint from another run.
    model, ckpt_cfg = load_for_eval(path, dev)
    try:
        recorded = config_from_mapping(ExperimentConfig, ckpt_cfg, where=str(path)).model
    except BenchError as e:
        raise BenchError(f"checkpoint config is unreadable: {e.message}", path=path) from None
    if recorded != cfg.model:
        old, new = {"model": to_dict(recorded)}, {"model": to_dict(cfg.model)}
        shown = "; ".join(
            f"{k}: checkpoint {value_at(old, k)!r} vs config.toml {value_at(new, k)!r}"
            for k in config_diff(old, new)[:3]
        )
        raise BenchError(
            f"checkpoint was trained with another model than this run's config.toml ({shown}); "
            "it belongs to a different run",
            path=path,
        )
    amp = cfg.train.amp if dev.type == "cuda" else "none"
    return RunModel(d, cfg, path, label, model, dev, amp)


def embedder(rm: RunModel, eval_cfg: EvalConfig, workers: int = 0, progress: ProgressFactory | None = None) -> Embedder:
    """``embed(index, what) -> Embeddings`` with the run's model: :func:`bench.runner.evaluate.embed_utterances`."""
    from bench.runner.evaluate import embed_utterances
    from bench.runner.optim import amp_mode, autocast

    amp = amp_mode(rm.amp, rm.device)

    def embed(index: pd.DataFrame, what: str = "utterances") -> Embeddings:
        advance = progress(f"embedding {what}", len(index)) if progress else None
        return embed_utterances(
            rm.model,
            index,
            eval_cfg,
            device=rm.device,
            sample_rate=rm.cfg.data.sample_rate,
            resample=rm.cfg.data.resample,
            workers=workers,
            autocast=lambda: autocast(amp, rm.device),
            progress=advance,
        )

    return embed


# ---------------------------------------------------------------------------------------- corpora


def detect_corpus_type(root: str | Path) -> str:
    """The reader a corpus folder needs: the shared detector :func:`bench.data.layout.detect`."""
    from bench.data.layout import detect

    return detect(root).kind


def eval_data_config(
    run_cfg: ExperimentConfig, root: str | Path, corpus_type: str | None, trials: str | None
) -> DataConfig:
    """The run's audio settings (sample rate, resampling) on another corpus (``DIR`` or ``KIND:DIR``)
    and trial list."""
    from bench.data.layout import resolve

    choice = resolve(root, corpus_type)
    return dataclasses.replace(
        run_cfg.data,
        corpus=choice.kind,
        root=str(choice.root),
        eval_root="",
        trials=str(trials) if trials else "",
        train_lists=[],
        musan="",
        rirs="",
        val_speakers=0,
    )


def load_eval_corpus(
    run_cfg: ExperimentConfig, root: str | Path, corpus_type: str | None, trials: str | None
) -> Corpus:
    """The corpus at ``root`` with the run's audio settings; it must have a trial list."""
    from bench.data.corpus import load_corpus

    data_cfg = eval_data_config(run_cfg, root, corpus_type, trials)
    corpus = load_corpus(data_cfg, require_train=False)
    if corpus.trials is None or len(corpus.test) == 0:
        raise BenchError(
            f"corpus '{data_cfg.corpus}' has no evaluation trials here; pass --trials or KIND:DIR",
            path=data_cfg.root,
        )
    return corpus


def eval_side(corpus: Corpus) -> pd.DataFrame:
    """Index of every evaluation utterance (enrolment files, enrolment-map utterances, test), once each."""
    parts = [df for df in (corpus.enroll, corpus.enroll_utts, corpus.test) if df is not None and len(df)]
    if not parts:
        raise BenchError(f"corpus '{corpus.name}' has no evaluation utterances", path=corpus.root)
    # Kaldi trials may use one utterance as enrolment and test; it is embedded once.
    return pd.concat(parts, ignore_index=True).drop_duplicates("utt_id").reset_index(drop=True)


def list_index(list_file: str | Path, base: str | Path | None = None, min_seconds: float = 0.1) -> pd.DataFrame:
    """Index of the utterances named by ``list_file``: lines ``path`` or ``id path``.

    Relative paths are looked up under ``base`` (the corpus folder), its ``eval/`` folder, then the
    list's own folder; ``.wav`` names also find ``.flac`` files as in CN-Celeb lists. The id of a
    one-column line is its path without the audio extension (``test/id00800-singing-01-005``).
    """
    from bench.data.audio import audio_info
    from bench.data.corpus import find_audio
    from bench.data.trials import strip_ext
    from bench.textio import read_lines

    lf = Path(list_file)
    lines = read_lines(lf, "utterance list")
    bases = [Path(base), Path(base) / "eval"] if base else []
    bases.append(lf.parent)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        if len(tok) > 2:
            raise BenchError(f"expected 'path' or 'id path', got {len(tok)} fields", path=lf, line=n)
        rel = tok[-1]
        uid = strip_ext(tok[0]) if len(tok) == 2 else strip_ext(rel)
        if uid in seen:
            raise BenchError(f"utterance id '{uid}' listed twice (first on line {seen[uid]})", path=lf, line=n)
        seen[uid] = n
        p = Path(rel)
        found = (p if p.is_file() else find_audio(p.parent, p.name)) if p.is_absolute() else None
        for b in bases if not p.is_absolute() else []:
            found = find_audio(b, rel)
            if found:
                break
        if found is None:
            raise BenchError(f"audio file '{rel}' not found (looked in {', '.join(map(str, bases))})", path=lf, line=n)
        try:
            info = audio_info(found)
        except BenchError as e:
            raise BenchError(f"{found}: {e.message}", path=lf, line=n) from None
        rows.append(
            {
                "utt_id": uid,
                "path": str(found),
                "speaker": "",
                "genre": "",
                "duration": info.duration,
                "sample_rate": info.sample_rate,
                "line": n,
            }
        )
    if not rows:
        raise BenchError("utterance list names no utterances", path=lf)
    _refuse_unusable(rows, lf, min_seconds)
    return pd.DataFrame(rows)


def _refuse_unusable(rows: list[dict[str, Any]], lf: Path, min_seconds: float) -> None:
    """Files too short to analyse (< the run's ``data.min_seconds``) or silent give no embedding:
    one error names each of them with its list line."""
    from bench.data.audio import read_audio
    from bench.data.corpus import SILENCE_PEAK_TO_PEAK

    problems = []
    for r in rows:
        if r["duration"] < min_seconds:
            problems.append(
                f"line {r['line']}: {r['path']} ({r['duration']:.3f} s, shorter than "
                f"data.min_seconds={min_seconds:g} s)"
            )
        elif np.ptp(read_audio(r["path"], int(r["sample_rate"]), resample=True)) <= SILENCE_PEAK_TO_PEAK:
            problems.append(f"line {r['line']}: {r['path']} (silent: every sample equal)")
    for r in rows:
        del r["line"]
    if problems:
        raise BenchError(
            f"{len(problems)} audio file(s) cannot be embedded: " + "; ".join(problems),
            path=lf,
            line=int(problems[0].split(":")[0].split()[1]),
        )


# ---------------------------------------------------------------------------------------- bench embed


@dataclass
class EmbedResult:
    out: Path
    n: int
    dim: int
    checkpoint: str
    corpus: str
    device: str
    seconds: float
    note: str = ""  # how the corpus argument was resolved, when not as given


def embed_to_file(
    run_dir: str | Path,
    out: str | Path,
    *,
    corpus_root: str | Path | None = None,
    corpus_type: str | None = None,
    list_file: str | Path | None = None,
    checkpoint: str | None = None,
    crops: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    force: bool = False,
    progress: ProgressFactory | None = None,
) -> EmbedResult:
    """Embed a corpus' evaluation side (or the utterances of ``list_file``) into an ``.npz`` file.

    The file holds ``ids`` and unit-norm float32 ``embeddings`` (:func:`bench.scoring.write_embeddings`),
    the input of ``bench score --embeddings``.
    """
    from bench.embfile import embedding_format
    from bench.scoring import write_embeddings

    out = Path(out)
    embedding_format(out)  # an unknown ending is refused before the model loads
    if out.exists() and not force:
        raise BenchError("embedding file exists; pass --force to replace it", path=out)
    if corpus_root is None and list_file is None:
        raise BenchError("give --corpus, --list or both")
    t0 = time.time()
    note = ""
    if corpus_root is not None and list_file is None:
        from bench.data.layout import resolve

        choice = resolve(corpus_root, corpus_type)  # before the model loads: a wrong folder fails fast
        corpus_root, corpus_type, note = choice.root, choice.kind, choice.note
    elif corpus_root is not None:
        from bench.data.layout import split_arg

        corpus_root = split_arg(str(corpus_root))[1]
    rm = load_run_model(run_dir, checkpoint, device)
    if list_file is not None:
        index = list_index(list_file, corpus_root, rm.cfg.data.min_seconds)
        source = str(list_file)
    else:
        assert corpus_root is not None
        index = eval_side(load_eval_corpus(rm.cfg, corpus_root, corpus_type, None))
        source = str(corpus_root)
    eval_cfg = _eval_cfg(rm.cfg, crops=crops)
    emb = embedder(rm, eval_cfg, _workers(rm, workers), progress)(index, f"{len(index)} utterances")
    write_embeddings(out, emb.ids, emb.matrix)
    return EmbedResult(
        out,
        len(emb.ids),
        int(emb.matrix.shape[1]),
        rm.checkpoint_name,
        source,
        str(rm.device),
        time.time() - t0,
        note,
    )


def _eval_cfg(
    cfg: ExperimentConfig,
    *,
    crops: int | None = None,
    enroll_mode: str | None = None,
    asnorm: bool | None = None,
    label_style: str | None = None,
) -> EvalConfig:
    """The run's evaluation settings with the command-line choices applied."""
    ec = cfg.eval
    if crops is not None:
        if crops < 0:
            raise BenchError(f"--crops must be >= 0 (0 = full utterance), got {crops}")
        ec = dataclasses.replace(ec, crops=crops)
    if enroll_mode is not None:
        ec = dataclasses.replace(ec, enroll_mode=enroll_mode)
    if asnorm is not None:
        ec = dataclasses.replace(ec, asnorm=asnorm)
    if label_style is not None:
        ec = dataclasses.replace(ec, label_style=label_style)
    ec.validate()
    return ec


def _workers(rm: RunModel, workers: int | None) -> int:
    # decoding workers pay off only when a GPU waits for audio; on CPU they compete with the model
    if workers is not None:
        return max(0, workers)
    return rm.cfg.data.workers if rm.device.type == "cuda" else 0
