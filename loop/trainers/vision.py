"""Vision-language SFT in the training child (`method: vision`, run by `loop sft` on a vision source).

Rows (`job["data"]`, `job["heldout"]`): {"messages": JSON of structured turns (image and
text blocks), "images": paths, "max_side"}; images are opened here with the function
validation used (loop.problems.readers.images.open_image: RGB, longer side <= max_side).
- trl (CPU or GPU): the model as `AutoModelForImageTextToText`, the image-only Qwen2.5-VL
  processor (loop.vlm), a fresh PEFT LoRA on the layers `instruct.vision` selects
  (`lora_targets`), and TRL's SFTTrainer, which collates `messages` + `images` rows with
  its DataCollatorForVisionLanguageModeling (loss on every non-pad token: assistant-only
  loss for vision needs transformers >= 5.18).
- unsloth (CUDA): `FastVisionModel` with the course's switches (`unsloth_load_args`,
  `unsloth_peft_args`) and `UnslothVisionDataCollator`, `remove_unused_columns=False`,
  `dataset_kwargs={"skip_prepare_dataset": True}` (`unsloth_sft_args`).
`loop sft` jobs: held-out loss before and after, the fixed prompts (held-out rows with their images)
answered greedily before and after; a round's SFT on verified dashboard readings (no
`heldout`) continues `parent_adapter`. The adapter is saved like a text model's.
"""

from __future__ import annotations

import json
from typing import Any

from loop.problems.readers.images import open_image
from loop.progress import train_callback
from loop.trainers import choose_trainer
from loop.trainers import trl as trl_backend
from loop.trainers.instruct import before_and_after, instruct_args
from loop.vlm import load_processor

# instruct.vision switch -> the module-name patterns it adds (Qwen2.5-VL's names)
ATTENTION = {"vision": r"attn\.(qkv|proj)", "language": r"self_attn\.(q_proj|k_proj|v_proj|o_proj)"}
MLP = {"vision": r"mlp\.(gate_proj|up_proj|down_proj)", "language": r"mlp\.(gate_proj|up_proj|down_proj)"}
PREFIX = {"vision": r".*visual\.blocks\.\d+\.", "language": r".*language_model\.layers\.\d+\."}


def lora_targets(v: dict) -> str:
    """A PEFT `target_modules` regex from the course's four switches (as FastVisionModel reads them)."""
    parts = []
    for tower in ("vision", "language"):
        if not v[f"finetune_{tower}_layers"]:
            continue
        kinds = [ATTENTION[tower]] * v["finetune_attention_modules"] + [MLP[tower]] * v["finetune_mlp_modules"]
        parts += [PREFIX[tower] + k for k in kinds]
    if not parts:
        raise ValueError("instruct.vision: every finetune_* switch is off, so LoRA would train nothing")
    return "(" + "|".join(parts) + ")"


def unsloth_load_args(job: dict) -> dict:
    """FastVisionModel.from_pretrained arguments (16-bit LoRA, or 4-bit QLoRA by `lora.quant`)."""
    return dict(
        model_name=job["base"],
        load_in_4bit=job["lora"].get("quant") == "4bit",
        use_gradient_checkpointing="unsloth",
        max_seq_length=job["instruct"]["max_seq_len"],
    )


def unsloth_peft_args(job: dict) -> dict:
    """FastVisionModel.get_peft_model arguments: the course's switches, rank, alpha, seed."""
    v, lora = job["instruct"]["vision"], job["lora"]
    return dict(
        finetune_vision_layers=v["finetune_vision_layers"],
        finetune_language_layers=v["finetune_language_layers"],
        finetune_attention_modules=v["finetune_attention_modules"],
        finetune_mlp_modules=v["finetune_mlp_modules"],
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        bias="none",
        random_state=job["seed"],
        use_rslora=False,
        loftq_config=None,
    )


def vision_sft_args(job: dict, cuda: bool) -> dict:
    """SFTConfig arguments: instruction SFT's, plus what vision rows need. No truncation: cutting
    an example inside its image tokens breaks the model's image-feature count."""
    return dict(
        instruct_args(job, cuda),
        max_length=None,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )


