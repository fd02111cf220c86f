"""Cosine scoring, adaptive S-norm, and the embedding / score file formats.

Formats:

* Embedding file: ``.npz`` with ``ids`` (unicode string array, unique) and ``embeddings``
  (float32 ``[N, D]``, finite).  Read without pickle.
* Score file: one trial per line, whitespace separated, ``enroll test score [label]``; label is
  ``1``/``0`` (also read: ``target``/``nontarget``, ``true``/``false``).  Blank lines and lines
  starting with ``#`` are skipped.  Scores are written with ``repr`` so they read back exactly.

Trial and utterance ids are compared without an audio extension (``.wav``, ``.flac``, ...), as
in the trial reader, so ``test/a.wav`` in a score file matches ``test/a`` in a trial list.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.trials import strip_ext
from bench.errors import BenchError
from bench.io import atomic_open, atomic_save

_LABELS = {"1": True, "0": False, "target": True, "nontarget": False, "true": True, "false": False}


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def write_embeddings(path: str | Path, ids: Sequence[str], matrix: np.ndarray) -> None:
    """Write ids and a float32 ``[N, D]`` matrix to ``path`` (npz) atomically."""
    ids_arr = np.asarray([str(i) for i in ids], dtype=np.str_)
    mat = np.asarray(matrix, dtype=np.float32)
    if mat.ndim != 2 or mat.shape[0] != ids_arr.size:
        raise ValueError(f"need embeddings [N, D] for {ids_arr.size} ids, got shape {mat.shape}")
    atomic_save(path, lambda fh: np.savez(fh, ids=ids_arr, embeddings=mat))


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Ids (extensions stripped) and the float32 ``[N, D]`` matrix of an embedding file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or "embeddings" not in z:
                raise BenchError(f"embedding file needs arrays 'ids' and 'embeddings', has {sorted(z.files)}", path)
            ids = [strip_ext(str(i)) for i in z["ids"]]
            mat = np.asarray(z["embeddings"], dtype=np.float32)
    except BenchError:
        raise
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read embedding file: {e}", path) from e
    if mat.ndim != 2 or mat.shape[0] != len(ids):
        raise BenchError(f"'embeddings' has shape {mat.shape} for {len(ids)} ids", path)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise BenchError(f"duplicate id {dup!r}", path)
    bad = ~np.isfinite(mat).all(axis=1)
    if bad.any():
        raise BenchError(f"{int(bad.sum())} embedding(s) are not finite, first {ids[int(np.argmax(bad))]!r}", path)
    return ids, mat


def _as_lookup(emb) -> tuple[dict[str, int], np.ndarray]:
    """(id -> row, matrix) from a mapping id -> vector or an ``(ids, matrix)`` pair."""
    if isinstance(emb, Mapping):
        ids = list(emb)
        mat = np.stack([np.asarray(emb[i], dtype=np.float32) for i in ids]) if ids else np.zeros((0, 0), np.float32)
    else:
        ids, mat = emb
        ids = list(ids)
        mat = np.asarray(mat, dtype=np.float32)
    return {strip_ext(str(i)): r for r, i in enumerate(ids)}, mat


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def read_enroll_map(path: str | Path) -> dict[str, list[str]]:
    """Enrolment map: lines ``model_id utt_id [utt_id ...]`` (ids without extensions)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise BenchError(f"cannot read enrolment map: {e.strerror}", path) from e
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


def mean_enroll(embeddings, enroll_map: Mapping[str, Sequence[str]], path=None) -> tuple[list[str], np.ndarray]:
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


def _trial_ids(trials) -> tuple[list[str], list[str]]:
    if hasattr(trials, "enroll") and hasattr(trials, "test"):
        return list(trials.enroll), list(trials.test)
    enroll, test = trials
    return list(enroll), list(test)


def trial_line(trials, i: int) -> int:
    """1-based line of trial ``i``: from ``trials.lines`` when the reader kept them."""
    lines = getattr(trials, "lines", None)
    return int(lines[i]) if lines is not None and len(lines) > i else i + 1


def _rows(ids: list[str], index: dict[str, int], trials, what: str) -> np.ndarray:
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


