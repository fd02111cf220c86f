"""Trial lists: which (enrolment, test) pairs to score and whether each is a target trial.

Three line formats are recognised from the file's first line and then required on every line:

================  ====================================================  ==================
format            example line                                          label
================  ====================================================  ==================
``cnceleb``       ``id00800-enroll test/id00800-singing-01-005.wav 1``  last field 1 / 0
``voxceleb``      ``1 id10270/x6uYqmx31kE/00001.wav id10273/...wav``    first field 1 / 0
``kaldi``         ``spk1-utt1 spk2-utt3 nontarget``                     target / nontarget
================  ====================================================  ==================

Audio extensions are stripped from ids, so trials that say ``.wav`` match ``.flac`` files. The file
is decoded by :mod:`bench.textio` (UTF-8 with an optional BOM, CRLF or LF).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import BenchError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".m4a", ".mp3", ".sph", ".opus", ".aiff", ".aif")


@dataclass
class Trials:
    """A parsed trial list: ``enroll[i]`` vs ``test[i]`` with ``labels[i]`` (True = target).

    ``sha256``: hex digest of the bytes :func:`read_trials` parsed (recorded in ``metrics.json`` so
    that ``bench report`` compares runs only on the same list); None for trials built in memory.
    """

    enroll: list[str]
    test: list[str]
    labels: np.ndarray  # bool [N]
    path: str = ""
    format: str = ""
    lines: list[int] = field(default_factory=list)  # 1-based source line of each trial
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.enroll)

    @property
    def n_target(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nontarget(self) -> int:
        return int(len(self.labels) - self.labels.sum())


def strip_ext(utt: str) -> str:
    """``test/id00800-x-01-005.wav`` -> ``test/id00800-x-01-005`` (only audio extensions)."""
    lower = utt.lower()
    for ext in AUDIO_EXTENSIONS:
        if lower.endswith(ext):
            return utt[: -len(ext)]
    return utt


_BINARY = {"1": True, "0": False}
_KALDI = {"target": True, "nontarget": False}


def _cnceleb(tok: list[str]) -> tuple[str, str, bool] | None:
    return (tok[0], tok[1], _BINARY[tok[2]]) if tok[2] in _BINARY else None


def _voxceleb(tok: list[str]) -> tuple[str, str, bool] | None:
    return (tok[1], tok[2], _BINARY[tok[0]]) if tok[0] in _BINARY else None


def _kaldi(tok: list[str]) -> tuple[str, str, bool] | None:
    return (tok[0], tok[1], _KALDI[tok[2].lower()]) if tok[2].lower() in _KALDI else None


# format name -> (parser of one 3-token line, example shown in errors); order = detection order
TRIAL_FORMATS: dict[str, tuple[Callable[[list[str]], tuple[str, str, bool] | None], str]] = {
    "kaldi": (_kaldi, "enroll test target|nontarget"),
    "cnceleb": (_cnceleb, "enroll test 1|0"),
    "voxceleb": (_voxceleb, "1|0 enroll test"),
}


def detect_format(tokens: list[str]) -> str | None:
    """The first format (in ``TRIAL_FORMATS`` order) whose parser accepts a line's tokens.

    A line like ``1 a 0`` fits both CN-Celeb and VoxCeleb; real ids are never a bare 0/1, so
    taking CN-Celeb first only matters for such degenerate ids.
    """
    if len(tokens) != 3:
        return None
    for name, (parse, _) in TRIAL_FORMATS.items():
        if parse(tokens) is not None:
            return name
    return None


def read_trials(path: str | Path) -> Trials:
    """Parse a trial list file, auto-detecting its format.

    Raises:
        BenchError: missing/empty file, a line with the wrong number of fields or an unknown
            label, a line in a different format than the first, or a repeated (enroll, test) pair;
            each names the file and the line.
    """
    import hashlib

    from bench.textio import decode, read_bytes

    p = Path(path)
    data = read_bytes(p, "trial list")  # hashed as read, so the digest is of exactly the list parsed
    lines_text = [line.rstrip() for line in decode(data, p).split("\n")]  # as bench.textio.read_lines
    fmt: str | None = None
    enroll: list[str] = []
    test: list[str] = []
    labels: list[bool] = []
    lines: list[int] = []
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(lines_text, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if fmt is None:
            fmt = detect_format(tok)
            if fmt is None:
                known = "; ".join(f"{n}: '{ex}'" for n, (_, ex) in TRIAL_FORMATS.items())
                raise BenchError(f"unrecognised trial line '{line}' (expected one of {known})", path=p, line=lineno)
        parse, example = TRIAL_FORMATS[fmt]
        parsed = parse(tok) if len(tok) == 3 else None
        if parsed is None:
            raise BenchError(f"malformed {fmt} trial line '{line}' (expected '{example}')", path=p, line=lineno)
        e, t, lab = strip_ext(parsed[0]), strip_ext(parsed[1]), parsed[2]
        key = (e, t)
        if key in seen:
            raise BenchError(f"duplicate trial '{e} {t}' (first on line {seen[key]})", path=p, line=lineno)
        seen[key] = lineno
        enroll.append(e)
        test.append(t)
        labels.append(lab)
        lines.append(lineno)
    if not enroll:
        raise BenchError("trial list is empty", path=p)
    return Trials(enroll, test, np.asarray(labels, dtype=bool), str(p), fmt or "", lines,
                  hashlib.sha256(data).hexdigest())


def write_trials(path: str | Path, trials: Trials) -> None:
    """Write ``trials`` in the CN-Celeb format (``enroll test 1|0``), atomically."""
    from bench.io import atomic_write

    body = "".join(f"{e} {t} {int(lab)}\n" for e, t, lab in zip(trials.enroll, trials.test, trials.labels))
    atomic_write(path, body)
