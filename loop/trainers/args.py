"""Which TRL trainer arguments loop sets itself, and what to use instead (`train.*extra_args`).

Contract:
- `OWNED[method]` maps each SFTConfig / GRPOConfig argument loop derives from its own config
  (or from the device) to the field that sets it; `owned_error(key, scope)` is the message for
  an `extra_args` key that is one of them (None for a key loop leaves to the user).
- `DEFAULTS` are arguments loop sets but `extra_args` may override (lr schedule, warm-up, ...).
- `extra_args(job, method)`: the mapping the trainer applies over loop's own arguments,
  `train.extra_args` then `train.<method>.extra_args` (the method's wins).
No imports: loop.config reads OWNED at load; the TRL-backed checks live in
loop.trainers.check_args.
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, str] = {
    "output_dir": "nothing: loop trains in the job's scratch folder and publishes the adapter itself",
    "max_steps": "train.{m}.max_steps",
    "per_device_train_batch_size": "train.{m}.batch_size",
    "learning_rate": "train.{m}.learning_rate",
    "save_strategy": "nothing: loop saves the adapter at the end of each job (models/round-N-METHOD)",
    "report_to": "train.report_to",
    "use_cpu": "nothing: loop picks it from the device (CPU when no CUDA)",
    "bf16": "nothing: loop picks it from the device (bf16 on CUDA)",
    "seed": "run.seed (each round's job derives its seed from it)",
    "data_seed": "run.seed (each round's job derives its seed from it)",
    "gradient_checkpointing": "train.gradient_checkpointing",
}
OWNED: dict[str, dict[str, str]] = {
    "sft": {
        **_COMMON,
        "gradient_accumulation_steps": "train.sft.grad_accum",
        "max_length": "train.sft.max_seq_len",
        "pad_to_multiple_of": "train.sft.pad_to_multiple_of",
    },
    "grpo": {
        **_COMMON,
        "num_generations": "train.grpo.num_generations",
        "max_completion_length": "train.grpo.max_completion_length",
        "beta": "train.grpo.beta",
        "temperature": "train.grpo.temperature",
        "reward_weights": "verify.rewards[].weight",
        "use_vllm": "train.grpo.generation.engine",
        "vllm_mode": "train.grpo.generation.engine",
        "vllm_gpu_memory_utilization": "train.grpo.generation.gpu_memory_utilization",
        "vllm_max_model_length": "train.grpo.max_completion_length (plus the prompt budget)",
        "vllm_enable_sleep_mode": "train.grpo.generation.standby",
    },
}
# set by loop, but only as a default: extra_args overrides them
DEFAULTS = frozenset(
    {"lr_scheduler_type", "warmup_steps", "logging_steps", "disable_tqdm", "dataloader_num_workers", "run_name"}
    | {"log_completions"}
)


def owned_error(key: str, scope: str) -> str | None:
    """The error for `key` in `scope` (`train.extra_args`, `train.sft.extra_args`, ...) when loop
    owns it, naming the field to set instead; None when the key is the user's to set."""
    methods = [m for m in OWNED if scope in ("train.extra_args", f"train.{m}.extra_args")]
    instead = [OWNED[m][key].replace("{m}", m) for m in methods if key in OWNED[m]]
    if not instead:
        return None
    uses = " / ".join(dict.fromkeys(instead))  # one per method, same text once
    return f"{scope}.{key}: set by loop, not passed through; use {uses}"


def extra_args(job: dict, method: str) -> dict[str, Any]:
    """`train.extra_args` overlaid with `train.<method>.extra_args` (as the job carries them)."""
    return {**(job.get("extra_args") or {}), **((job.get(method) or {}).get("extra_args") or {})}