def cosine_score(enroll_emb, test_emb, trials, max_block: int = 1 << 22) -> np.ndarray:
    """Cosine similarity of each trial's enrolment and test embeddings, float64 ``[n_trials]``.

    ``enroll_emb``/``test_emb``: mapping id -> vector or ``(ids, matrix)``; ``trials``: an object
    with ``enroll``/``test`` id lists (e.g. :class:`bench.data.trials.Trials`) or a pair of lists.
    Embeddings are L2-normalised, then scored in blocks of at most ``max_block`` floats: when the
    trials cover a good share of all enrol x test pairs (e.g. CN-Celeb: every pair) as matrix
    products of enrolment blocks against all test embeddings, otherwise as row-wise dot products
    of gathered pairs.  Peak extra memory is O(max_block) beyond the index arrays.
    """
    e_index, e_mat = _as_lookup(enroll_emb)
    t_index, t_mat = _as_lookup(test_emb)
    enroll, test = _trial_ids(trials)
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
    scores,
    enroll_ids: Sequence[str],
    test_ids: Sequence[str],
    embeddings,
    cohort: np.ndarray,
    top_k: int = 300,
    test_embeddings=None,
    max_block: int = 1 << 22,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm).

    For each trial ``(e, t)`` with raw score ``s``:
    ``0.5 ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``, where ``mu_x``/``sd_x`` are the mean and
    (population) standard deviation of the ``top_k`` highest cosine scores of ``x`` against the
    cohort embeddings ``cohort [C, D]`` (``top_k >= C`` uses the whole cohort: plain S-norm).
    ``embeddings`` (mapping or ``(ids, matrix)``) looks up enrolment ids, and test ids too unless
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
            raise BenchError(f"AS-norm: the top-{top_k} cohort scores of '{who[0]}' (and {len(flat) - 1} more) have "
                             "no spread (identical cohort embeddings?); the normalised scores would be meaningless")
        out += (s - mu[inv]) / sd[inv]
    return 0.5 * out


# --------------------------------------------------------------------------------------------
# Score files
# --------------------------------------------------------------------------------------------


@dataclass
class ScoreFile:
    """A parsed score file; ``labels`` is None when the lines had no label column."""

    enroll: list[str]
    test: list[str]
    scores: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray
    path: Path


def write_scores(path: str | Path, trials, scores, labels=None) -> None:
    """Write ``enroll test score label`` lines atomically; labels from ``trials.labels`` unless
    given (omitted when neither has them)."""
    enroll, test = _trial_ids(trials)
    s = np.asarray(scores, dtype=np.float64)
    if s.size != len(enroll):
        raise ValueError(f"{s.size} scores for {len(enroll)} trials")
    if labels is None:
        labels = getattr(trials, "labels", None)
    with atomic_open(path, "w") as fh:
        if labels is None:
            fh.writelines(f"{e} {t} {v!r}\n" for e, t, v in zip(enroll, test, s.tolist()))
        else:
            lab = np.asarray(labels, dtype=bool).tolist()
            fh.writelines(f"{e} {t} {v!r} {int(b)}\n" for e, t, v, b in zip(enroll, test, s.tolist(), lab))


def read_scores(path: str | Path) -> ScoreFile:
    """Parse a score file (see the module docstring); errors name the file and line."""
    cols = read_score_columns(path)
    return ScoreFile(
        _values(cols.enroll),
        _values(cols.test),
        cols.scores,
        cols.labels,
        cols.lines,
        cols.path,
    )


@dataclass
class ScoreColumns:
    """A parsed score file with the ids as categoricals (extensions stripped): what a report
    needs without building millions of Python strings."""

    enroll: object  # pandas.Categorical
    test: object  # pandas.Categorical
    scores: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray
    path: Path


def _values(cat) -> list[str]:
    return np.asarray(cat.categories, dtype=object)[cat.codes].tolist()


