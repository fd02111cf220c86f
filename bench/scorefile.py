"""Score files of this and other toolkits: reading every column order in use, writing ours.

A score file has one trial per line. The toolkits of the field disagree on the column order and
on how a label is spelled, so the reader detects both from the file's content:

==============================  ====================================  =========================
layout                          example line                          written by
==============================  ====================================  =========================
``enroll test score``           ``id00800-enroll test/x.wav 0.573``   bench (no labels), Kaldi
``enroll test score label``     ``id00800-enroll test/x.wav 0.573 1``  bench (default)
``enroll test label score``     ``enrol test 1 0.957397``             SpeechBrain, 3D-Speaker
``label enroll test score``     ``1 id10270/a.wav id10273/b.wav 0.6``  VoxCeleb-ordered lists
==============================  ====================================  =========================

Labels are ``1``/``0``, ``target``/``nontarget`` or ``true``/``false`` (any case). Fields are
separated by blanks (spaces or tabs) or, in a ``.csv``-style file, by commas; a first line of
column names (``enroll,test,score,label``; recognised when it names at least one known column
and holds no number) is skipped and, where its names are known, fixes the layout. ``#`` lines
and blank lines are skipped. Text is decoded by :mod:`bench.textio` (UTF-8, optional BOM, CRLF).

A layout must fit every line. When no layout fits, the error names the line where the layout
that fitted longest broke; when several fit (e.g. every score is exactly 0 or 1) the file is
refused with the candidates named, and ``layout=`` picks one.

Scores are written with ``repr`` so they read back exactly; labels as ``1``/``0`` (default) or
``target``/``nontarget`` (``label_style="target"``, what Kaldi-style scoring scripts test for).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.trials import strip_ext
from bench.errors import BenchError
from bench.io import atomic_open
from bench.textio import BOM, decode, read_bytes

LABEL_WORDS = {"1": True, "0": False, "target": True, "nontarget": False, "true": True, "false": False}
LABELS_SHOWN = "1/0, target/nontarget or true/false"

# layout name -> the role of each column; dict order is the order candidates are named in
LAYOUTS: dict[str, tuple[str, ...]] = {
    "enroll test score": ("enroll", "test", "score"),
    "enroll test score label": ("enroll", "test", "score", "label"),
    "enroll test label score": ("enroll", "test", "label", "score"),
    "label enroll test score": ("label", "enroll", "test", "score"),
}

# label style name -> (target word, non-target word) for the files we write
LABEL_STYLES: dict[str, tuple[str, str]] = {"binary": ("1", "0"), "target": ("target", "nontarget")}

# header names (lower case) -> role; other toolkits' spellings included
_HEADER_NAMES = {
    **dict.fromkeys(
        (
            "enroll",
            "enrol",
            "enrollment",
            "enrolment",
            "model",
            "enroll_id",
            "enrol_id",
            "spk",
            "speaker",
            "utt1",
            "enroll_utt",
        ),
        "enroll",
    ),
    **dict.fromkeys(("test", "test_id", "test_utt", "utt", "utt2", "segment", "trial", "probe"), "test"),
    **dict.fromkeys(("score", "scores", "llr", "similarity", "cosine", "cos"), "score"),
    **dict.fromkeys(("label", "labels", "target", "key", "lab", "is_target", "trial_type", "truth"), "label"),
}
_SEPARATORS = {"space": "space-separated", "tab": "tab-separated", "comma": "comma-separated"}
SAMPLE_LINES = 2000  # lines the fast path detects the layout on before handing the file to pandas


@dataclass
class ScoreFile:
    """A parsed score file; ``labels`` is None when the lines had no label column."""

    enroll: list[str]
    test: list[str]
    scores: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray
    path: Path
    layout: str = ""
    description: str = ""


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
    layout: str = ""
    description: str = ""


@dataclass
class Detected:
    """What :func:`detect_layout` found: layout, separator, the header's line (0 = none), label words."""

    layout: str
    separator: str
    header_line: int = 0
    label_words: list[str] = field(default_factory=list)

    def describe(self) -> str:
        bits = [_SEPARATORS[self.separator]]
        if self.header_line:
            bits.append(f"header on line {self.header_line}")
        if self.label_words:
            bits.append("labels " + "/".join(self.label_words))
        return f"layout '{self.layout}' ({', '.join(bits)})"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _trial_ids(trials) -> tuple[list[str], list[str]]:
    if hasattr(trials, "enroll") and hasattr(trials, "test"):
        return list(trials.enroll), list(trials.test)
    enroll, test = trials
    return list(enroll), list(test)


