"""Nox sessions. Torch is large, so every session reuses the one environment made by
scripts/setup.sh (.venv) instead of building its own; `perf` layers its peers (SpeechBrain,
scikit-learn) in .venv-perf on top of .venv so they never enter the main environment."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
PERF_VENV = ROOT / ".venv-perf"
nox.options.sessions = ["lint", "types", "tests", "doctests"]
# the docstring examples of every module (bench/__main__.py, the CLI entry, is left out in conftest.py)
DOCTEST_PACKAGES = ["bench", "losses", "models", "reports"]


def _setup(session: nox.Session) -> None:
    session.run("bash", str(ROOT / "scripts" / "setup.sh"), external=True)


def _py(venv: Path = VENV) -> str:
    return str(venv / "bin" / "python")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The fast suite (slow tests deselected)."""
    _setup(session)
    session.run(_py(), "-m", "pytest", "-q", "-m", "not slow", *session.posargs, external=True)


@nox.session(venv_backend="none")
def doctests(session: nox.Session) -> None:
    """Every docstring example in bench/, losses/, models/, reports/ (a few seconds)."""
    _setup(session)
    session.run(_py(), "-m", "pytest", "-q", "--doctest-modules", *DOCTEST_PACKAGES, *session.posargs, external=True)


@nox.session(venv_backend="none")
def types(session: nox.Session) -> None:
    """mypy --strict over the files listed in pyproject.toml's [tool.mypy]."""
    _setup(session)
    session.run(str(VENV / "bin" / "mypy"), *session.posargs, external=True)


@nox.session(venv_backend="none")
def slow(session: nox.Session) -> None:
    """Only the slow tests (training runs, fault injection, screenshots)."""
    _setup(session)
    session.run(_py(), "-m", "pytest", "-q", "-m", "slow", *session.posargs, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree, and the lock check."""
    _setup(session)
    session.run(str(VENV / "bin" / "ruff"), "check", ".", external=True)
    session.run(str(VENV / "bin" / "ruff"), "format", "--check", ".", external=True)
    session.run(str(VENV / "bin" / "uv"), "lock", "--check", external=True)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The README's demo: synthetic corpus, four losses, report."""
    _setup(session)
    session.run(str(VENV / "bin" / "bench"), "demo", *session.posargs, external=True)


PERF_PEERS = ["speechbrain", "scikit-learn", "memray"]


def _perf_env(session: nox.Session) -> None:
    """.venv-perf: a venv that sees .venv's packages through a .pth file, plus the peers."""
    if not (PERF_VENV / "bin" / "python").exists():
        session.run(sys.executable, "-m", "venv", str(PERF_VENV), external=True)
    base = next((VENV / "lib").glob("python*/site-packages"))
    site = next((PERF_VENV / "lib").glob("python*/site-packages"))
    # addsitedir (not a bare path line) so that .venv's own .pth files run too: the editable install
    # of bench is one, and without it `bench` imports only from the repository root.
    (site / "_bench_base.pth").write_text(f"import site; site.addsitedir({str(base.resolve())!r})\n")
    session.run(_py(PERF_VENV), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PERF_PEERS, external=True)


@nox.session(venv_backend="none")
def perf(session: nox.Session) -> None:
    """Benchmark suite beside its peers; writes BENCHMARKS.md and BENCHMARKS.json."""
    _setup(session)
    _perf_env(session)
    session.run(_py(PERF_VENV), "-m", "bench", "perf", *session.posargs, external=True)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Refresh uv.lock from pyproject.toml (pass --upgrade to move every pin); commit both files."""
    _setup(session)
    session.run(str(VENV / "bin" / "uv"), "lock", *session.posargs, external=True)