def read_score_columns(path: str | Path) -> ScoreColumns:
    """Parse a score file like :func:`read_scores`, ids as ``pandas.Categorical``.

    Plain ASCII files (no ``#``, carriage returns or other rare separators) go through pandas'
    C parser; anything it does not read exactly as the line-by-line reader would (and every
    malformed file) is parsed line by line, which names the offending line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BenchError(f"cannot read score file: {e.strerror}", path) from e
    fast = _parse_fast(data)
    if fast is not None:
        return ScoreColumns(*fast, path)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise BenchError("score file is not text", path) from e
    enroll, test, vals, labs, nums = _parse_lines(text, path)
    import pandas as pd

    return ScoreColumns(
        pd.Categorical(enroll),
        pd.Categorical(test),
        vals,
        labs,
        nums,
        path,
    )


# Bytes the fast parser leaves to the line-by-line reader: comments, quotes (pandas treats them
# specially), NUL, and the ASCII characters str.splitlines() / str.split() also break on.
_SLOW_BYTES = (b"#", b'"', b"\x00", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")


def _parse_fast(data: bytes):
    """(enroll, test, scores, labels, lines) via pandas, or None when the file needs the slow path."""
    import csv
    import io

    import pandas as pd

    if not data or not data.isascii() or any(b in data for b in _SLOW_BYTES):
        return None
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep=r"\s+",
            header=None,
            index_col=False,
            dtype={0: "category", 1: "category", 2: np.float64, 3: str},
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if df.shape[1] not in (3, 4) or len(df) == 0:
        return None
    ids = []
    for c in (0, 1):
        cat = df[c].array
        cats = cat.categories
        if not (pd.api.types.is_object_dtype(cats.dtype) or pd.api.types.is_string_dtype(cats.dtype)):
            return None  # e.g. numeric ids that pandas converted
        names = [str(x) for x in cats]
        if "" in names or cat.codes.min() < 0:
            return None
        stripped, inv = np.unique(np.array([strip_ext(x) for x in names], dtype=object), return_inverse=True)
        ids.append(pd.Categorical.from_codes(inv.reshape(-1)[cat.codes], categories=pd.Index(stripped, dtype=object)))
    scores = df[2].to_numpy(np.float64)
    if np.isnan(scores).any():
        return None
    if ((scores == 0) | (scores == 1)).any():
        low = data.lower()  # pandas reads true/false as 1/0 where float() refuses them
        if b"true" in low or b"false" in low:
            return None
    labels = None
    if df.shape[1] == 4:
        codes, uniq = pd.factorize(df[3].to_numpy(dtype=object))
        lut = [_LABELS.get(str(u).lower()) for u in uniq]
        if codes.min() < 0 or any(v is None for v in lut):
            return None
        labels = np.asarray(lut, dtype=bool)[codes]
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if n_lines == len(df):
        lines = np.arange(1, len(df) + 1, dtype=np.int64)
    else:  # blank lines: number the lines that hold fields
        lines = np.asarray([n for n, line in enumerate(data.split(b"\n"), 1) if line.strip()], dtype=np.int64)
        if lines.size != len(df):
            return None
    return ids[0], ids[1], scores, labels, lines


def _parse_lines(text: str, path: Path):
    """Line-by-line reader (the definition of the format); raises on the first bad line."""
    enroll: list[str] = []
    test: list[str] = []
    vals: list[float] = []
    labs: list[bool] = []
    nums: list[int] = []
    ncols = None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (3, 4):
            raise BenchError(f"expected 'enroll test score [label]', got {len(parts)} fields", path, n)
        if ncols is None:
            ncols = len(parts)
        elif len(parts) != ncols:
            raise BenchError(f"{len(parts)} fields where earlier lines have {ncols}", path, n)
        try:
            v = float(parts[2])
        except ValueError:
            raise BenchError(f"score {parts[2]!r} is not a number", path, n) from None
        if math.isnan(v):
            raise BenchError("score is NaN", path, n)
        if ncols == 4:
            lab = _LABELS.get(parts[3].lower())
            if lab is None:
                raise BenchError(f"label {parts[3]!r} is not 1/0 or target/nontarget", path, n)
            labs.append(lab)
        enroll.append(strip_ext(parts[0]))
        test.append(strip_ext(parts[1]))
        vals.append(v)
        nums.append(n)
    if not vals:
        raise BenchError("score file has no trials", path)
    return (
        enroll,
        test,
        np.asarray(vals, dtype=np.float64),
        np.asarray(labs, dtype=bool) if ncols == 4 else None,
        np.asarray(nums, dtype=np.int64),
    )


def key_index(enroll: Sequence[str], test: Sequence[str], path=None, lines=None) -> dict[tuple[str, str], int]:
    """``(enroll, test) -> position``; a repeated pair is an error naming both lines."""
    out: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(enroll, test)):
        j = out.setdefault(key, i)
        if j != i:
            ln = (lambda k: int(lines[k])) if lines is not None and len(lines) else (lambda k: k + 1)
            raise BenchError(f"duplicate trial '{key[0]} {key[1]}' (first on line {ln(j)})", path, ln(i))
    return out
