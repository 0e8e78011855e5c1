"""Unsloth backend (CUDA only): FastLanguageModel with 4-bit QLoRA or 16-bit LoRA,
driving TRL's SFTTrainer / GRPOTrainer (Unsloth patches them when imported first).

`lora.quant` picks `4bit` (QLoRA, bitsandbytes) or `16bit` (bf16 LoRA). A parent
adapter is continued by loading the adapter folder (Unsloth reads its base from
adapter_config.json) and keeping its LoRA weights trainable.
"""
from __future__ import annotations

import os
from pathlib import Path

from loop.trainers.trl import _common_args, _finish, _quiet, run_grpo, step_timer


GC = {"offload": "unsloth", "on": True, "off": False}  # train.gradient_checkpointing -> unsloth's argument
OFFLOAD_FROM_BYTES = 8 * 2**30  # auto: offload from this much base weight on disk (~2B fp32 / 4B bf16 params)


def gradient_checkpointing(job: dict) -> str | bool:
    """`auto`: off for small bases (measured on an H200, bench/train_gpu.py: GRPO 1.2-1.3x faster per
    step than unsloth's offload at <= half trl's memory, 135M and 1.5B), offload for large ones."""
    mode = job.get("gradient_checkpointing", "auto")
    if mode == "auto":
        size = sum(f.stat().st_size for f in Path(job["base"]).glob("*.safetensors"))
        mode = "offload" if size >= OFFLOAD_FROM_BYTES else "off"
    return GC[mode]


def _load(job: dict, max_seq_len: int):
    import unsloth  # noqa: F401 - must be imported before trl/transformers patches apply
    from unsloth import FastLanguageModel
    lora = job["lora"]
    four_bit = lora.get("quant", "16bit") == "4bit"
    src = job.get("parent_adapter") or job["base"]
    gc = gradient_checkpointing(job)
    model, tok = FastLanguageModel.from_pretrained(model_name=src, max_seq_length=max_seq_len,
                                                   load_in_4bit=four_bit, dtype=None, use_gradient_checkpointing=gc)
    if not job.get("parent_adapter"):
        targets = lora["target_modules"]
        if targets == "all-linear":
            targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = FastLanguageModel.get_peft_model(model, r=lora["r"], lora_alpha=lora["alpha"],
                                                 lora_dropout=lora["dropout"], target_modules=targets,
                                                 use_gradient_checkpointing=gc, random_state=job["seed"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _check_cuda() -> None:
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("the unsloth backend needs a CUDA GPU; use train.backend=trl on CPU")


PADDED_FROM_STEPS = 60  # padded SFT repays its ~25 s block compile from here (0.43 s/step saved, H200)


def padding_choice(job: dict) -> str | None:
    """UNSLOTH_PADDING_CHOICE for an SFT job, unless the user set it. Unsloth keeps padding-free
    batches on GPUs it has not measured (H100/H200), which launch kernels from Python and are
    host-bound at small micro batches: 0.64 s/step vs 0.21 padded on an H200 (1.5B, 16 x ~80
    tokens; bench/results/train_gpu_1p5b_sft_padded.json). Padded pays ~25 s of compile once."""
    if "UNSLOTH_PADDING_CHOICE" in os.environ:
        return None
    return "padded" if job["sft"]["max_steps"] >= PADDED_FROM_STEPS else None


def sft(job: dict) -> dict:
    _check_cuda()
    cfg = job["sft"]
    choice = padding_choice(job)
    if choice:
        os.environ["UNSLOTH_PADDING_CHOICE"] = choice  # this is the training child: nothing else sees it
    model, tok = _load(job, cfg["max_seq_len"])
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from loop.progress import train_callback
    ds = Dataset.from_parquet(job["data"])
    args = SFTConfig(**_common_args(_hf_args(job), cfg, True), gradient_accumulation_steps=cfg["grad_accum"],
                     max_length=cfg["max_seq_len"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[train_callback("train (SFT, unsloth)"), step_timer()])
    _quiet(trainer)
    return _finish(trainer, trainer.train(), len(ds), job["tmp"])


def grpo(job: dict) -> dict:
    _check_cuda()
    model, tok = _load(job, job["grpo"]["max_completion_length"] + 512)
    return run_grpo(_hf_args(job), model, tok, True, label="GRPO, unsloth")


def _hf_args(job: dict) -> dict:
    """The job as the shared trainer arguments see it: unsloth checkpoints in _load; HF's stays off."""
    return {**job, "gradient_checkpointing": "off"}
