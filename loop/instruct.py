"""`loop sft`: one-shot instruction SFT on your data (the `instruct` config section).

Every `instruct.sources` file is read and mapped first (loop.problems.sources.validate_sources:
a bad file fails in seconds, naming file, line and column, before the store is opened).
Rows are split, seeded by `instruct.seed`, into `instruct.heldout` held-out rows that never
train and the training rows; the job runs in the training child (`method: instruct`,
loop.trainers.instruct) from a fresh LoRA on the base model, and the adapter is recorded
as a model version of the run (kind lora, parent = the base, `config.method = instruct`,
`config.data` = each source's files with sha256, encoding and rows), so `loop export model`
exports it like any other and it becomes the run's current model. Its metrics hold the
held-out loss/perplexity and the fixed prompts' answers, before and after
(`loop inspect sft`). Vision sources (loop.problems.vision) train a vision-language model
(`method: vision`, loop.trainers.vision): rows are the structured turns with image paths and
hashes, the fixed prompts are the first held-out rows with their images. Templates: the
model's chat template (`template: chat`, conversational prompt/completion rows) or the course's
Alpaca prompt (`template: alpaca`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from loop.config import Config
from loop.models import model_hash
from loop.problems import ProposeError
from loop.problems.seeds import is_vision, source_conversations
from loop.problems.sources import validate_sources
from loop.runner import finished_rounds, open_run
from loop.trainers.chains import data_hash, write_snapshot
from loop.trainers.job import TrainJob
from loop.trainers.launch import run_child
from loop.trainers.rows import to_row
from loop.vlm import is_vision_model


def gather(cfg: Config) -> list[dict[str, Any]]:
    """Every source's conversations (a seeded sample of `limit` rows where set), in source order."""
    out: list[dict[str, Any]] = []
    for k, src in enumerate(cfg.instruct.sources):
        convs = source_conversations(src)
        if src.limit and src.limit < len(convs):
            convs = random.Random(cfg.instruct.seed + k).sample(convs, src.limit)
        out += [with_system(c, cfg.prompt.system) for c in convs]
    return out


def with_system(conv: dict[str, Any], system: str | None) -> dict[str, Any]:
    """`prompt.system` before a conversation that has no system message of its own (a source's
    `system` and a row's own win); unchanged when unset."""
    msgs = conv["messages"]
    if not system or (msgs and msgs[0]["role"] == "system"):
        return conv
    return {**conv, "messages": [{"role": "system", "content": system}, *msgs]}


def split(convs: list[dict[str, Any]], heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): `heldout` rows drawn by the seed; the rest, in order, train."""
    if len(convs) <= heldout:
        raise ProposeError(
            f"instruct: {len(convs)} rows, not more than instruct.heldout={heldout}: nothing would train"
        )
    held_idx = set(random.Random(seed).sample(range(len(convs)), heldout))
    return ([c for i, c in enumerate(convs) if i not in held_idx], [c for i, c in enumerate(convs) if i in held_idx])


def fixed_prompts(cfg: Config, held: list[dict[str, Any]]) -> list[Any]:
    """The prompts answered before and after: `instruct.prompts` (with the first source's system
    prompt) or the first three held-out rows' prompts, rendered for the template."""
    system = next((s.system for s in cfg.instruct.sources if s.system), None) or cfg.prompt.system
    if cfg.instruct.prompts:
        convs = [
            {
                "messages": ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": p}, {"role": "assistant", "content": ""}]
            }
            for p in cfg.instruct.prompts
        ]
    else:
        convs = held[:3]
    return [to_row(c, cfg.instruct.template)["prompt"] for c in convs]


def vision_row(conv: dict[str, Any]) -> dict[str, Any]:
    """A vision conversation as the child's row: structured turns (JSON), image paths and hashes."""
    return {
        "messages": json.dumps(conv["messages"], ensure_ascii=False),
        "images": conv["images"],
        "image_sha256": [i["sha256"] for i in conv["meta"]["images"]],  # the data hash covers the pixels
        "max_side": conv["max_side"],
    }