def check_label_style(style: str) -> tuple[str, str]:
    """The (target, non-target) words of ``style``; unknown styles are a :class:`BenchError`."""
    if style not in LABEL_STYLES:
        raise BenchError(f"unknown label style '{style}'; known: {', '.join(LABEL_STYLES)}")
    return LABEL_STYLES[style]


def write_scores(path: str | Path, trials, scores, labels=None, label_style: str = "binary") -> None:
    """Write ``enroll test score label`` lines atomically; labels from ``trials.labels`` unless
    given (omitted when neither has them), spelled as ``label_style`` says (:data:`LABEL_STYLES`)."""
    yes, no = check_label_style(label_style)
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
            fh.writelines(f"{e} {t} {v!r} {yes if b else no}\n" for e, t, v, b in zip(enroll, test, s.tolist(), lab))


# --------------------------------------------------------------------------------------------
# Layout detection (the definition: every reader below agrees with it)
# --------------------------------------------------------------------------------------------


def _fields(line: str, separator: str) -> list[str]:
    if separator == "comma":
        row = next(csv.reader([line]), [])
        return [f.strip() for f in row]
    return line.split()


def _float(tok: str) -> float | None:
    try:
        return float(tok)
    except ValueError:
        return None


def _check(tok: list[str], roles: tuple[str, ...]) -> str | None:
    """Why ``tok`` does not fit ``roles`` (None when it does)."""
    for t, role in zip(tok, roles):
        if role == "score":
            v = _float(t)
            if v is None:
                return f"score {t!r} is not a number"
            if math.isnan(v):
                return "score is NaN"
        elif role == "label" and t.lower() not in LABEL_WORDS:
            return f"label {t!r} is not {LABELS_SHOWN}"
        elif role in ("enroll", "test") and not t:
            return f"empty {role} id"
    return None


def _header_layout(tok: list[str]) -> str | None | bool:
    """False: not a header; None: a header whose names do not fix a layout; else the layout it names."""
    names = [t.lower().strip().lstrip("#").strip() for t in tok]
    if any(_float(t) is not None for t in tok) or not any(n in _HEADER_NAMES for n in names):
        return False
    roles = tuple(_HEADER_NAMES.get(n, "?") for n in names)
    named = next((name for name, r in LAYOUTS.items() if r == roles), None)
    if named is None and any(n in LABEL_WORDS for n in names):
        return False  # 'x y target nontarget' is a broken data line, not column names
    return named


def _separator(first: str) -> str:
    if "," in first and len(_fields(first, "comma")) in (3, 4):
        return "comma"
    return "tab" if "\t" in first else "space"  # both split on any run of blanks


def _data_lines(lines):
    """(1-based line number, text) of lines that are neither blank nor ``#`` comments."""
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield n, line


