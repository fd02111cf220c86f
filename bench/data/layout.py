"""One corpus argument for every command: ``DIR`` (layout detected) or ``KIND:DIR``.

``bench run``, ``bench tune``, ``bench eval``, ``bench embed`` and ``bench data check`` all resolve
their corpus here. Each reader in :data:`bench.data.corpus.CORPORA` says how surely a folder has
its layout (``detect(root) -> score``, 0 = not at all); the highest score wins, and a tie is
refused with the candidates named. When nothing at ``DIR`` fits, the detector looks one level
down into the folders that the corpus archives unpack to (``CN-Celeb_flac``, ``vox1_test_wav``,
...) and says which one it chose, so the folder an archive was extracted into works as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

# folders the public archives unpack to, looked for one level below the folder given
ARCHIVE_FOLDERS = (
    "CN-Celeb_flac", "CN-Celeb", "CN-Celeb1", "CN-Celeb2_flac", "CN-Celeb2",
    "vox1_test_wav", "vox1_dev_wav", "vox2_test_aac", "vox2_dev_aac", "vox2_test_wav", "vox2_dev_wav",
    "voxceleb1", "VoxCeleb1", "voxceleb2", "VoxCeleb2",
)


@dataclass(frozen=True)
class CorpusChoice:
    """The reader and folder a corpus argument resolved to; ``note`` says how, for the user."""

    kind: str
    root: Path
    note: str = ""


def _kinds() -> list[str]:
    from bench.data.corpus import CORPORA

    return sorted(CORPORA)


def _scores(root: Path) -> dict[str, float]:
    from bench.data.corpus import CORPORA

    out = {}
    for name, entry in CORPORA.items():
        s = float(entry.detect(root))
        if s > 0:
            out[name] = s
    return out


def _best(root: Path) -> str | None:
    """The kind that fits ``root`` best; a tie is a :class:`BenchError` naming the candidates."""
    scores = _scores(root)
    if not scores:
        return None
    top = max(scores.values())
    winners = sorted(k for k, s in scores.items() if s == top)
    if len(winners) > 1:
        raise BenchError(f"the folder fits the layouts {', '.join(winners)} equally; pass KIND:DIR", path=root)
    return winners[0]


def detect(root: str | Path) -> CorpusChoice:
    """The reader (and folder) for ``root``, looking one level down into archive folders.

    Raises:
        BenchError: missing folder; no layout fits (the error lists the kinds and the archive
            folders looked for); several layouts or several archive folders fit equally.
    """
    r = Path(root)
    if not r.is_dir():
        raise BenchError("corpus folder not found", path=r)
    kind = _best(r)
    if kind is not None:
        return CorpusChoice(kind, r, f"corpus: {r} has the {kind} layout (KIND:DIR picks another)")
    found = []
    for name in ARCHIVE_FOLDERS:
        sub = r / name
        if sub.is_dir():
            k = _best(sub)
            if k is not None:
                found.append((k, sub))
    if len(found) == 1:
        k, sub = found[0]
        return CorpusChoice(k, sub, f"corpus: using {sub} ({k} layout, found one level below {r})")
    if found:
        shown = ", ".join(f"{s.name}/ ({k})" for k, s in found)
        raise BenchError(f"several corpora below this folder: {shown}; pass KIND:DIR for the one you mean", path=r)
    raise BenchError(
        "cannot tell the corpus layout (no wav.scp, data/, eval/lists or id*/ folders, here or in "
        f"{', '.join(n + '/' for n in ARCHIVE_FOLDERS[:4])}...); pass KIND:DIR with KIND one of {', '.join(_kinds())}",
        path=r,
    )


def split_arg(text: str) -> tuple[str | None, str]:
    """``'cnceleb:/data/x'`` -> ``('cnceleb', '/data/x')``; ``'/data/x'`` -> ``(None, '/data/x')``.

    Only a registered kind before the colon counts, so folders with colons in their names work.
    """
    head, sep, tail = str(text).partition(":")
    if sep and head in _kinds():
        return head, tail
    return None, str(text)


def check_kind(kind: str) -> None:
    from bench.registry import suggest

    kinds = _kinds()
    if kind not in kinds:
        raise BenchError(f"unknown corpus kind '{kind}'{suggest(kind, kinds)}; known: {', '.join(kinds)}")


def resolve(arg: str | Path, kind: str | None = None) -> CorpusChoice:
    """A corpus argument (``DIR`` or ``KIND:DIR``; ``kind`` from a separate option) resolved.

    With a kind given the folder is taken as is, unless it does not have that layout while exactly
    one archive folder below it does (then that one is used, and the note says so).
    """
    from bench.data.corpus import CORPORA

    k2, path = split_arg(str(arg))
    if kind is not None and k2 is not None and kind != k2:
        raise BenchError(f"corpus '{arg}' names kind '{k2}' but the corpus-type option says '{kind}'")
    kind = kind or k2
    r = Path(path)
    if kind is None:
        return detect(r)
    check_kind(kind)
    if not r.is_dir():
        raise BenchError("corpus folder not found", path=r)
    det = CORPORA[kind].detect
    if det(r) <= 0:
        below = [r / n for n in ARCHIVE_FOLDERS if (r / n).is_dir() and det(r / n) > 0]
        if len(below) == 1:
            return CorpusChoice(kind, below[0], f"corpus: using {below[0]} ({kind} layout, found one level below {r})")
    return CorpusChoice(kind, r)
