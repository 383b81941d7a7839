#!/usr/bin/env bash
# The main job, from a fresh clone: venv, install, run (default: genvi vae; any genvi
# subcommand and options may be given instead, e.g. `bash scripts/main.sh quickstart`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/genvi "${@:-vae}"