def detect_layout(lines, path=None, layout: str | None = None, *, complete: bool = True):
    """(:class:`Detected`, tokenised rows ``[(line, fields)]``) of an iterable of text lines.

    ``layout`` forces a layout (still checked on every line). With ``complete=False`` (a sample of
    a longer file) several candidates are returned as ``Detected.layout = ''`` instead of an error.

    Raises:
        BenchError: no layout fits (the line where the longest-fitting one broke), several fit,
            a line with another number of fields, or no trials at all; each names file and line.
    """
    if layout is not None and layout not in LAYOUTS:
        raise BenchError(f"unknown score-file layout '{layout}'; known: " + "; ".join(f"'{k}'" for k in LAYOUTS))
    it = _data_lines(lines)
    first = next(it, None)
    if first is None:
        raise BenchError("score file has no trials", path)
    sep = _separator(first[1])
    header_line = 0
    candidates = list(LAYOUTS) if layout is None else [layout]
    rows: list[tuple[int, list[str]]] = []
    head = _header_layout(_fields(first[1], sep))
    if head is not False:
        header_line = first[0]
        if isinstance(head, str) and layout is None:
            candidates = [head]
    else:
        rows.append((first[0], _fields(first[1], sep)))
    rows.extend((n, _fields(line, sep)) for n, line in it)
    if not rows:
        raise BenchError("score file has no trials", path)
    ncols = len(rows[0][1])
    alive = {c: None for c in candidates if len(LAYOUTS[c]) == ncols}  # layout -> first failure
    failures: dict[str, tuple[int, str]] = {}
    for n, tok in rows:
        if len(tok) != ncols:
            if len(tok) in (3, 4) and ncols in (3, 4):
                raise BenchError(f"{len(tok)} fields where earlier lines have {ncols}", path, n)
            raise BenchError(
                f"expected 'enroll test score [label]' (or another layout), got {len(tok)} fields", path, n
            )
        for c in [c for c in alive if c not in failures]:
            why = _check(tok, LAYOUTS[c])
            if why is not None:
                failures[c] = (n, why)
        if len(failures) == len(alive):
            break
    if not alive:
        raise BenchError(
            f"expected 'enroll test score [label]' (or another layout), got {ncols} fields", path, rows[0][0]
        )
    fits = [c for c in alive if c not in failures]
    if not fits:
        # the layout that fitted longest is the one the file was meant to be in
        best = max(alive, key=lambda c: (failures[c][0], -list(LAYOUTS).index(c)))
        n, why = failures[best]
        raise BenchError(why, path, n)
    if len(fits) > 1:
        if not complete:
            return Detected("", sep, header_line), rows
        raise BenchError(
            "ambiguous score file: it reads as "
            + " or ".join(f"'{c}'" for c in fits)
            + "; pick one with --score-layout",
            path,
        )
    roles = LAYOUTS[fits[0]]
    words: list[str] = []
    if "label" in roles:
        k = roles.index("label")
        seen = {tok[k].lower() for _, tok in rows}
        words = sorted(seen, key=lambda w: (not LABEL_WORDS[w], w))
    return Detected(fits[0], sep, header_line, words), rows


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_scores(path: str | Path, layout: str | None = None) -> ScoreFile:
    """Parse a score file (see the module docstring); errors name the file and line."""
    cols = read_score_columns(path, layout)
    return ScoreFile(
        _values(cols.enroll),
        _values(cols.test),
        cols.scores,
        cols.labels,
        cols.lines,
        cols.path,
        cols.layout,
        cols.description,
    )


def _values(cat) -> list[str]:
    return np.asarray(cat.categories, dtype=object)[cat.codes].tolist()


def read_score_columns(path: str | Path, layout: str | None = None) -> ScoreColumns:
    """Parse a score file like :func:`read_scores`, ids as ``pandas.Categorical``.

    Plain ASCII files (no ``#``, quotes, carriage returns or other rare separators) whose layout
    is clear from their first :data:`SAMPLE_LINES` lines go through pandas' C parser; anything it
    does not read exactly as the line-by-line reader would (and every malformed file) is parsed
    line by line, which names the offending line.
    """
    import pandas as pd

    path = Path(path)
    data = read_bytes(path, "score file")
    fast = _parse_fast(data, layout)
    if fast is not None:
        enroll, test, scores, labels, lines, det = fast
        return ScoreColumns(enroll, test, scores, labels, lines, path, det.layout, det.describe())
    text = decode(data, path)
    enroll, test, vals, labs, nums, det = _parse_text(text, path, layout)
    return ScoreColumns(
        pd.Categorical(enroll), pd.Categorical(test), vals, labs, nums, path, det.layout, det.describe()
    )


def _parse_text(text: str, path, layout: str | None = None):
    """Line-by-line reader (the definition of the format); raises on the first bad line."""
    det, rows = detect_layout(text.split("\n"), path, layout)
    roles = LAYOUTS[det.layout]
    ie, it, isc = roles.index("enroll"), roles.index("test"), roles.index("score")
    il = roles.index("label") if "label" in roles else None
    enroll = [strip_ext(tok[ie]) for _, tok in rows]
    test = [strip_ext(tok[it]) for _, tok in rows]
    vals = np.asarray([float(tok[isc]) for _, tok in rows], dtype=np.float64)
    labs = None if il is None else np.asarray([LABEL_WORDS[tok[il].lower()] for _, tok in rows], dtype=bool)
    nums = np.asarray([n for n, _ in rows], dtype=np.int64)
    return enroll, test, vals, labs, nums, det


