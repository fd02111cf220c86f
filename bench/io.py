"""Atomic writes and run-directory provenance (resolved config, versions, git revision).

Every result file goes through :func:`atomic_write` so a crash or a full disk never leaves a
half-written file in place of a good one: data goes to a temporary file in the same folder,
is flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp creates 0600 files; results are meant to be shared, so honour the umask like open() does
    os.fchmod(fd, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write text or bytes to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`to_json`) atomically."""
    atomic_write(path, to_json(obj) + "\n")


def to_json(
    obj: Any, *, indent: int | None = 2, sort_keys: bool = True, default: Callable[[Any], Any] | None = None
) -> str:
    """Strict RFC 8259 JSON text of ``obj``: the one serialiser of every JSON the toolkit writes.

    Non-finite numbers (NaN, +inf, -inf, e.g. the EER of a one-class genre or Cllr of infinite
    scores) have no JSON token, so they are written as ``null``; numpy scalars and arrays become
    numbers and lists, paths become strings. ``default`` converts any other type (``str`` for
    console output); without it such a value is a TypeError.
    """
    return json.dumps(
        finite(obj), indent=indent, sort_keys=sort_keys, allow_nan=False, default=default or _json_default
    )


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (recursively through dicts, lists, numpy)."""
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return finite(obj.tolist())  # numpy scalars and arrays
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return finite(dataclasses.asdict(obj))
    return obj


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checkpoints can be large)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary binary file that atomically becomes ``path``.

    Example: ``atomic_save(p, lambda fh: torch.save(state, fh))``.
    """
    with atomic_open(path, "wb") as fh:
        write(fh)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_revision(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit hash and dirty flag of the source tree, or 'unknown' outside a git checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


PACKAGES = ["torch", "torchaudio", "numpy", "pandas", "matplotlib", "seaborn", "optuna", "typer", "rich", "soundfile"]


def versions(packages: Sequence[str] = PACKAGES, *, with_platform: bool = True) -> dict[str, str]:
    """Installed versions of Python and ``packages`` ('not installed' for absent ones)."""
    out = {"python": sys.version.split()[0]}
    if with_platform:
        out["platform"] = platform.platform()
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info() -> dict[str, Any]:
    """CPU/GPU description for the run record."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def provenance() -> dict[str, Any]:
    """Versions, git revision and device of this process, for ``run.json`` files."""
    return {"versions": versions(), "git": git_revision(), "device": device_info(), "argv": sys.argv}
