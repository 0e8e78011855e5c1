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
(`loop inspect sft`). Templates: the model's chat template (`template: chat`, conversational
prompt/completion rows) or the course's Alpaca prompt (`template: alpaca`).
"""

from __future__ import annotations

import random
from typing import Any

from loop.config import Config
from loop.models import model_hash
from loop.problems import ProposeError
from loop.problems.seeds import source_conversations
from loop.problems.sources import validate_sources
from loop.runner import finished_rounds, open_run
from loop.trainers.chains import data_hash, write_snapshot
from loop.trainers.job import TrainJob
from loop.trainers.launch import run_child
from loop.trainers.rows import to_row


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


def run_sft(cfg: Config) -> dict[str, Any]:
    """Validate the sources, train, record the adapter as a model version; return its info."""
    if not cfg.instruct.sources:
        raise ProposeError("instruct.sources is empty: add a `kind: file` source (e.g. configs/alpaca.yaml)")
    data = validate_sources(cfg.instruct.sources, chat=True)
    train, held = split(gather(cfg), cfg.instruct.heldout, cfg.instruct.seed)
    ctx = open_run(cfg, need_template=cfg.instruct.template == "chat")  # alpaca: prompt text, no template
    try:
        return _train(ctx, cfg, data, train, held)
    finally:
        ctx.close()


def _train(ctx, cfg: Config, data: list[dict], train: list[dict], held: list[dict]) -> dict[str, Any]:
    template = cfg.instruct.template
    rows, held_rows = [to_row(c, template) for c in train], [to_row(c, template) for c in held]
    dhash = data_hash(rows)
    work, out = ctx.run_dir / "sft" / dhash, ctx.run_dir / "models" / f"sft-{dhash}"
    write_snapshot(rows, work / "data.parquet")
    write_snapshot(held_rows, work / "heldout.parquet")
    job = TrainJob(
        method="instruct",
        backend="trl",
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
        prompts=fixed_prompts(cfg, held),
        report_to=list(cfg.train.report_to),  # TRL's logs to train.report_to, as a round's jobs
        tracker_dir=str(ctx.run_dir / "tracker" / f"sft-{dhash}"),
    )
    metrics = run_child(job, work / "job.json", cfg.run.threads, cfg.train.launcher)
    version, r = model_hash(out), finished_rounds(ctx.store, ctx.run_id)
    config = {
        "method": "instruct",
        "backend": "trl",
        "template": cfg.instruct.template,
        "lora": job["lora"],
        "instruct": job["instruct"],
        "data": data,
        "train_rows": len(rows),
        "heldout_rows": len(held_rows),
        "heldout_hash": data_hash(held_rows),
        "system": [s.system for s in cfg.instruct.sources],
    }
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
    info = {"model_version": version, "round": r, "examples": len(rows), "data": data, **_brief(metrics)}
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
        "prompts",
    )
    return {k: m.get(k) for k in keys}
