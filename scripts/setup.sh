#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install the toolkit with its
# test extra. Idempotent: a second run only checks that everything is installed.
# Uses uv when it can (fast; torch is ~4.7 GB), falls back to pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BENCH_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.bench-installed"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ ! -x "$VENV/bin/uv" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check uv || true
fi
if [ -x "$VENV/bin/uv" ]; then
    "$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" -e ".[test]"
else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
fi
echo "$want" > "$stamp"
echo "environment ready: $VENV (run: $VENV/bin/bench --help)"
