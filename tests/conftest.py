"""Shared fixtures. Tests run single-threaded: on 2 busy cores torch's default
2 threads ran 10-20x slower than 1."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture
def tiny_cfg(tmp_path):
    """The tiny config, writing into a temporary run directory."""
    from loop.config import load_config
    return load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={tmp_path / 'run'}"])
