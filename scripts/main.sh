#!/usr/bin/env bash
# The main job, from a fresh clone: venv, install, run. The install is skipped when
# nothing it depends on changed (a stamp in .venv holds a hash of pyproject.toml and the
# Python version; the package is installed in editable mode, so code changes need none).
# Default: `genvi vae`. Any genvi subcommand and options may be given instead, e.g.
# `bash scripts/main.sh quickstart`; options alone go to `genvi vae`, e.g.
# `bash scripts/main.sh --steps 500`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.genvi-install-stamp
WANT=$(.venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(), sys.version.split()[0])')
if [ ! -x .venv/bin/genvi ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
  echo "$WANT" > "$STAMP"
fi
exec .venv/bin/genvi "${@:-vae}"
