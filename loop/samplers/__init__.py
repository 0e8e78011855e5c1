"""The sampler contract: what every backend (one file each in this package) implements.

A backend is
- constructed with (model_dir, adapter_dir | None, config.sample, config.model);
- `generate(prompts, params, progress) -> list[list[Completion]]`: one list of
  `params.n` completions per prompt (a prompt is a list of chat messages), in
  order; `progress(k)` is called as k more completions finish;
- `set_adapter(adapter_dir)` switches to a new LoRA adapter without a restart
  where the backend can; `close()` frees the engine;
- optional `served_model`: set by a backend whose endpoint serves its own weights
  (openai: a teacher); its samples record `model_version = "<backend>:<name>"`, and
  evaluation runs the trained model on a local backend (eval_backend).
Results are reproducible for a given `params.seed` on the same backend/dtype.
A completion's text excludes the stop string that ended it (OpenAI semantics).
Budget forcing (`thinking_budget`, `num_waits`; see loop.samplers.budget) is
applied by the hf and vllm backends and recorded in each `Completion.meta`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loop.vlm import is_vision_model


@dataclass
class SamplingParams:
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    thinking_budget: int | None = None  # cap on tokens before `</reasoning>`; then it is forced
    num_waits: int = 0  # times a `</reasoning>` is replaced by "Wait"
    answer_tokens: int = 32  # extra tokens for the answer after a forced `</reasoning>`

    @property
    def budgeted(self) -> bool:
        return self.thinking_budget is not None or self.num_waits > 0

    def as_dict(self) -> dict[str, Any]:
        d = {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "stop": list(self.stop),
        }
        if self.budgeted:
            d.update(thinking_budget=self.thinking_budget, num_waits=self.num_waits, answer_tokens=self.answer_tokens)
        return d


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    meta: dict[str, Any] = field(default_factory=dict)  # backend extras (budget, waits)


class Sampler(Protocol):
    name: str

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, progress: Callable[[int], None] | None = None
    ) -> list[list[Completion]]: ...
    def set_adapter(self, adapter_dir: str | Path | None) -> None: ...
    def close(self) -> None: ...


BACKENDS: dict[str, str] = {  # name -> module path:class; imported lazily
    "hf": "loop.samplers.hf:HFSampler",
    "vllm": "loop.samplers.vllm:VLLMSampler",
    "openai": "loop.samplers.openai:OpenAISampler",
    "hf-vision": "loop.samplers.hf_vision:HFVisionSampler",  # chosen for a VLM folder (build_sampler)
}
CHOSEN_ONLY = {"hf-vision"}  # never named in sample.backend: build_sampler picks it for a vision model


class SamplerError(RuntimeError):
    pass


def choose_backend(name: str) -> str:
    """`auto` picks vllm when importable, else hf."""
    if name != "auto":
        if name not in BACKENDS or name in CHOSEN_ONLY:
            valid = ", ".join(sorted(set(BACKENDS) - CHOSEN_ONLY))
            raise SamplerError(f"unknown sampler backend {name!r}; valid: auto, {valid}")
        return name
    if "vllm" in BACKENDS and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "hf"


def eval_backend(eval_name: str, sample_name: str) -> str:
    """The backend that evaluates the trained (local) model: `evaluate.backend`, or for auto the
    sample stage's when it runs the local model; an endpoint (openai) serves its own weights."""
    if eval_name != "auto":
        return choose_backend(eval_name)
    sample = choose_backend(sample_name)
    return "auto" if sample == "openai" else sample


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (Linux flags); elsewhere assume not."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def sample_dtype(backend: str, sample_cfg, model_cfg) -> str:
    """The dtype a backend samples in: `sample.dtype`, or for `auto` the model's, except vllm on a
    bf16-capable CPU, where bfloat16 decodes faster than float32 (bench/results/README.md)."""
    if sample_cfg.dtype != "auto":
        return sample_cfg.dtype
    if backend == "vllm" and model_cfg.dtype == "float32":
        import torch

        if not torch.cuda.is_available() and cpu_has_bf16():
            return "bfloat16"
    return model_cfg.dtype


def build_sampler(name: str, model_dir, adapter_dir, sample_cfg, model_cfg) -> Sampler:
    backend = choose_backend(name)
    # A vision model (images in the prompts) samples with HF generate and its processor; openai has no folder.
    if model_dir is not None and is_vision_model(model_dir):
        if name not in ("auto", "hf"):
            raise SamplerError(f"{model_dir}: a vision-language model samples with `hf` (or auto) only, not {name!r}")
        backend = "hf-vision"
    mod, cls = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(mod), cls)(model_dir, adapter_dir, sample_cfg, model_cfg)
