#!/usr/bin/env bash
# One-line start on a fresh machine: creates .venv, installs, and serves the UI + API.
#   ./run.sh                 → http://127.0.0.1:7860
#   ./run.sh --host 0.0.0.0  → reachable on the LAN
#   ./run.sh test [ARGS]     → set up and run the whole test suite (what .ci/run runs);
#                              ARGS go to pytest
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
mode=serve
if [ "${1:-}" = "test" ]; then
  mode=test
  shift
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if [ "$mode" = test ]; then
  target=".[test,bench,ray,onnx]"; stamp=.venv/.e2v-test-installed
else
  target="."; stamp=.venv/.e2v-installed
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
  # (A CUDA build of 2.13.0 already in .venv satisfies the pin and is kept.)
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e "$target"
  touch "$stamp"
fi
if [ "$mode" = test ]; then
  exec bash tests/run_tests.sh "$@"
fi
exec python app.py "$@"
