"""A round's training rows for a vision-language model, and the job settings they train with.

`vision_examples(chains, metas)`: each chain ({problem_id, prompt, completion}) whose problem
has an image in its meta (a `dashboard` problem) -> {"problem_id", "messages": JSON of the
structured turns (the image block before the question), "images", "image_sha256",
"max_side"}, the rows loop.trainers.vision reads; chains without an image keep their text
turns. `round_vision_settings(cfg)`: the vision child's `instruct` block from `train.sft`
(steps, batch, lr, accumulation, length) with a constant schedule as a round's SFT has, and
`instruct.vision`'s layer switches.
`grpo_vision_examples(problems, metas)`: GRPO rows ({problem_id, prompt, answer, pass_rate}, as
the text path's) plus "image" (the problem's image path; None without one), "image_sha256" and
"max_side", the rows loop.trainers.vision_grpo reads. `vision_job(method, job, cfg)`: the job
keys a VLM's round job changes: `vision` (SFT) or `vision-grpo` (GRPO, trl only: `train.backend`
or `train.grpo.backend` = unsloth is refused here, before anything trains), and its `instruct`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loop.samplers.hf_vision import IMAGE_MAX_SIDE


def _meta(metas: dict[str, Any], problem_id: str) -> dict[str, Any]:
    """A problem's meta as a dict (pipeline.problem_meta gives the stored JSON text)."""
    meta = metas.get(problem_id) or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def vision_examples(chains: list[dict[str, Any]], metas: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in chains:
        meta = _meta(metas, c["problem_id"])
        turns = [_blocks(m) for m in [*c["prompt"], *c["completion"]]]
        images = [meta["image"]] if meta.get("image") else []
        if images:  # the image before the question, as the sampler showed it
            turns[-2]["content"].insert(0, {"type": "image"})
        out.append(
            {
                "problem_id": c["problem_id"],
                "messages": json.dumps(turns, ensure_ascii=False),
                "images": images,
                "image_sha256": [meta["image_sha256"]] if images else [],
                "max_side": IMAGE_MAX_SIDE,
            }
        )
    return out


def _blocks(turn: dict[str, Any]) -> dict[str, Any]:
    """Every turn's content as a list of blocks (one column type for the whole dataset)."""
    content = turn["content"]
    return {
        "role": turn["role"],
        "content": [{"type": "text", "text": content}] if isinstance(content, str) else list(content),
    }


def round_vision_settings(cfg) -> dict[str, Any]:
    sft = cfg.train.sft
    return {
        **cfg.instruct.model_dump(mode="json", exclude={"sources"}),
        "max_steps": sft.max_steps,
        "batch_size": sft.batch_size,
        "grad_accum": sft.grad_accum,
        "learning_rate": sft.learning_rate,
        "max_seq_len": sft.max_seq_len,
        "lr_scheduler": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
    }


def grpo_vision_examples(problems: list[dict[str, Any]], metas: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in problems:
        meta = _meta(metas, p["problem_id"])
        image = meta.get("image")
        out.append({**p, "image": image, "image_sha256": meta.get("image_sha256"), "max_side": IMAGE_MAX_SIDE})
    return out


def vision_job(method: str, job: Mapping[str, Any], cfg) -> dict[str, Any]:
    """The keys of a VLM's round job that differ from a text model's (merged into the job)."""
    if method == "sft":
        return {"method": "vision", "instruct": round_vision_settings(cfg)}
    if job["backend"] == "unsloth":
        raise ValueError(
            "train.grpo.backend: GRPO on a vision-language model trains with trl (TRL GRPOTrainer + PEFT); "
            "set train.grpo.backend=trl"
        )
    vision = cfg.instruct.vision.model_dump(mode="json")
    return {"method": "vision-grpo", "backend": "trl", "instruct": {"vision": vision}}
