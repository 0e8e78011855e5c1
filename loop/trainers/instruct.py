"""Instruction SFT in the training child (`method: instruct`, run by `loop sft`).

TRL's SFTTrainer with a fresh LoRA on conversational `prompt`/`completion` rows (the
model's chat template; loss on the completion only) or, with the Alpaca template, plain
prompt/completion text ending in EOS. The held-out rows (`job["heldout"]`, never trained
on) give the loss and perplexity before and after training; the fixed prompts
(`job["prompts"]`: chat messages or Alpaca text) are answered greedily before and after.
The course's schedule: linear with warm-up, weight decay, adamw_8bit on a GPU and
adamw_torch on CPU (`optim: auto`). Uses the trl backend's helpers; adds no lines to it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

from loop.progress import train_callback
from loop.trainers import trl as trl_backend


def instruct_args(job: dict, cuda: bool) -> dict:
    """SFTConfig arguments: the shared SFT ones with the course's schedule and optimizer."""
    cfg = job["instruct"]
    sft = {
        "max_steps": cfg["max_steps"],
        "batch_size": cfg["batch_size"],
        "learning_rate": cfg["learning_rate"],
        "grad_accum": cfg["grad_accum"],
        "max_seq_len": cfg["max_seq_len"],
        "pad_to_multiple_of": None,
    }
    args = trl_backend.sft_args({**job, "sft": sft}, cuda)
    optim = cfg["optim"] if cfg["optim"] != "auto" else ("adamw_8bit" if cuda and _has_bnb() else "adamw_torch")
    return dict(
        args,
        lr_scheduler_type=cfg["lr_scheduler"],
        warmup_steps=cfg["warmup_steps"],
        weight_decay=cfg["weight_decay"],
        optim=optim,
        per_device_eval_batch_size=cfg["batch_size"],
        eval_strategy="no",
    )


def _has_bnb() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def instruct(job: dict) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cuda = trl_backend._setup(job)
    model, peft_config, tok = trl_backend._model_and_peft(job)
    train, held = Dataset.from_parquet(job["data"]), Dataset.from_parquet(job["heldout"])
    if job["instruct"]["template"] == "alpaca":  # EOS always ends a completion
        train, held = (d.map(lambda x: {"completion": _with_eos(x["completion"], tok)}) for d in (train, held))
    args = SFTConfig(**instruct_args(job, cuda))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=held,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[train_callback("train (instruct SFT)"), trl_backend.step_timer()],
    )
    trl_backend._quiet(trainer)
    metrics = before_and_after(trainer, job, lambda m: answers(m, tok, job), _shown)
    tok.save_pretrained(job["tmp"])
    return metrics


def before_and_after(trainer, job: dict, answer: Callable, shown: Callable) -> dict:
    """Train; held-out loss/perplexity and the fixed prompts' answers (`answer(model)`) before
    and after; the adapter saved into job["tmp"]. Shared by instruction and vision SFT."""
    before_loss, before = trainer.evaluate()["eval_loss"], answer(trainer.model)
    result = trainer.train()
    after_loss, after = trainer.evaluate()["eval_loss"], answer(trainer.model)
    metrics = trl_backend._finish(trainer, result, len(trainer.train_dataset), job["tmp"])
    prompts = [{"prompt": shown(p), "before": b, "after": a} for p, b, a in zip(job["prompts"], before, after)]
    return {
        **metrics,
        "heldout_rows": len(trainer.eval_dataset),
        "heldout_loss_before": before_loss,
        "heldout_loss_after": after_loss,
        "heldout_ppl_before": math.exp(before_loss),
        "heldout_ppl_after": math.exp(after_loss),
        "optim": trainer.args.optim,
        "prompts": prompts,
    }


def _with_eos(text: str, tok) -> str:
    return text if text.endswith(tok.eos_token) else text + tok.eos_token


def _shown(p) -> str:
    return p if isinstance(p, str) else p[-1]["content"]


def answers(model, tok, job: dict) -> list[str]:
    """Greedy answers to the fixed prompts (chat messages, or Alpaca prompt text)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    for p in job["prompts"]:
        text = p if isinstance(p, str) else tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.no_grad():
            gen = model.generate(
                **ids, max_new_tokens=job["instruct"]["max_new_tokens"], do_sample=False, pad_token_id=tok.pad_token_id
            )
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    if was_training:
        model.train()
    return out