def unsloth_sft_args(job: dict, cuda: bool) -> dict:
    return dict(vision_sft_args(job, cuda), dataset_text_field="")


def load_rows(path: str) -> list[dict[str, Any]]:
    """A snapshot's rows with their messages parsed and images opened (RGB, resized)."""
    import pyarrow.parquet as pq

    out = []
    for r in pq.read_table(path).to_pylist():
        images = [open_image(p, r["max_side"]) for p in r["images"]]
        out.append({"messages": json.loads(r["messages"]), "images": images})
    return out


def vision(job: dict) -> dict:
    if choose_trainer(job["backend"]) == "unsloth":
        # before _setup, which imports transformers and trl: unsloth patches only what comes after it
        import unsloth  # noqa: F401

        return _unsloth(job, trl_backend._setup(job))
    return _trl(job, trl_backend._setup(job))


def _trl(job: dict, cuda: bool) -> dict:
    model, processor, peft = trl_model(job)
    return _run(job, cuda, model, processor, peft, vision_sft_args(job, cuda), None)


def trl_model(job: dict):
    """(model, processor, LoRA config) for TRL: the VLM as `AutoModelForImageTextToText` with the
    image-only processor; the job's parent adapter continued (config None), else a fresh LoRA on
    the layers `instruct.vision` selects. Shared by vision SFT and vision GRPO."""
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(job["base"], dtype=trl_backend.base_dtype())
    processor = load_processor(job["base"])
    if job.get("parent_adapter"):  # a round continues the current adapter
        return PeftModel.from_pretrained(model, job["parent_adapter"], is_trainable=True), processor, None
    lora = job["lora"]
    peft = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora_targets(job["instruct"]["vision"]),
        task_type="CAUSAL_LM",
    )
    return model, processor, peft


def _unsloth(job: dict, cuda: bool) -> dict:
    from unsloth import FastVisionModel, UnslothVisionDataCollator  # first: it patches TRL

    model, processor = FastVisionModel.from_pretrained(**unsloth_load_args(job))
    model = FastVisionModel.get_peft_model(model, **unsloth_peft_args(job))
    FastVisionModel.for_training(model)
    collator = UnslothVisionDataCollator(model, processor)
    return _run(job, cuda, model, processor, None, unsloth_sft_args(job, cuda), collator)


def _run(job: dict, cuda: bool, model, processor, peft, args: dict, collator) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    train = Dataset.from_list(load_rows(job["data"]))
    held = Dataset.from_list(load_rows(job["heldout"])) if job.get("heldout") else None
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**args),
        train_dataset=train,
        eval_dataset=held,
        processing_class=processor,
        peft_config=peft,
        data_collator=collator,
        callbacks=[train_callback("train (vision SFT)"), trl_backend.step_timer()],
    )
    trl_backend._quiet(trainer)
    if held is None:  # a round's SFT on verified chains: no held-out split (the evaluate stage judges)
        metrics = trl_backend._finish(trainer, trainer.train(), len(train), job["tmp"])
    else:
        metrics = before_and_after(trainer, job, lambda m: answers(m, processor, job), shown)
    processor.tokenizer.save_pretrained(job["tmp"])
    return metrics


def shown(p: dict) -> str:
    """A fixed prompt as text: its last user turn's text, images as <image>."""
    turn = json.loads(p["messages"])[-1]
    return "".join("<image>" if b["type"] == "image" else b.get("text") or "" for b in turn["content"])


def answers(model, processor, job: dict) -> list[str]:
    """Greedy answers to the fixed prompts ({"messages", "images", "max_side"} each)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    for p in job["prompts"]:
        messages = json.loads(p["messages"])
        images = [open_image(i, p["max_side"]) for i in p["images"]]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = processor(text=[text], images=images or None, return_tensors="pt").to(model.device)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=job["instruct"]["max_new_tokens"], do_sample=False)
        out.append(processor.tokenizer.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    if was_training:
        model.train()
    return out
