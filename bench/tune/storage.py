"""Where studies live: a local SQLite file by default, any Optuna RDB URL, or a journal file.

Dead workers: with an RDB storage (SQLite, PostgreSQL, MySQL) every running trial records a
heartbeat every ``heartbeat_seconds``; a RUNNING trial without one for ``grace_seconds`` belongs to
a killed worker and is marked FAIL by the next worker that looks (Optuna's ``fail_stale_trials``),
so resuming a killed study keeps all finished trials and re-runs only the lost one. Journal files
(``journal:PATH``, useful on NFS where SQLite locking is unreliable) have no heartbeat in Optuna:
a trial left RUNNING by a killed worker stays RUNNING there and is simply not counted as finished.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

from bench.errors import BenchError

JOURNAL_PREFIX = "journal:"


def default_storage(out: str | Path, study: str) -> str:
    """``sqlite:///<out>/tune/<study>.db`` (absolute, so workers started elsewhere find it)."""
    path = (Path(out) / "tune" / f"{study}.db").resolve()
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for printing and run records)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def open_storage(url: str, heartbeat_seconds: int = 30, grace_seconds: int = 120) -> Any:
    """An Optuna storage for ``url``; BenchError for malformed URLs and missing database drivers."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        if not path.name:
            raise BenchError(f"--storage {url}: give a file, e.g. journal:runs/tune/study.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise BenchError(
            f"--storage '{redact(url)}': expected an Optuna RDB URL (sqlite:///path.db, "
            "postgresql://user:password@host/db, mysql://...) or journal:PATH"
        )
    kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes write one SQLite file; wait for its lock instead of failing at once.
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_seconds, grace_period=grace_seconds
                    )
            except ImportError:
                raise
            except Exception:
                # Workers started together race to create the schema of a new database (the loser
                # gets a UNIQUE constraint error on alembic_version); the second try finds it made.
                if attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except ImportError as e:
        cause = e.__cause__ or e
        hint = (
            "install the postgres extra: BENCH_EXTRAS=postgres bash scripts/setup.sh (or pip install 'bench-sv[postgres]')"
            if url.startswith("postgres")
            else "install that database's SQLAlchemy driver"
        )
        raise BenchError(f"--storage {redact(url)}: database driver missing ({cause}); {hint}") from None
    except Exception as e:  # sqlalchemy's errors: bad URL, unreachable server, refused login
        raise BenchError(
            f"--storage {redact(url)}: cannot open ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None


def heartbeat_enabled(storage: Any) -> bool:
    return getattr(storage, "heartbeat_interval", None) is not None


def fail_stale(study: Any, storage: Any) -> None:
    """Mark trials of dead workers FAIL (``storage`` is an RDB one with a heartbeat; else a no-op)."""
    import optuna

    if heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def load_study(name: str, url: str) -> Any:
    """An existing study (``bench tune --show``); BenchError listing the studies that are there."""
    import optuna

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise BenchError(f"no study storage at {path}; pass --storage (and --out) as given to bench tune")
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise BenchError(f"no study '{name}' in {redact(url)}; studies there: {', '.join(names) or 'none'}") from None
