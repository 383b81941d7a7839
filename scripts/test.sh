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
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q
# Notebooks run top to bottom, with small step counts under GENVI_CI.
GENVI_CI=1 .venv/bin/python -m pytest -q -p no:cacheprovider --nbmake notebooks
# The unit and statistical tests, last, so their summary closes the output. pytest exits 5
# when it collects no test: with set -e that fails the run, as it must.
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests
