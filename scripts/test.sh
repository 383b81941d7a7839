#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, install, lint, tests, notebooks, docs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/ruff check genvi tests benchmarks
.venv/bin/ruff format --check genvi tests benchmarks
.venv/bin/pyright
# pytest exits 5 when it collects no test: that must fail CI, and it does (set -e).
.venv/bin/python -m pytest -q -n 2 --dist loadfile tests
if [ -d notebooks ] && ls notebooks/*.ipynb >/dev/null 2>&1; then
  GENVI_CI=1 .venv/bin/python -m pytest -q --nbmake notebooks
fi
if [ -f mkdocs.yml ]; then
  .venv/bin/mkdocs build --strict -q
fi
