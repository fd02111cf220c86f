"""Embedding files of this and other toolkits, chosen by the file name's ending.

=====================  =======================================================================
``E.npz``              ``ids`` (unicode array, or bytes decoded as UTF-8) + ``embeddings``
                       (float32 ``[N, D]``); ours, read without pickle (object arrays refused)
``E.npy``              the float32 ``[N, D]`` matrix; ids one per line in ``E.ids.txt`` beside it
``E.ark``              Kaldi binary archive of float vectors (``copy-vector``/x-vector style)
``E.scp``              Kaldi script file pointing into arks (``xvector.scp``); writing ``E.scp``
                       also writes ``E.ark`` beside it
=====================  =======================================================================

Kaldi files go through ``kaldiio`` (a maintained reader/writer of the Kaldi formats). A Kaldi
entry may be a vector ``[D]`` or a one-row matrix ``[1, D]``. Every reader checks the same
things: ids unique (extensions stripped, as everywhere), one row per id, finite values.
Writes are atomic; a written ark reads back bit-exact (float32 binary).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.data.trials import strip_ext
from bench.errors import BenchError
from bench.io import atomic_save, atomic_write

Reader = Callable[[Path], tuple[list[str], np.ndarray]]
Writer = Callable[[Path, list[str], np.ndarray], None]

# ------------------------------------------------------------------------------------------ npz


# a zip file starts with a local file header, an empty one with its end record
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPZ = "not an .npz archive (the zip of arrays 'ids' and 'embeddings' that numpy.savez writes)"


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    # look at the first bytes ourselves: on a file that is no zip numpy guesses a pickle and says so
    with open(path, "rb") as fh:
        head = fh.read(6)
    if not head.startswith(_ZIP_MAGIC):
        if head == b"\x93NUMPY":
            raise BenchError(f"{_NPZ}: a plain .npy array; .npy needs an .ids.txt beside it", path)
        raise BenchError(f"{_NPZ}: {'the file is empty' if not head else 'it does not start like a zip file'}", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or "embeddings" not in z:
                raise BenchError(f"embedding file needs arrays 'ids' and 'embeddings', has {sorted(z.files)}", path)
            ids = _decode_ids(_array(z, "ids", path), path)
            mat = np.asarray(_array(z, "embeddings", path), dtype=np.float32)
    except BenchError:
        raise
    except zipfile.BadZipFile:  # starts like a zip but is cut short or damaged
        raise BenchError(f"{_NPZ}: a damaged or truncated zip file", path) from None
    except (OSError, ValueError, EOFError) as e:
        raise BenchError(f"cannot read .npz embedding file: {_first_line(e)}", path) from None
    return ids, mat


def _array(z, name: str, path: Path) -> np.ndarray:
    try:
        return z[name]
    except ValueError as e:
        # an object array is a pickle, and unpickling a file runs code from it: never done for input files
        if "allow_pickle" in str(e):
            raise BenchError(
                f"array '{name}' holds Python objects (stored with pickle, which bench does not load); "
                f"save it as a plain array, e.g. ids=np.asarray(ids, dtype=str)",
                path,
            ) from None
        raise


def _decode_ids(raw: np.ndarray, path: Path) -> list[str]:
    """``ids`` as str: a unicode array as is, a bytes (``S``) array decoded as UTF-8."""
    ids = []
    for n, i in enumerate(raw, 1):
        if isinstance(i, bytes):
            try:
                i = i.decode("utf-8")
            except UnicodeDecodeError:
                raise BenchError(f"'ids' entry {n} is not UTF-8 text: {bytes(i)!r}", path) from None
        ids.append(str(i))
    return ids


def _write_npz(path: Path, ids: list[str], mat: np.ndarray) -> None:
    atomic_save(path, lambda fh: np.savez(fh, ids=np.asarray(ids, dtype=np.str_), embeddings=mat))


# ------------------------------------------------------------------------------------------ npy + ids


def ids_path(path: Path) -> Path:
    """``E.npy`` -> ``E.ids.txt``: the id list that goes with a bare matrix."""
    return path.with_name(path.name[: -len(".npy")] + ".ids.txt")


def _read_npy(path: Path) -> tuple[list[str], np.ndarray]:
    from bench.textio import read_lines

    side = ids_path(path)
    if not side.is_file():
        raise BenchError(f"a .npy matrix needs its ids, one per line, in {side.name} beside it", path)
    ids = [line.strip() for line in read_lines(side, "id list")]
    while ids and not ids[-1]:
        ids.pop()
    for n, i in enumerate(ids, 1):
        if not i or len(i.split()) != 1:
            raise BenchError("id list lines must hold one id each", side, n)
    try:
        mat = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError, EOFError) as e:
        raise BenchError(f"cannot read .npy embedding file: {_first_line(e)}", path) from None
    if mat.ndim != 2 or mat.shape[0] != len(ids):
        raise BenchError(f"matrix has shape {mat.shape} for {len(ids)} ids in {side.name}", path)
    return ids, mat


def _write_npy(path: Path, ids: list[str], mat: np.ndarray) -> None:
    atomic_save(path, lambda fh: np.save(fh, mat))
    atomic_write(ids_path(path), "".join(f"{i}\n" for i in ids))


# ------------------------------------------------------------------------------------------ Kaldi


def _kaldi_rows(items, path: Path) -> tuple[list[str], np.ndarray]:
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for key, arr in items:
        a = np.asarray(arr)
        if a.ndim == 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 1:
            raise BenchError(f"entry {key!r} has shape {a.shape}; embeddings are vectors [D] or [1, D]", path)
        if rows and a.shape != rows[0].shape:
            raise BenchError(f"entry {key!r} has dimension {a.shape[0]}, earlier ones {rows[0].shape[0]}", path)
        ids.append(str(key))
        rows.append(a)
    if not rows:
        raise BenchError("Kaldi file holds no embeddings", path)
    return ids, np.stack(rows)


_VECTOR = "a binary ('\\0B' FV/DV/FM/DM) or text vector, as copy-vector or kaldiio.save_ark write"


def _read_ark(path: Path) -> tuple[list[str], np.ndarray]:
    import kaldiio

    items: list = []
    try:
        items.extend(kaldiio.load_ark(str(path)))
    except Exception as e:  # kaldiio raises ValueError/TypeError/OSError/UnicodeError on foreign bytes
        if not items:  # not an ark at all: what kaldiio tripped on (a codec, a digit) says nothing useful
            raise BenchError(f"not a Kaldi archive of vectors: expected entries '<id> ' + {_VECTOR}", path) from None
        raise BenchError(f"cannot read Kaldi ark: entry {len(items) + 1}: {_first_line(e)}", path) from None
    return _kaldi_rows(items, path)


def _read_scp(path: Path) -> tuple[list[str], np.ndarray]:
    import kaldiio

    from bench.textio import read_lines

    # the scp is text like any other list: decode it our way (BOM, CRLF, line-numbered errors) and
    # let kaldiio resolve the 'ark:offset' locations
    out = []
    where: dict[str, tuple[int, str]] = {}  # key -> (scp line, location), for errors
    for n, line in enumerate(read_lines(path, "Kaldi scp file"), 1):
        if not line.strip():
            continue
        tok = line.split(None, 1)
        if len(tok) != 2:
            raise BenchError("scp lines must be 'id location'", path, n)
        key, loc = tok[0], tok[1].strip()
        if loc.endswith("|") or loc.startswith("|"):
            raise BenchError("piped scp commands are not run; give ark:offset locations", path, n)
        out.append(f"{key} {_locate(loc, path.parent)}\n")
        where[key] = (n, loc)
    try:
        loader = kaldiio.load_scp(io.StringIO("".join(out)))
    except Exception as e:  # kaldiio raises ValueError/KeyError on bad locations
        raise BenchError(f"cannot read Kaldi scp: {_first_line(e)}", path) from None
    items = []
    for k in loader:
        try:
            with warnings.catch_warnings():  # kaldiio warns before it raises; the error below says it all
                warnings.simplefilter("ignore")
                items.append((k, loader[k]))
        except OSError as e:
            raise BenchError(f"cannot read {where[k][1]}: {e.strerror or _first_line(e)}", path, where[k][0]) from None
        except Exception:  # ValueError/TypeError/UnicodeError: the bytes there are no Kaldi vector
            raise BenchError(
                f"{where[k][1]} points at no Kaldi vector (expected {_VECTOR})", path, where[k][0]
            ) from None
    return _kaldi_rows(items, path)


def _locate(loc: str, scp_dir: Path) -> str:
    """``ark:offset`` with a relative ark that is not found from the working folder (Kaldi's
    convention) but is beside the scp, pointed at the latter; anything else unchanged."""
    file, sep, offset = loc.rpartition(":")
    if not sep or not offset.isdigit():
        file, offset = loc, ""
    p = Path(file)
    if p.is_absolute() or p.exists() or not (scp_dir / p).exists():
        return loc
    return str(scp_dir / p) + (f":{offset}" if offset else "")


def _write_ark(path: Path, ids: list[str], mat: np.ndarray, scp: Path | None = None) -> None:
    """The ark (and scp) are written beside their targets and renamed into place."""
    import kaldiio

    for i in ids:
        if not i or any(c.isspace() for c in i):
            raise BenchError(f"id {i!r} cannot be a Kaldi key (empty or with blanks)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        listing = io.StringIO()
        kaldiio.save_ark(tmp, {i: mat[k] for k, i in enumerate(ids)}, scp=listing)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if scp is not None:
        final = str(path.resolve())
        # kaldiio wrote 'key <tmp>:<offset>'; the offsets stand, the ark has its final name now
        lines = [
            f"{key} {final}:{loc.rpartition(':')[2]}\n"
            for key, loc in (ln.split(" ", 1) for ln in listing.getvalue().splitlines())
        ]
        atomic_write(scp, "".join(lines))


def _write_scp(path: Path, ids: list[str], mat: np.ndarray) -> None:
    _write_ark(path.with_suffix(".ark"), ids, mat, scp=path)


# ------------------------------------------------------------------------------------------ registry

# ending -> (reader, writer, what it is); the first ending that a file name has wins
EMBEDDING_FORMATS: dict[str, tuple[Reader, Writer, str]] = {
    ".npz": (_read_npz, _write_npz, "ids + embeddings arrays"),
    ".npy": (_read_npy, _write_npy, "matrix, ids in <name>.ids.txt"),
    ".ark": (_read_ark, lambda p, i, m: _write_ark(p, i, m), "Kaldi archive"),
    ".scp": (_read_scp, _write_scp, "Kaldi script file (+ .ark)"),
}


def accepted() -> str:
    return ", ".join(f"{k} ({v[2]})" for k, v in EMBEDDING_FORMATS.items())


def embedding_format(path: str | Path) -> str:
    """The :data:`EMBEDDING_FORMATS` key of ``path``; other endings are a :class:`BenchError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in EMBEDDING_FORMATS:
        raise BenchError(f"unknown embedding file format '{suffix or Path(path).name}'; accepted: {accepted()}", path)
    return suffix


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Ids (extensions stripped) and the float32 ``[N, D]`` matrix of an embedding file in any
    :data:`EMBEDDING_FORMATS` format.

    Raises:
        BenchError: unknown format, missing/unreadable file, shapes that do not match the ids,
            duplicate ids or non-finite values, each naming the file.
    """
    path = Path(path)
    fmt = embedding_format(path)
    if not path.is_file():
        raise BenchError("embedding file not found", path)
    ids, mat = EMBEDDING_FORMATS[fmt][0](path)
    ids = [strip_ext(i) for i in ids]
    mat = np.asarray(mat, dtype=np.float32)
    if mat.ndim != 2 or mat.shape[0] != len(ids):
        raise BenchError(f"'embeddings' has shape {mat.shape} for {len(ids)} ids", path)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise BenchError(f"duplicate id {i!r}", path)
            seen.add(i)
    bad = ~np.isfinite(mat).all(axis=1)
    if bad.any():
        raise BenchError(f"{int(bad.sum())} embedding(s) are not finite, first {ids[int(np.argmax(bad))]!r}", path)
    return ids, mat


def write_embeddings(path: str | Path, ids: Sequence[str], matrix: np.ndarray) -> None:
    """Write ids and a float32 ``[N, D]`` matrix to ``path`` in the format its ending names, atomically."""
    path = Path(path)
    fmt = embedding_format(path)
    id_list = [str(i) for i in ids]
    mat = np.asarray(matrix, dtype=np.float32)
    if mat.ndim != 2 or mat.shape[0] != len(id_list):
        raise ValueError(f"need embeddings [N, D] for {len(id_list)} ids, got shape {mat.shape}")
    EMBEDDING_FORMATS[fmt][1](path, id_list, mat)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
