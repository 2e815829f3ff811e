#!/usr/bin/env bash
# One-line start on a fresh machine: creates .venv, installs, and serves the UI + API.
#   ./run.sh                 → http://127.0.0.1:7860
#   ./run.sh --host 0.0.0.0  → reachable on the LAN
#   ./run.sh test            → set up and run the whole test suite (same as .ci/run)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.e2v-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "${1:-}" = "test" -a ! -f .venv/.e2v-test-installed ]; then
  python -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
  python -m pip install -q "torch==2.13.0"
  if [ "${1:-}" = "test" ]; then
    python -m pip install -q -e ".[test,bench,ray]" && touch .venv/.e2v-test-installed
  else
    python -m pip install -q -e .
  fi
  touch "$stamp"
fi
if [ "${1:-}" = "test" ]; then
  shift
  exec bash tests/run_tests.sh "$@"
fi
exec python app.py "$@"
