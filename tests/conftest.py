"""Shared pytest set-up: single-threaded torch (the suite runs on 2 cores) and fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield


# ------------------------------------------------------------------ every JSON written is strict RFC 8259


class NonStandardJSON(ValueError):
    """A NaN / Infinity / -Infinity token: Python's json accepts it, strict parsers (RFC 8259) do not."""


def _refuse_constant(token: str) -> None:
    raise NonStandardJSON(token)


def strict_json_problems(root) -> list[str]:
    """``path: token`` for every ``*.json`` under ``root`` holding a non-standard number token.

    Files that are not JSON at all (tests write corrupt files on purpose) are not this check's concern.
    """
    import json
    from pathlib import Path

    bad = []
    for p in sorted(Path(root).rglob("*.json")):
        try:
            json.loads(p.read_text(), parse_constant=_refuse_constant)
        except NonStandardJSON as e:
            bad.append(f"{p}: {e}")
        except (ValueError, OSError):
            pass
    return bad


@pytest.fixture(autouse=True)
def _strict_json_in_tmp_path(request):
    """After each test that used ``tmp_path``: every JSON file written there parses strictly."""
    # asked for before the test runs, so tmp_path is torn down after this check
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None:
        bad = strict_json_problems(path)
        if bad:
            pytest.fail("non-standard JSON written (NaN/Infinity tokens):\n" + "\n".join(bad))


@pytest.fixture(autouse=True, scope="session")
def _strict_json_in_session(tmp_path_factory):
    """At the end of the session: the same over every temporary folder (module fixtures included)."""
    yield
    bad = strict_json_problems(tmp_path_factory.getbasetemp())
    if bad:
        pytest.fail("non-standard JSON written (NaN/Infinity tokens):\n" + "\n".join(bad))
