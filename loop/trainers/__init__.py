"""Training backends, one per file. Each module exposes `sft(job) -> metrics` and
`grpo(job) -> metrics`, reads the job's Parquet snapshot, and saves a LoRA adapter
(PEFT format) into `job["tmp"]`; the caller publishes it atomically."""

from __future__ import annotations

import importlib
import importlib.util

BACKENDS: dict[str, str] = {
    "trl": "loop.trainers.trl",  # TRL + PEFT LoRA, CPU or GPU
    "unsloth": "loop.trainers.unsloth",  # Unsloth FastLanguageModel, CUDA only
}


def choose_trainer(name: str) -> str:
    """`auto`: unsloth when CUDA is there and it imports, else trl."""
    if name != "auto":
        if name not in BACKENDS:
            raise ValueError(f"unknown train backend {name!r}; valid: auto, {', '.join(sorted(BACKENDS))}")
        return name
    if importlib.util.find_spec("unsloth") is not None:
        import torch

        if torch.cuda.is_available():
            return "unsloth"
    return "trl"


def load_backend(name: str):
    return importlib.import_module(BACKENDS[choose_trainer(name)])
