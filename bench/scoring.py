"""Cosine scoring, adaptive S-norm, and the embedding / score file formats.

Formats:

* Embedding files (:mod:`bench.embfile`): ``.npz`` (``ids`` + float32 ``embeddings [N, D]``),
  ``.npy`` + ``.ids.txt``, Kaldi ``.ark`` / ``.scp``; re-exported here.
* Score files (:mod:`bench.scorefile`): ``enroll test score [label]`` and the other toolkits'
  column orders, detected; re-exported here.

Trial and utterance ids are compared without an audio extension (``.wav``, ``.flac``, ...), as
in the trial reader, so ``test/a.wav`` in a score file matches ``test/a`` in a trial list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.data.trials import Trials, strip_ext
from bench.embfile import EMBEDDING_FORMATS, read_embeddings, write_embeddings  # noqa: F401
from bench.errors import BenchError

# score files live in bench.scorefile; re-exported because callers have always found them here
from bench.scorefile import (  # noqa: F401
    LABEL_STYLES,
    LAYOUTS,
    ScoreColumns,
    ScoreFile,
    _parse_fast,
    _parse_lines,
    _trial_ids,
    check_label_style,
    key_index,
    read_score_columns,
    read_scores,
    write_scores,
)

# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


@dataclass
class Embeddings:
    """One embedding per utterance (or enrolment model): ``matrix[i]`` is the embedding of ``ids[i]``.

    Shapes: ``ids`` ``[N]`` (unique utterance ids, without audio extension), ``matrix`` float32
    ``[N, D]`` (unit norm when produced by :func:`bench.runner.evaluate.embed_utterances`, the one
    embedder), ``norms`` float64 ``[N]`` or None: each embedding's norm before length
    normalisation (a quality measure for calibration, ``bench.calibration``). Every scoring and
    normalisation function of this module takes it as is.
    """

    ids: list[str]
    matrix: np.ndarray  # float32 [N, D]
    norms: np.ndarray | None = field(default=None, repr=False)  # float64 [N]
    _pos: dict[str, int] = field(init=False, repr=False, compare=False)
    _stripped: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.ids):
            raise ValueError(f"embeddings: {len(self.ids)} ids but a matrix of shape {self.matrix.shape}")
        self._pos = {u: i for i, u in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt: object) -> bool:
        return utt in self._pos

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def rows(self, ids: Sequence[str], what: str, path: str | None = None) -> np.ndarray:
        """Row indices int64 ``[len(ids)]`` of ``ids``; an unknown id is a BenchError naming ``path``."""
        out = np.empty(len(ids), dtype=np.int64)
        for i, u in enumerate(ids):
            j = self._pos.get(u)
            if j is None:
                raise BenchError(f"{what} '{u}' is not in the corpus index", path=path, line=None)
            out[i] = j
        return out

    def lookup(self) -> dict[str, int]:
        """id without audio extension -> row (as the trial reader strips them), built once."""
        if self._stripped is None:
            self._stripped = {strip_ext(str(u)): r for r, u in enumerate(self.ids)}
        return self._stripped

    @classmethod
    def concat(cls, parts: Iterable[Embeddings]) -> Embeddings:
        """All ``parts`` in order, an id seen before (e.g. an utterance both enrolment and test) kept once
        with its first embedding."""
        ids: list[str] = []
        rows: list[np.ndarray] = []
        seen: set[str] = set()
        dim = 0
        for part in parts:
            dim = dim or (part.dim if len(part) else 0)
            for i, u in enumerate(part.ids):
                if u not in seen:
                    seen.add(u)
                    ids.append(u)
                    rows.append(part.matrix[i])
        return cls(ids, np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32))


# what the scoring functions accept: Embeddings, or (for files and tests) a mapping id -> vector [D]
# or an ``(ids, matrix [N, D])`` pair
EmbeddingsLike = Embeddings | Mapping[str, npt.ArrayLike] | tuple[Iterable[Any], npt.ArrayLike]
# trials: the trial reader's Trials (its path and source lines name the line of an unknown id) or a
# pair of id lists ``(enroll, test)``
TrialsLike = Trials | tuple[Sequence[str], Sequence[str]]


def _as_lookup(emb: EmbeddingsLike) -> tuple[dict[str, int], np.ndarray]:
    """(id -> row, matrix) from :class:`Embeddings`, a mapping id -> vector or an ``(ids, matrix)`` pair."""
    if isinstance(emb, Embeddings):
        return emb.lookup(), np.asarray(emb.matrix, dtype=np.float32)
    if isinstance(emb, Mapping):
        ids: list[Any] = list(emb)
        mat = np.stack([np.asarray(emb[i], dtype=np.float32) for i in ids]) if ids else np.zeros((0, 0), np.float32)
    else:
        id_seq, rows = emb
        ids = list(id_seq)
        mat = np.asarray(rows, dtype=np.float32)
    return {strip_ext(str(i)): r for r, i in enumerate(ids)}, mat


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def read_enroll_map(path: str | Path) -> dict[str, list[str]]:
    """Enrolment map: lines ``model_id utt_id [utt_id ...]`` (ids without extensions)."""
    from bench.textio import read_lines

    path = Path(path)
    out: dict[str, list[str]] = {}
    lines = read_lines(path, "enrolment map")
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 2:
            raise BenchError("expected 'model_id utt_id [utt_id ...]'", path, n)
        model = strip_ext(parts[0])
        if model in out:
            raise BenchError(f"model {model!r} listed twice", path, n)
        out[model] = [strip_ext(u) for u in parts[1:]]
    return out


def mean_enroll(
    embeddings: EmbeddingsLike, enroll_map: Mapping[str, Sequence[str]], path: str | Path | None = None
) -> tuple[list[str], np.ndarray]:
    """Model embeddings as the mean of their L2-normalised utterance embeddings."""
    index, mat = _as_lookup(embeddings)
    mat = l2_normalise(mat)
    ids, rows = [], []
    for model, utts in enroll_map.items():
        missing = [u for u in utts if u not in index]
        if missing:
            raise BenchError(f"enrolment utterance {missing[0]!r} of model {model!r} has no embedding", path)
        ids.append(model)
        rows.append(mat[[index[u] for u in utts]].mean(axis=0))
    return ids, np.stack(rows) if rows else np.zeros((0, mat.shape[1]), np.float32)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def trial_line(trials: TrialsLike, i: int) -> int:
    """1-based line of trial ``i``: from ``trials.lines`` when the reader kept them."""
    lines = getattr(trials, "lines", None)
    return int(lines[i]) if lines is not None and len(lines) > i else i + 1


def _rows(ids: list[str], index: dict[str, int], trials: TrialsLike, what: str) -> np.ndarray:
    out = np.empty(len(ids), dtype=np.int64)
    for i, u in enumerate(ids):
        r = index.get(u)
        if r is None:
            r = index.get(strip_ext(u))
            if r is None:
                raise BenchError(
                    f"{what} id {u!r} has no embedding", getattr(trials, "path", None), trial_line(trials, i)
                )
        out[i] = r
    return out


def cosine_score(
    enroll_emb: EmbeddingsLike,
    test_emb: EmbeddingsLike,
    trials: TrialsLike,
    max_block: int = 1 << 22,
    *,
    enroll_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Cosine similarity of each trial's enrolment and test embeddings, float64 ``[n_trials]``.

    ``enroll_emb``/``test_emb``: :class:`Embeddings` (or a mapping id -> vector, or ``(ids,
    matrix)``); ``trials``: :class:`bench.data.trials.Trials` (an unknown id is a BenchError naming
    its file and line) or a pair of id lists. ``enroll_ids``: the trials' enrolment ids as they are
    named in ``enroll_emb`` when they differ from ``trials.enroll`` (CN-Celeb's ``enroll/`` prefix,
    :func:`bench.runner.evaluate.resolve_enroll_ids`), one per trial.
    Embeddings are L2-normalised, then scored in blocks of at most ``max_block`` floats: when the
    trials cover a good share of all enrol x test pairs (e.g. CN-Celeb: every pair) as matrix
    products of enrolment blocks against all test embeddings, otherwise as row-wise dot products
    of gathered pairs.  Peak extra memory is O(max_block) beyond the index arrays.
    """
    e_index, e_mat = _as_lookup(enroll_emb)
    t_index, t_mat = _as_lookup(test_emb)
    enroll, test = _trial_ids(trials)
    if enroll_ids is not None:
        enroll = list(enroll_ids)
    ei = _rows(enroll, e_index, trials, "enrolment")
    ti = _rows(test, t_index, trials, "test")
    e_mat, t_mat = l2_normalise(e_mat), l2_normalise(t_mat)
    out = np.empty(ei.size, dtype=np.float64)
    if ei.size == 0:
        return out
    ue, ce = np.unique(ei, return_inverse=True)
    ut, ct = np.unique(ti, return_inverse=True)
    if ue.size * ut.size <= 4 * ei.size:
        t_sub = t_mat[ut]
        order = np.argsort(ce, kind="stable")
        starts = np.searchsorted(ce[order], np.arange(ue.size + 1))
        rows_per = max(1, max_block // max(ut.size, 1))
        for r0 in range(0, ue.size, rows_per):
            r1 = min(r0 + rows_per, ue.size)
            block = e_mat[ue[r0:r1]] @ t_sub.T
            sel = order[starts[r0] : starts[r1]]
            out[sel] = block[ce[sel] - r0, ct[sel]]
        return out
    step = max(1, max_block // max(e_mat.shape[1], 1))
    for s0 in range(0, ei.size, step):
        a = e_mat[ei[s0 : s0 + step]]
        b = t_mat[ti[s0 : s0 + step]]
        out[s0 : s0 + step] = np.einsum("ij,ij->i", a, b)
    return out


def score_settings(eval_cfg: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The evaluation settings that change scores, as recorded in ``metrics.json["eval_settings"]``.

    ``eval_cfg`` is an :class:`~bench.config.EvalConfig` or its dict. Settings that are inactive
    (crop length without crops, AS-norm sizes without AS-norm) are None, so two runs compare equal
    exactly when their scores were computed the same way; ``bench report`` refuses to pool runs
    whose settings differ.
    """
    e = eval_cfg if isinstance(eval_cfg, Mapping) else dataclasses.asdict(eval_cfg)
    crops = int(e.get("crops", 0) or 0)
    asn = bool(e.get("asnorm", False))
    return {
        "enroll_mode": str(e.get("enroll_mode", "concat")),
        "crops": crops,
        "crop_seconds": float(e["crop_seconds"]) if crops > 0 and "crop_seconds" in e else None,
        "max_seconds": float(e.get("max_seconds", 0.0) or 0.0),
        "score_norm": "asnorm" if asn else "none",
        "asnorm_top": int(e["asnorm_top"]) if asn and "asnorm_top" in e else None,
        "cohort_size": int(e["cohort_size"]) if asn and "cohort_size" in e else None,
    }


# a cohort whose top-k cosine scores spread less than this has duplicate members (or one member)
MIN_COHORT_SPREAD = 1e-6


def _cohort_stats(mat: np.ndarray, cohort: np.ndarray, top_k: int, max_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row's ``top_k`` highest cosine scores against the cohort."""
    mu = np.empty(mat.shape[0])
    sd = np.empty(mat.shape[0])
    step = max(1, max_block // max(cohort.shape[0], 1))
    for s0 in range(0, mat.shape[0], step):
        sc = mat[s0 : s0 + step] @ cohort.T
        if top_k < cohort.shape[0]:
            sc = np.partition(sc, sc.shape[1] - top_k, axis=1)[:, -top_k:]
        mu[s0 : s0 + step] = sc.mean(axis=1)
        sd[s0 : s0 + step] = sc.std(axis=1)
    return mu, sd


def asnorm(
    scores: npt.ArrayLike,
    enroll_ids: Sequence[str],
    test_ids: Sequence[str],
    embeddings: EmbeddingsLike,
    cohort: npt.ArrayLike,
    top_k: int = 300,
    test_embeddings: EmbeddingsLike | None = None,
    max_block: int = 1 << 22,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm).

    For each trial ``(e, t)`` with raw score ``s``:
    ``0.5 ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``, where ``mu_x``/``sd_x`` are the mean and
    (population) standard deviation of the ``top_k`` highest cosine scores of ``x`` against the
    cohort embeddings ``cohort [C, D]`` (``top_k >= C`` uses the whole cohort: plain S-norm).
    ``embeddings`` (:class:`Embeddings`, a mapping or ``(ids, matrix)``) looks up enrolment ids, and test ids too unless
    ``test_embeddings`` is given.  Statistics are computed once per distinct id.
    """
    s = np.asarray(scores, dtype=np.float64)
    if top_k < 2:
        # one cohort score has no spread: the normalised score would be a division by zero
        raise BenchError(f"eval.asnorm_top must be >= 2 (AS-norm top-k), got {top_k}")
    cohort = l2_normalise(np.asarray(cohort, dtype=np.float32))
    if cohort.ndim != 2 or cohort.shape[0] < 2:
        raise BenchError("AS-norm needs a cohort of at least 2 embeddings")
    top_k = min(top_k, cohort.shape[0])
    out = np.zeros_like(s)
    for ids, emb in (
        (enroll_ids, embeddings),
        (test_ids, test_embeddings if test_embeddings is not None else embeddings),
    ):
        index, mat = _as_lookup(emb)
        rows = _rows(list(ids), index, (list(ids), list(ids)), "trial")
        uniq, inv = np.unique(rows, return_inverse=True)
        mu, sd = _cohort_stats(l2_normalise(mat[uniq]), cohort, top_k, max_block)
        flat = np.flatnonzero(sd < MIN_COHORT_SPREAD)
        if len(flat):
            who = [str(ids[int(np.flatnonzero(inv == flat[0])[0])])]
            raise BenchError(
                f"AS-norm: the top-{top_k} cohort scores of '{who[0]}' (and {len(flat) - 1} more) have "
                "no spread (identical cohort embeddings?); the normalised scores would be meaningless"
            )
        out += (s - mu[inv]) / sd[inv]
    return 0.5 * out