def _parse_lines(text: str, path: Path):
    """(enroll, test, scores, labels, lines) of :func:`_parse_text`."""
    return _parse_text(text, path)[:5]


# Bytes the fast parser leaves to the line-by-line reader: comments, quotes (pandas treats them
# specially), NUL, and the ASCII characters str.split() also breaks on. A CR is fine only in CRLF.
_SLOW_BYTES = (b"#", b'"', b"\x00", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")


def _parse_fast(data: bytes, layout: str | None = None):
    """(enroll, test, scores, labels, lines, Detected) via pandas, or None when the file needs the slow path."""
    import pandas as pd

    if data.startswith(BOM):
        data = data[len(BOM) :]
    if not data or not data.isascii() or any(b in data for b in _SLOW_BYTES):
        return None
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends a line for pandas but not for the line reader
    head_bytes = data[: 1 << 20]
    if len(head_bytes) < len(data):  # never detect on a line cut in half
        head_bytes = head_bytes[: head_bytes.rfind(b"\n") + 1]
    head = head_bytes.split(b"\n")[:SAMPLE_LINES]
    try:
        det, _ = detect_layout([x.decode() for x in head], None, layout, complete=False)
    except BenchError:
        return None
    if not det.layout:
        return None  # several layouts fit the sample: the whole file decides, line by line
    roles = LAYOUTS[det.layout]
    if det.separator == "comma" and (b" ," in data or b"\t," in data):
        return None  # blanks before a comma: the line reader strips them, pandas would keep them
    dtypes = {
        k: {"enroll": "category", "test": "category", "score": np.float64, "label": str}[r] for k, r in enumerate(roles)
    }
    skip = [det.header_line - 1] if det.header_line else None
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep="," if det.separator == "comma" else r"\s+",
            skipinitialspace=True,
            header=None,
            index_col=False,
            skiprows=skip,
            dtype=dtypes,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if df.shape[1] != len(roles) or len(df) == 0:
        return None
    ids = {}
    for role in ("enroll", "test"):
        cat = df[roles.index(role)].astype("category").array
        cats = cat.categories
        if not (pd.api.types.is_object_dtype(cats.dtype) or pd.api.types.is_string_dtype(cats.dtype)):
            return None  # e.g. numeric ids that pandas converted
        names = [str(x) for x in cats]
        if "" in names or cat.codes.min() < 0:
            return None
        stripped, inv = np.unique(np.array([strip_ext(x) for x in names], dtype=object), return_inverse=True)
        ids[role] = pd.Categorical.from_codes(inv.reshape(-1)[cat.codes], categories=pd.Index(stripped, dtype=object))
    scores = pd.to_numeric(df[roles.index("score")], errors="coerce").to_numpy(np.float64)
    if np.isnan(scores).any():
        return None
    if ((scores == 0) | (scores == 1)).any():
        low = data.lower()  # pandas reads true/false as 1/0 where float() refuses them
        if b"true" in low or b"false" in low:
            return None
    labels = None
    if "label" in roles:
        codes, uniq = pd.factorize(df[roles.index("label")].to_numpy(dtype=object))
        lut = [LABEL_WORDS.get(str(u).lower()) for u in uniq]
        if codes.min() < 0 or any(v is None for v in lut):
            return None
        labels = np.asarray(lut, dtype=bool)[codes]
        det.label_words = sorted({str(u).lower() for u in uniq}, key=lambda w: (not LABEL_WORDS[w], w))
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if n_lines == len(df) and not det.header_line:
        lines = np.arange(1, len(df) + 1, dtype=np.int64)
    else:  # blank lines or a header: number the lines that hold fields
        lines = np.asarray(
            [n for n, line in enumerate(data.split(b"\n"), 1) if line.strip() and n != det.header_line], dtype=np.int64
        )
        if lines.size != len(df):
            return None
    return ids["enroll"], ids["test"], scores, labels, lines, det


def key_index(enroll, test, path=None, lines=None) -> dict[tuple[str, str], int]:
    """``(enroll, test) -> position``; a repeated pair is an error naming both lines."""
    out: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(enroll, test)):
        j = out.setdefault(key, i)
        if j != i:
            ln = (lambda k: int(lines[k])) if lines is not None and len(lines) else (lambda k: k + 1)
            raise BenchError(f"duplicate trial '{key[0]} {key[1]}' (first on line {ln(j)})", path, ln(i))
    return out
