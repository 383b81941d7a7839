#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, install, lint, docs (notebooks run into
# them), tests. About 10 minutes on 2 cores after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# Headless Chromium for tests/test_docs_render.py (Debian's package). CI runs this script as
# root on Debian: install it there when it is missing. Elsewhere those tests skip, saying so.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the docs' browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "no chromium: tests/test_docs_render.py's browser tests will skip" >&2
  fi
fi
.venv/bin/ruff check genvi tests benchmarks
.venv/bin/ruff format --check genvi tests benchmarks
.venv/bin/pyright
# The documentation site, with the notebooks run top to bottom into their pages (small step
# counts under GENVI_CI): a notebook cell that fails fails the build, as a broken page or a
# warning does (--strict). tests/test_docs_render.py then opens this site in a browser.
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
NO_MKDOCS_2_WARNING=1 GENVI_CI=1 GENVI_DOCS_EXECUTE=true GENVI_DOCS_CACHE=false \
  .venv/bin/mkdocs build --strict -q -d "$SITE"
# The unit and statistical tests, last, so their summary closes the output. pytest exits 5
# when it collects no test: with set -e that fails the run, as it must. The 25 slowest tests
# are listed, to keep the suite within its time.
GENVI_DOCS_SITE="$SITE" .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 tests
