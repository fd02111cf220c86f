"""Embedding extraction, cosine scoring (+ optional AS-norm) and metrics, overall and per genre.

Used by the runner after training (evaluation trials), every epoch (validation EER on held-out
training speakers) and by ``bench embed`` / ``bench eval``. Utterances are embedded either at
full length (batched with utterances of similar duration so padding stays small, valid lengths
passed to the model) or as the mean of N evenly spaced fixed-length crops. Embeddings are
L2-normalised, so cosine scoring is a dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.config import EvalConfig
from bench.data.corpus import Corpus
from bench.data.trials import Trials
from bench.errors import BenchError
from bench.io import file_sha256  # noqa: F401  (re-exported: callers have found it here)
from bench.results import MetricsRecord, Scoring, TrialsRef
from bench.scoring import Embeddings  # the one embeddings type; re-exported for the runner's callers

Progress = Callable[[int], None]  # called with the number of utterances just embedded


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class _UttDataset(torch.utils.data.Dataset):
    """Decodes one utterance: full wave ``[T]`` or ``crops`` evenly spaced crops ``[N, L]``."""

    def __init__(self, paths: list[str], sample_rate: int, resample: bool, crops: int, crop_len: int, max_len: int):
        self.paths, self.sr, self.resample = paths, sample_rate, resample
        self.crops, self.crop_len, self.max_len = crops, crop_len, max_len

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        from bench.data.cache import cached_read

        frames = self.max_len if self.max_len > 0 else -1
        wave = cached_read(self.paths[i], self.sr, self.resample, frames=frames)
        if self.crops <= 0:
            return i, wave
        n = len(wave)
        if n < self.crop_len:  # repeat-pad short utterances to one crop length
            wave = np.tile(wave, -(-self.crop_len // n))[: self.crop_len]
            n = self.crop_len
        starts = np.linspace(0, n - self.crop_len, self.crops).astype(np.int64)
        return i, np.stack([wave[s : s + self.crop_len] for s in starts])


def _collate(items: list[tuple[int, np.ndarray]]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Zero-pad to the longest item; returns (positions, waves [b, T] or [b, N, L], lengths [b])."""
    idx = [i for i, _ in items]
    lengths = torch.tensor([w.shape[-1] for _, w in items], dtype=torch.int64)
    shape = items[0][1].shape[:-1]
    out = torch.zeros(len(items), *shape, int(lengths.max()))
    for k, (_, w) in enumerate(items):
        out[k, ..., : w.shape[-1]] = torch.from_numpy(w)
    return idx, out, lengths


def length_batches(durations: Sequence[float], batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of similar duration (longest first, stable for ties)."""
    order = sorted(range(len(durations)), key=lambda i: (-float(durations[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def embed_utterances(
    model: torch.nn.Module,
    index: pd.DataFrame,
    eval_cfg: EvalConfig,
    *,
    device: torch.device,
    sample_rate: int = 16000,
    resample: bool = True,
    workers: int = 0,
    autocast: Callable[[], Any] | None = None,
    progress: Progress | None = None,
) -> Embeddings:
    """Embed every row of ``index`` (DataFrame with ``utt_id, path`` and ``duration``).

    Returns :class:`~bench.scoring.Embeddings`: ``ids`` = ``index["utt_id"]`` in order, unit-norm
    float32 ``matrix [N, D]`` and the norms ``[N]`` before normalisation. The model is put in eval mode for
    the call and its previous mode restored.
    """
    ids = [str(u) for u in index["utt_id"]]
    if not ids:
        return Embeddings([], np.zeros((0, 0), np.float32))
    paths = [str(p) for p in index["path"]]
    durations = list(index["duration"]) if "duration" in index else [0.0] * len(ids)
    crop_len = int(round(eval_cfg.crop_seconds * sample_rate))
    max_len = int(round(eval_cfg.max_seconds * sample_rate)) if eval_cfg.max_seconds > 0 else 0
    ds = _UttDataset(paths, sample_rate, resample, eval_cfg.crops, crop_len, max_len)
    batches = length_batches(durations, max(1, eval_cfg.batch_size))
    import functools
    import os

    init = functools.partial(_decode_worker_init, os.getpid()) if workers > 0 else None
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=batches, collate_fn=_collate, num_workers=workers, worker_init_fn=init
    )
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    try:
        for pos, waves, lengths in loader:
            with autocast() if autocast else _null():
                if eval_cfg.crops > 0:
                    b, n, ln = waves.shape
                    emb = model(waves.reshape(b * n, ln).to(device), None).float()
                    emb = torch.nn.functional.normalize(emb, dim=1).reshape(b, n, -1).mean(1)
                else:
                    full = bool((lengths == lengths.max()).all())
                    emb = model(waves.to(device), None if full else lengths.to(device)).float()
            emb_np = emb.cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), emb_np.shape[1]), np.float32)
            out[pos] = emb_np
            if progress:
                progress(len(pos))
    finally:
        model.train(was_training)
    assert out is not None
    return Embeddings(ids, _normalise(out), norms=np.linalg.norm(out, axis=1).astype(np.float64))


def _decode_worker_init(parent_pid: int, _: int) -> None:
    from bench.procs import die_with_parent

    die_with_parent(parent_pid)  # no decoding worker outlives the process that embeds


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def mean_embeddings(emb: Embeddings, groups: dict[str, list[str]], what: str) -> Embeddings:
    """One embedding per group: the mean of its members' unit-norm embeddings (``bench.scoring.mean_enroll``)."""
    from bench.scoring import mean_enroll

    ids, mat = mean_enroll(emb, groups)
    norms = None
    if emb.norms is not None:  # a model's norm: the mean of its utterances' norms
        norms = np.array([emb.norms[emb.rows(groups[g], what)].mean() for g in ids], dtype=np.float64)
    return Embeddings(list(ids), _normalise(mat) if len(ids) else mat, norms=norms)


def trials_sha256(trials: Trials) -> str | None:
    """The trial list's digest as its reader recorded it (a subset with bad files left out keeps the
    digest of the file it came from); for trials built in memory with a path but no digest, that
    file's digest; else None."""
    if trials.sha256:
        return trials.sha256
    return file_sha256(trials.path) if trials.path and Path(trials.path).is_file() else None


@dataclass
class TrialScores:
    """Scores of a trial list, with the test genre of each trial for per-genre metrics."""

    enroll: list[str]
    test: list[str]
    scores: np.ndarray  # float64 [N]
    labels: np.ndarray  # bool [N]
    genres: list[str] | None = None
    side: dict[str, np.ndarray] | None = None  # per-trial durations/norms for quality-aware calibration


def resolve_enroll_ids(trial_ids: Sequence[str], known: Embeddings) -> list[str]:
    """Map trial enrolment ids onto embedded ids: exact, or with an ``enroll/`` prefix as in CN-Celeb lists."""
    return [f"enroll/{u}" if u not in known and f"enroll/{u}" in known else u for u in trial_ids]


def score_trials(
    enroll: Embeddings,
    test: Embeddings,
    trials: Trials,
    *,
    cohort: np.ndarray | None = None,
    asnorm_top: int = 100,
    genre_of: dict[str, str] | None = None,
) -> TrialScores:
    """Cosine scores of ``trials`` (``bench.data.trials.Trials``), AS-normalised when a cohort is given.

    Scoring itself is :mod:`bench.scoring`'s (one implementation for training, ``bench score`` and
    ``bench eval``); unknown trial ids are errors naming the trial file and line.
    """
    from bench.scoring import asnorm, cosine_score

    e_ids = resolve_enroll_ids(trials.enroll, enroll)
    s = cosine_score(enroll, test, trials, enroll_ids=e_ids)
    if cohort is not None:
        s = asnorm(s, e_ids, list(trials.test), enroll, cohort, top_k=asnorm_top, test_embeddings=test)
    # per-genre metrics only where the corpus has genres (CN-Celeb); Kaldi/VoxCeleb ids carry none
    genres = [genre_of.get(t, "") for t in trials.test] if genre_of and any(genre_of.values()) else None
    return TrialScores(
        list(trials.enroll), list(trials.test), np.asarray(s, np.float64), np.asarray(trials.labels, bool), genres
    )


def metrics_of(ts: TrialScores, p_targets: Sequence[float]) -> dict[str, Any]:
    """``{"overall": {...}, "per_genre": {genre: {...}}}`` from :func:`bench.metrics.compute_metrics`.

    A genre whose trials are all targets or all non-targets has no EER; it is listed with its counts
    and ``eer = None``.
    """
    from bench.metrics import compute_metrics

    out: dict[str, Any] = {"overall": _clean(compute_metrics(ts.scores, ts.labels, p_targets=tuple(p_targets)))}
    per: dict[str, Any] = {}
    if ts.genres is not None:
        g = np.asarray(ts.genres)
        for genre in sorted(set(ts.genres)):
            m = g == genre
            lab = ts.labels[m]
            if lab.all() or not lab.any():
                per[genre] = {"eer": None, "n_target": int(lab.sum()), "n_nontarget": int((~lab).sum())}
            else:
                per[genre] = _clean(compute_metrics(ts.scores[m], lab, p_targets=tuple(p_targets)))
    out["per_genre"] = per
    return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Numpy scalars -> python numbers, so metrics.json stays plain JSON."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def write_scores(path: str | Path, ts: TrialScores, label_style: str = "binary") -> None:
    """``enroll test score label`` per trial, atomically (``bench.scoring.write_scores``); labels
    ``1``/``0`` or, with ``label_style="target"``, ``target``/``nontarget``."""
    from bench.scoring import write_scores as _write

    _write(path, (ts.enroll, ts.test), ts.scores, ts.labels, label_style=label_style)


def cohort_embeddings(
    embed: Callable[[pd.DataFrame], Embeddings], train_index: pd.DataFrame, cohort_size: int, utts_per_speaker: int = 3
) -> np.ndarray:
    """Unit-norm mean embeddings ``[C, D]`` of up to ``cohort_size`` training speakers (AS-norm cohort).

    Speakers are taken evenly over the sorted speaker list and their first utterances (sorted by id),
    so the cohort is deterministic.
    """
    speakers = sorted(set(train_index["speaker"]))
    if cohort_size < len(speakers):
        pick = np.linspace(0, len(speakers) - 1, cohort_size).round().astype(int)
        speakers = [speakers[i] for i in sorted(set(pick.tolist()))]
    sub = train_index[train_index["speaker"].isin(speakers)].sort_values("utt_id")
    sub = sub.groupby("speaker", sort=True).head(utts_per_speaker)
    emb = embed(sub)
    groups = {spk: [str(u) for u in grp["utt_id"]] for spk, grp in sub.groupby("speaker", sort=True)}
    return mean_embeddings(emb, groups, "cohort").matrix


def evaluate_corpus(
    embed: Callable[[pd.DataFrame], Embeddings], corpus: Corpus, eval_cfg: EvalConfig
) -> tuple[TrialScores, MetricsRecord]:
    """Embed enrolment + test utterances of ``corpus``, score its trials and compute metrics.

    ``embed(index) -> Embeddings`` is :func:`embed_utterances` bound to a model. ``enroll_mode``
    ``concat`` uses the corpus' enrolment files; ``mean`` averages the per-utterance embeddings
    listed in ``corpus.enroll_map``. Returns the scores and the :class:`~bench.results.MetricsRecord`
    of ``metrics.json`` (metrics, trial list, scoring settings; the caller adds its own groups).

    Raises:
        BenchError: a corpus without evaluation trials, or ``mean`` enrolment without a map.
    """
    from bench.scoring import score_settings

    trials = corpus.trials
    if trials is None:
        raise BenchError(f"corpus '{corpus.name}' has no evaluation trials", path=corpus.root)
    if eval_cfg.enroll_mode == "mean":
        if not corpus.enroll_map:
            raise BenchError(f"eval.enroll_mode=mean but corpus '{corpus.name}' has no enrolment map")
        enroll = mean_embeddings(embed(corpus.enroll_utts), corpus.enroll_map, "enrolment")
    else:
        enroll = embed(corpus.enroll)
    test = embed(corpus.test)
    cohort = cohort_embeddings(embed, corpus.train, eval_cfg.cohort_size) if eval_cfg.asnorm else None
    genre_of = dict(zip((str(u) for u in corpus.test["utt_id"]), (str(g) for g in corpus.test["genre"])))
    ts = score_trials(enroll, test, trials, cohort=cohort, asnorm_top=eval_cfg.asnorm_top, genre_of=genre_of)
    if eval_cfg.calibration.method == "qmf":  # quality measures of each trial for the calibration
        ts.side = trial_side(enroll, test, trials, eval_durations(corpus, eval_cfg), eval_cfg.max_seconds)
    metrics = metrics_of(ts, eval_cfg.p_targets)
    record = MetricsRecord(
        overall=metrics["overall"],
        per_genre=metrics["per_genre"],
        trials=TrialsRef(path=str(trials.path), sha256=trials_sha256(trials), n=len(ts.scores)),
        corpus=corpus.name,
        enroll_mode=eval_cfg.enroll_mode,
        scoring=Scoring(
            asnorm=bool(eval_cfg.asnorm),
            crops=eval_cfg.crops,
            # every setting that changes the scores; bench report pools only runs that agree on them
            eval_settings=score_settings(eval_cfg),
            cohort_speakers=int(cohort.shape[0]) if cohort is not None else None,
        ),
    )
    return ts, record


def validation_metrics(
    embed: Callable[[pd.DataFrame], Embeddings], corpus: Corpus, p_targets: Sequence[float]
) -> dict[str, float] | None:
    """``{"eer": percent, "mindcf": minDCF at p_targets[0]}`` on the validation trials of held-out
    training speakers; None when there are none.

    minDCF is the normalised minimum detection cost of NIST SRE (C_miss = C_fa = 1, target prior
    ``p_targets[0]``), as in the evaluation's ``metrics.json``.
    """
    val, trials = corpus.val, corpus.val_trials
    if val is None or trials is None or len(val) == 0 or len(trials) == 0:
        return None
    emb = embed(val)
    ts = score_trials(emb, emb, trials)
    p = float(p_targets[0]) if len(p_targets) else 0.01
    overall = metrics_of(ts, [p])["overall"]
    return {"eer": float(overall["eer"]), "mindcf": float(overall[f"mindcf@{p:g}"])}


# ---------------------------------------------------------------- side information for calibration
def _durations(index: pd.DataFrame | None) -> dict[str, float]:
    if index is None or len(index) == 0 or "duration" not in index:
        return {}
    return dict(zip((str(u) for u in index["utt_id"]), (float(d) for d in index["duration"])))


def eval_durations(corpus: Corpus, eval_cfg: EvalConfig) -> dict[str, float]:
    """Seconds of audio per enrolment model and test utterance of the evaluation trials.

    ``concat`` enrolment: the enrolment file's duration; ``mean``: the sum over the model's
    utterances in ``corpus.enroll_map``.
    """
    out = _durations(corpus.test)
    if eval_cfg.enroll_mode == "mean":
        extra = _durations(corpus.enroll_utts)
        for model, utts in corpus.enroll_map.items():
            out[model] = float(sum(extra.get(u, 0.0) for u in utts))
    else:
        out.update(_durations(corpus.enroll))
    return out


def trial_side(
    enroll: Embeddings, test: Embeddings, trials: Trials, durations: Mapping[str, float], max_seconds: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-trial side information (``bench.calibration.SIDE_KEYS``): seconds of audio (capped at
    ``max_seconds`` when > 0, as embedded) and embedding norms of each trial's two sides.

    Keys without data (an index without durations, embeddings without norms) are left out.
    """
    e_ids = resolve_enroll_ids(trials.enroll, enroll)
    t_ids = [str(u) for u in trials.test]
    path = trials.path or None
    out: dict[str, np.ndarray] = {}
    if durations:
        for key, ids in (("dur_enroll", e_ids), ("dur_test", t_ids)):
            d = np.array([durations.get(u, np.nan) for u in ids], dtype=np.float64)
            if max_seconds > 0:
                d = np.minimum(d, max_seconds)
            if not np.isnan(d).any():
                out[key] = d
    for key, emb, ids, what in (("norm_enroll", enroll, e_ids, "enrolment id"), ("norm_test", test, t_ids, "test id")):
        if emb.norms is not None:
            out[key] = emb.norms[emb.rows(ids, what, str(path) if path else None)]
    return out