def vision_prompts(held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first three held-out rows without their last (assistant) turn, with their images."""
    return [{**vision_row(c), "messages": json.dumps(c["messages"][:-1], ensure_ascii=False)} for c in held[:3]]


def check_model(base_dir: Path, vision: bool, template: str) -> None:
    if vision != is_vision_model(base_dir):
        want = "a vision-language model (with preprocessor_config.json)" if vision else "a text model"
        raise ProposeError(
            f"{base_dir}: instruct.sources are {'vision' if vision else 'text'} data but the model is not {want}; "
            "set model.name to match (e.g. a local Qwen2.5-VL folder, or tiny:qwen2.5-vl)"
        )
    if not vision:
        check_template(base_dir, template)


def check_template(base_dir: Path, template: str) -> None:
    if template != "chat":
        return
    has = (base_dir / "chat_template.jinja").is_file() or "chat_template" in _json(base_dir / "tokenizer_config.json")
    if not has:
        raise ProposeError(
            f"{base_dir}: the model has no chat template; set `instruct.template: alpaca` "
            f"(the Alpaca prompt text) or use an instruct model"
        )


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_sft(cfg: Config) -> dict[str, Any]:
    """Validate the sources, train, record the adapter as a model version; return its info."""
    if not cfg.instruct.sources:
        raise ProposeError("instruct.sources is empty: add a `kind: file` source (e.g. configs/alpaca.yaml)")
    data = validate_sources(cfg.instruct.sources, chat=True)
    train, held = split(gather(cfg), cfg.instruct.heldout, cfg.instruct.seed)
    vision = any(is_vision(s) for s in cfg.instruct.sources)
    if vision and cfg.instruct.prompts:
        raise ProposeError(
            "instruct.prompts are text-only; with vision sources the first held-out rows (with their images) "
            "are answered before and after: leave instruct.prompts empty"
        )
    ctx = open_run(cfg, need_template=cfg.instruct.template == "chat" and not vision)  # alpaca: no template
    try:
        check_model(ctx.base_dir, vision, cfg.instruct.template)
        return _train(ctx, cfg, data, train, held, vision)
    finally:
        ctx.close()


def _train(ctx, cfg: Config, data: list[dict], train: list[dict], held: list[dict], vision: bool) -> dict[str, Any]:
    template = cfg.instruct.template
    convert = vision_row if vision else (lambda c: to_row(c, template))
    rows, held_rows = [convert(c) for c in train], [convert(c) for c in held]
    method: Literal["vision", "instruct"] = "vision" if vision else "instruct"
    backend = cfg.instruct.vision.backend if vision else "trl"
    dhash = data_hash(rows)
    work, out = ctx.run_dir / "sft" / dhash, ctx.run_dir / "models" / f"sft-{dhash}"
    write_snapshot(rows, work / "data.parquet")
    write_snapshot(held_rows, work / "heldout.parquet")
    job = TrainJob(
        method=method,
        backend=backend,
        base=str(ctx.base_dir),
        parent_adapter=None,
        data=str(work / "data.parquet"),
        out=str(out),
        seed=cfg.instruct.seed,
        threads=cfg.run.threads,
        lora=cfg.train.lora.model_dump(mode="json"),
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        instruct=cfg.instruct.model_dump(mode="json", exclude={"sources"}),
        heldout=str(work / "heldout.parquet"),
        prompts=vision_prompts(held) if vision else fixed_prompts(cfg, held),
        report_to=list(cfg.train.report_to),  # TRL's logs to train.report_to, as a round's jobs
        tracker_dir=str(ctx.run_dir / "tracker" / f"sft-{dhash}"),
    )
    metrics = run_child(job, work / "job.json", cfg.run.threads, cfg.train.launcher)
    version, r = model_hash(out), finished_rounds(ctx.store, ctx.run_id)
    config: dict[str, Any] = {
        "method": method,
        "backend": backend,
        "template": "processor" if vision else cfg.instruct.template,
        "lora": job["lora"],
        "instruct": job["instruct"],
        "data": data,
        "train_rows": len(rows),
        "heldout_rows": len(held_rows),
        "heldout_hash": data_hash(held_rows),
        "system": [s.system for s in cfg.instruct.sources],
    }
    if vision:  # each image trained or held out, by content hash
        config["images"] = sorted({(p, h) for r in rows + held_rows for p, h in zip(r["images"], r["image_sha256"])})
    row = {
        "model_version": version,
        "parent": ctx.base_version,
        "run_id": ctx.run_id,
        "round": r,
        "kind": "lora",
        "base_path": str(ctx.base_dir),
        "path": str(out),
        "data_hash": dhash,
        "config": config,
        "metrics": {**metrics, "accepted": True},
    }
    info = {
        "model_version": version,
        "round": r,
        "examples": len(rows),
        "data": data,
        "vision": vision,
        **_brief(metrics),
    }
    return ctx.commit(r, f"sft.{version}", info, lambda store: store.insert_rows("models", [row]))


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "heldout_rows",
        "heldout_loss_before",
        "heldout_loss_after",
        "heldout_ppl_before",
        "heldout_ppl_after",
        "steps",
        "runtime_s",
        "optim",
        "train_loss",
        "first_loss",
        "last_loss",
        "step_times",
        "peak_memory_gb",
        "device_peak_gb",
        "prompts",
    )
    return {k: m.get(k) for k in keys}
