"""Unsloth backend (CUDA only): FastLanguageModel with 4-bit QLoRA or 16-bit LoRA,
driving TRL's SFTTrainer / GRPOTrainer (Unsloth patches them when imported first).

`lora.quant` picks `4bit` (QLoRA, bitsandbytes) or `16bit` (bf16 LoRA). A parent
adapter is continued by loading the adapter folder (Unsloth reads its base from
adapter_config.json) and keeping its LoRA weights trainable.

Unsloth reads its switches from the environment when it is imported, so the ones this
backend sets (only where the user has not) go in before `import unsloth`; this is the
training child, so nothing else sees them.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path

from loop.models import quiet_transformers
from loop.progress import train_callback
from loop.samplers.vllm import set_env
from loop.trainers import gpu
from loop.trainers.trl import _finish, _quiet, run_grpo, sft_args, step_timer, watch_device_memory

# train.gradient_checkpointing -> unsloth's argument
GC: dict[str, str | bool] = {"offload": "unsloth", "on": True, "off": False}
OFFLOAD_FROM_BYTES = 8 * 2**30  # auto (SFT): offload from this much base weight on disk (~2B fp32 / 4B bf16)


def gradient_checkpointing(job: dict) -> str | bool:
    """`auto`: GRPO offloads (about as fast, a fraction of the memory). SFT offloads from 8 GB of
    base weights; below, jobs long enough for CUDA graphs (COMPILE_FROM_STEPS) checkpoint and
    short eager ones do not (offload made eager steps slower than trl's). Numbers:
    bench/results/README.md."""
    mode = job.get("gradient_checkpointing", "auto")
    if mode == "auto":
        size = sum(f.stat().st_size for f in Path(job["base"]).glob("*.safetensors"))
        if job.get("method") == "grpo" or size >= OFFLOAD_FROM_BYTES:
            mode = "offload"
        else:
            mode = "on" if job.get("sft", {}).get("max_steps", 0) >= COMPILE_FROM_STEPS else "off"
    return GC[mode]


def varlen_attention() -> bool:
    """Whether a variable-length attention kernel is there for unsloth's packed batches:
    flash-attn, xformers, or torch's varlen_attn with GQA (torch >= 2.12)."""
    if importlib.util.find_spec("flash_attn") or importlib.util.find_spec("xformers"):
        return True
    try:
        import torch
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return False
    params = inspect.signature(varlen_attn).parameters
    return "enable_gqa" in params and "window_size" in params and torch.backends.cuda.is_flash_attention_available()


GRPO_COMPILE_FROM_STEPS = 500  # compiled GRPO blocks repay their ~22 s extra first step from here (H200)


def grpo_environ(job: dict, varlen: bool) -> dict[str, str]:
    """Unsloth switches for a GRPO job. Without a varlen kernel, unsloth's packed GRPO forward
    runs one SDPA call per equal-length run of sequences per layer, and re-checks itself
    against 64 per-row forwards whenever the packed length grows: slower than padded batches;
    the prefix grouper rides on packing and only adds compile time. Generation dominates a
    step, so compiled blocks save little per step for a much longer first step: jobs below
    GRPO_COMPILE_FROM_STEPS run eager blocks (bench/results/README.md)."""
    wanted = {} if varlen else {"UNSLOTH_GRPO_SEQ_PACKING": "0", "UNSLOTH_GRPO_PREFIX_GROUPER": "0"}
    if job["grpo"]["max_steps"] < GRPO_COMPILE_FROM_STEPS:
        wanted["UNSLOTH_BLOCK_COMPILE"] = "0"
    return _unset_only(wanted)


def _unset_only(wanted: dict[str, str]) -> dict[str, str]:
    """The switches the user has not set in the environment (theirs win)."""
    return {k: v for k, v in wanted.items() if k not in os.environ}


def _load(job: dict, max_seq_len: int, **fast):
    import unsloth  # noqa: F401 - must be imported before trl/transformers patches apply

    watch_device_memory()
    from unsloth import FastLanguageModel

    quiet_transformers()  # else every GRPO generate warns that max_new_tokens beats max_length
    lora = job["lora"]
    four_bit = lora.get("quant", "16bit") == "4bit"
    src = job.get("parent_adapter") or job["base"]
    gc = gradient_checkpointing(job)
    model, tok = FastLanguageModel.from_pretrained(
        model_name=src,
        max_seq_length=max_seq_len,
        load_in_4bit=four_bit,
        dtype=None,
        use_gradient_checkpointing=gc,
        **fast,
    )
    if not job.get("parent_adapter"):
        targets = lora["target_modules"]
        if targets == "all-linear":
            targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = FastLanguageModel.get_peft_model(
            model,
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=targets,
            use_gradient_checkpointing=gc,
            random_state=job["seed"],
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("the unsloth backend needs a CUDA GPU; use train.backend=trl on CPU")


COMPILE_FROM_STEPS = 100  # compiled blocks + CUDA graphs repay their ~5-15 s first step from here (H200)
GRAPH_PAD = 64  # pad_to_multiple_of under CUDA graphs when unset: few batch shapes, each one graph set


def sft_environ(job: dict, varlen: bool) -> dict[str, str]:
    """Unsloth switches for an SFT job. Without a varlen kernel, unsloth's padding-free batches
    (its choice on sm90) take the same per-length attention path as packed GRPO, so batches
    are padded. On an H200 (torch 2.11, 1.5B, 16 x ~80 tokens; bench/results/train_gpu_1p5b_sft*.json)
    a step is host-bound: 0.51 s padding-free, 0.19 padded eager, 0.17 compiled, 0.08 compiled
    with per-block CUDA graphs (trl 0.20-0.22), whose first step costs 5-15 s more; on 120
    steps of ~80-460-token chains 0.10 s vs eager 0.20, trl 0.23 (train_gpu_1p5b_sft_defaults.json).
    Jobs from COMPILE_FROM_STEPS get compiled blocks with graphs, shorter ones stay eager.
    A value the user has set is left alone."""
    if varlen:
        return {}
    wanted = {"UNSLOTH_PADDING_CHOICE": "padded"}
    if job["sft"]["max_steps"] >= COMPILE_FROM_STEPS:
        wanted |= {"UNSLOTH_BLOCK_COMPILE": "1", "UNSLOTH_BLOCK_CUDAGRAPHS": "1"}
    else:
        wanted["UNSLOTH_BLOCK_COMPILE"] = "0"
    return _unset_only(wanted)


def sft_shapes(job: dict, environ: Mapping[str, str]) -> dict:
    """The job with SFT batches padded to multiples of GRAPH_PAD tokens where per-block CUDA
    graphs are on and the user set no multiple: unsloth records a graph set per batch shape
    and turns graphs off past 8 shapes (UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES)."""
    cfg = job["sft"]
    if environ.get("UNSLOTH_BLOCK_CUDAGRAPHS") != "1" or cfg.get("pad_to_multiple_of"):
        return job
    return {**job, "sft": {**cfg, "pad_to_multiple_of": GRAPH_PAD}}


def sft(job: dict) -> dict:
    _check_cuda()
    os.environ.update(sft_environ(job, varlen_attention()))  # the training child: nothing else sees it
    job = sft_shapes(job, os.environ)
    model, tok = _load(job, job["sft"]["max_seq_len"])
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_parquet(job["data"])
    args = SFTConfig(**sft_args(_hf_args(job), True))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[train_callback("train (SFT, unsloth)"), step_timer()],
    )
    _quiet(trainer)
    return _finish(trainer, trainer.train(), len(ds), job["tmp"])


def fast_inference(job: dict) -> dict:
    """from_pretrained arguments for GRPO generation through unsloth's vLLM engine (the course
    notebook's fast_inference=True; its LoRA weights are shared with the engine, not copied), or
    {} for Hugging Face generate (loop.trainers.gpu.generation_engine decides)."""
    if gpu.generation_engine(job, True, auto=gpu.AUTO["unsloth"]) != "vllm":
        return {}
    import torch

    set_env()  # in-process engine core, quiet logs
    if (job["grpo"].get("generation") or {}).get("standby"):
        os.environ.update(_unset_only({"UNSLOTH_VLLM_STANDBY": "1"}))
    share = gpu.engine_share(job["base"], job, torch.cuda.mem_get_info()[1])
    rank = job["lora"]["r"]
    if job.get("parent_adapter"):
        rank = json.loads((Path(job["parent_adapter"]) / "adapter_config.json").read_text()).get("r", rank)
    # unsloth sizes max_num_seqs from the share (32 at the 6 % of an H200 that a 1.5B job gets, so a
    # 64-completion step ran in two waves, bench/results/train_gpu_grpo_vllm.log): one wave per step
    seqs = max(job["grpo"]["batch_size"], job["grpo"]["num_generations"])
    return dict(
        fast_inference=True,
        gpu_memory_utilization=share,
        max_lora_rank=rank,
        enforce_eager=vllm_eager(job),
        max_num_seqs=seqs,
    )


GRPO_VLLM_GRAPHS_FROM_STEPS = 0  # always graphs: eager decode made steps 5x slower (below)


def vllm_eager(job: dict) -> bool:
    """The GRPO job's vLLM engine without CUDA graphs / torch.compile: LOOP_GRPO_VLLM_EAGER (1/0),
    else for jobs below GRPO_VLLM_GRAPHS_FROM_STEPS steps. Eager steps were several times slower
    for the same job start (bench/results/README.md): graphs always."""
    env = os.environ.get("LOOP_GRPO_VLLM_EAGER")
    if env in ("0", "1"):
        return env == "1"
    return job["grpo"]["max_steps"] < GRPO_VLLM_GRAPHS_FROM_STEPS


def preload(job: dict) -> None:
    """What a job of this kind imports before its model loads (a warm worker does it ahead of
    its first job: loop.trainers.worker): the job's unsloth switches first, as the job sets them."""
    _check_cuda()
    environ = sft_environ if job.get("method") == "sft" else grpo_environ
    os.environ.update(environ(job, varlen_attention()))
    import unsloth  # noqa: F401 - it imports trl and transformers itself, after its patches (as in _load)


def grpo(job: dict) -> dict:
    _check_cuda()
    os.environ.update(grpo_environ(job, varlen_attention()))
    fast = fast_inference(job)
    model, tok = _load(job, job["grpo"]["max_completion_length"] + 512, **fast)
    generation = ("vllm-unsloth", {"use_vllm": True}) if fast else ("hf", {})
    return run_grpo(_hf_args(job), model, tok, True, label="GRPO, unsloth", generation=generation)


def _hf_args(job: dict) -> dict:
    """The job as the shared trainer arguments see it: unsloth checkpoints in _load; HF's stays off."""
    return {**job, "gradient_checkpointing": "off"}
