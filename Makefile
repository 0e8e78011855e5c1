# Two commands do everything on a fresh machine:
#   make demo   - set up .venv, then `loop start --rounds 5` on the embedded model (CPU)
#   make test   - set up .venv, then the whole test suite (slow tests included)
.PHONY: setup demo test
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM = false

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/loop start --rounds 5 --config configs/default.yaml
	.venv/bin/loop inspect --config configs/default.yaml

test: setup
	.venv/bin/python -m pytest -q
