# Two commands do everything on a fresh machine:
#   make demo   - set up .venv, then `loop start --rounds 5` on the embedded model (CPU)
#   make test   - set up .venv, then lint, types and the whole test suite (slow tests included; CI runs this)
# Also: make lint, make typecheck, make test-fast (no slow marker: a few minutes).
.PHONY: setup demo test test-fast test-all lint typecheck
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM = false
CODE = loop rewards store cli.py

# The test targets also build llama.cpp's llama-quantize and llama-completion (scripts/setup.sh,
# LOOP_BUILD_LLAMA_CPP): the GGUF k-quant exports and their llama.cpp consumer tests need them.
test test-all test-fast lint typecheck: export LOOP_BUILD_LLAMA_CPP ?= 1

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/loop start --rounds 5 --config configs/default.yaml
	.venv/bin/loop inspect --config configs/default.yaml

lint: setup
	.venv/bin/ruff check $(CODE) tests bench scripts
	.venv/bin/ruff format --check $(CODE)

typecheck: setup
	.venv/bin/python -m mypy

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

test-all: setup
	.venv/bin/python -m pytest -q

test: lint typecheck test-all
