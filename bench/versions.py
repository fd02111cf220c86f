"""Versions of the toolkit and its engine, and the torch / torchaudio pairing check.

torch and torchaudio are one binary pair: a torchaudio built for another torch release fails with
an ``undefined symbol`` deep inside its C++ extension. ``uv.lock`` pins them together; this module
turns a mismatch that slipped in (a hand-installed package) into one line saying how to fix it.
"""

from __future__ import annotations

from importlib import metadata

from bench.errors import BenchError


def _release(dist: str) -> str | None:
    try:
        return metadata.version(dist).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def check_torch_pair() -> None:
    """Raise a one-line :class:`BenchError` when torch and torchaudio are not the same release.

    Both versions are read from package metadata (nothing is imported), so this costs
    milliseconds and runs before any command.
    """
    torch_v, audio_v = _release("torch"), _release("torchaudio")
    if torch_v is None or audio_v is None:
        missing = "torch" if torch_v is None else "torchaudio"
        raise BenchError(f"{missing} is not installed; run: bash scripts/setup.sh")
    if torch_v != audio_v:
        raise BenchError(
            f"torch {torch_v} and torchaudio {audio_v} are not a matching pair (their compiled parts "
            "would not load); reinstall the locked versions: bash scripts/setup.sh"
        )


def version_line() -> str:
    """``bench X (torch A, torchaudio B, CUDA C, numpy D)`` for ``bench --version``."""
    import numpy
    import torch

    cuda = torch.version.cuda or "none"
    if torch.cuda.is_available():
        cuda += f", {torch.cuda.device_count()} GPU(s)"
    else:
        cuda += " (no GPU visible)" if torch.version.cuda else ""
    return (
        f"bench {_release('bench-sv')} (torch {_release('torch')}, torchaudio {_release('torchaudio')}, "
        f"CUDA {cuda}, numpy {numpy.__version__})"
    )
