#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install exactly what uv.lock pins:
# the toolkit (editable) with its test extra. Idempotent: a second run only checks the lock's hash.
# The lock is the only source of versions: refresh it with `nox -s lock` (or `uv lock --upgrade`)
# after editing pyproject.toml, and commit both.
#   BENCH_VENV   where the environment goes (default .venv)
#   BENCH_EXTRAS extras besides `test`, space separated (e.g. "postgres")
#   PYTHON       interpreter to build it from (default python3, >= 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BENCH_VENV:-.venv}"
PY="${PYTHON:-python3}"
UV_VERSION="$(sed -n '/^name = "uv"$/{n;s/^version = "\(.*\)"$/\1/p;q}' uv.lock)"
extras="test ${BENCH_EXTRAS:-}"
stamp="$VENV/.bench-installed"
want="$(cat pyproject.toml uv.lock | sha256sum | cut -d' ' -f1) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# uv itself is pinned in the lock (test extra), so `uv sync` keeps the copy that runs it.
if ! "$VENV/bin/uv" --version 2>/dev/null | grep -q " $UV_VERSION\b"; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
extra_args=()
for e in $extras; do extra_args+=(--extra "$e"); done
# --locked: stop if pyproject.toml and uv.lock disagree instead of silently re-resolving.
UV_PROJECT_ENVIRONMENT="$VENV" "$VENV/bin/uv" sync --locked --compile-bytecode --python "$VENV/bin/python" \
    "${extra_args[@]}" -q
echo "$want" > "$stamp"
echo "environment ready: $VENV (run: $VENV/bin/bench --help)"
