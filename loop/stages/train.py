"""Train stage: distillation SFT, GRPO and proposer GRPO after a round, each its own recorded step.

The stage picks the training set from the store (loop.trainers.chains for SFT; problems
whose pass rate in the round lay strictly inside `train.grpo.band` for GRPO; the proposer's recent
prompts from the `proposals` table for proposer GRPO, loop.trainers.proposer), writes it as
a Parquet snapshot (SFT: plus `train.sft.mix`'s instruction rows, weighted per source), runs
the job in a child process or the warm worker (loop.trainers.launch, `train.worker`) and
registers the adapter as a new model version (parent, data hash, config, metrics) in the same
transaction that marks the step done. A sampler holding the GPU releases it meanwhile. On a
vision-language model (loop.vlm) both methods train on the problems' images: SFT as `vision`,
GRPO as `vision-grpo` (loop.trainers.vision_rows).
"""

from __future__ import annotations

import json
from typing import Any

from loop import tracking
from loop.context import RunContext, StageResult
from loop.models import model_hash
from loop.prompts import messages
from loop.rounds import due
from loop.trainers import choose_trainer, launch
from loop.trainers.chains import data_hash, select_chains, write_snapshot
from loop.trainers.job import Method, TrainJob
from loop.trainers.launch import run_child
from loop.trainers.rows import mix_examples
from loop.trainers.vision_rows import grpo_vision_examples, vision_examples, vision_job
from loop.vlm import is_vision_model
from store import pipeline, proposals


def stage(ctx: RunContext, r: int) -> StageResult:
    """SFT, GRPO, then proposer GRPO after round r, each when due; each its own recorded step."""
    cfg = ctx.cfg.train
    info: StageResult = {}
    methods: list[tuple[Method, int]] = [("sft", cfg.sft.every), ("grpo", cfg.grpo.every)]
    if cfg.proposer.every:  # off (the default): no step of its own, runs look as they did before it
        methods.append(("proposer", cfg.proposer.every))
    for method, every in methods:
        step = f"train.{method}"
        if ctx.is_done(r, step):
            continue
        if not due(every, r):
            info[method] = ctx.commit(r, step, {"skipped": f"train.{method}.every={every}"})
            continue
        examples = EXAMPLES[method](ctx, r)
        if not examples:
            info[method] = ctx.commit(r, step, {"skipped": NONE[method]})
            continue
        info[method] = _train(ctx, r, method, examples)
    return ctx.commit(r, "train", info)


def sft_examples(ctx: RunContext, r: int) -> list[dict[str, Any]]:
    first = 1 if ctx.cfg.train.sft.replay else r
    rows = pipeline.verified_chains(ctx.store, ctx.run_id, first, r)
    chains = select_chains(rows, ctx.cfg.train.sft.select, ctx.round_seed(r, "select"), ctx.cfg.prompt.system)
    return chains + mix_examples(ctx.cfg.train.sft.mix, len(chains), ctx.round_seed(r, "mix"))


def grpo_examples(ctx: RunContext, r: int) -> list[dict[str, Any]]:
    lo, hi = ctx.cfg.train.grpo.band
    rows = pipeline.problems_in_band(ctx.store, ctx.run_id, r, lo, hi)
    return [
        {
            "problem_id": x["problem_id"],
            "prompt": messages(x["question"], ctx.cfg.prompt.system),
            "answer": x["answer"],
            "pass_rate": x["pass_rate"],
        }
        for x in rows
    ]


def proposer_examples(ctx: RunContext, r: int) -> list[dict[str, Any]]:
    """The proposer's recent prompts (train.proposer.prompts of them), as GRPO rows; none for a VLM."""
    if is_vision_model(ctx.base_dir):
        return []
    chats = proposals.recent_prompts(ctx.store, ctx.run_id, r, ctx.cfg.train.proposer.prompts)
    return [{"prompt": json.loads(c) if isinstance(c, str) else c} for c in chats]


EXAMPLES = {"sft": sft_examples, "grpo": grpo_examples, "proposer": proposer_examples}
NONE = {"sft": "no verified chains", "grpo": "no problem in band", "proposer": "no self proposals"}


def prestart(ctx: RunContext, r: int) -> list[str]:
    """Start the warm workers that round r's first job per backend will go to, importing what it
    imports while the stages before training run (launch.prestart); the backends started."""
    cfg, seen = ctx.cfg.train, set()
    started: list[str] = []
    if is_vision_model(ctx.base_dir) or ctx.is_done(r, "train"):
        return started
    methods: list[tuple[Method, int]] = [("sft", cfg.sft.every), ("grpo", cfg.grpo.every)]
    for method, every in methods:
        if not due(every, r) or ctx.is_done(r, f"train.{method}"):
            continue
        work = ctx.run_dir / "train" / f"round-{r:03d}-{method}"
        job = _job(ctx, r, method, str(work / "data.parquet"), str(ctx.run_dir / "models" / work.name))
        backend = choose_trainer(job["backend"])
        if backend in seen:  # its first job's worker; a later job of another flavor replaces it then
            continue
        seen.add(backend)
        if method == "grpo":  # TRL's engine built while round 0 runs, where that is safe (train.grpo.generation.early)
            job["grpo"]["generation"]["early"] = cfg.grpo.generation.early and no_measuring_engine(ctx.cfg)
        if launch.prestart(job, work / "prestart.json", ctx.cfg.run.threads, cfg.launcher, cfg.worker):
            started.append(backend)
    return started


def no_measuring_engine(cfg) -> bool:
    """Whether no vLLM engine of the run's sampling or evaluation sizes its KV cache by measuring free
    memory (which counts what an engine starting beside it takes): sample.vllm.kv_cache_gib is set,
    or both sample with something else than vLLM."""
    if cfg.sample.vllm.kv_cache_gib:
        return True
    sampler = cfg.sample.backend
    evaluator = cfg.evaluate.backend
    if evaluator == "auto":  # the sample stage's backend where it runs the local model, else vllm
        evaluator = sampler if sampler in ("hf", "vllm") else "vllm"
    return sampler in ("hf", "openai") and evaluator == "hf"


def _job(ctx: RunContext, r: int, method: Method, data: str, out: str) -> TrainJob:
    cfg = ctx.cfg.train
    _, parent_adapter = ctx.current_model()
    backend = getattr(cfg, method).backend if method == "grpo" else None  # train.grpo.backend overrides
    backend = "trl" if method == "proposer" else backend  # loop.trainers.proposer builds on trl's model and LoRA
    job = TrainJob(
        method=method,
        backend=backend or cfg.backend,
        base=str(ctx.base_dir),
        parent_adapter=str(parent_adapter) if parent_adapter else None,
        data=data,
        out=out,
        seed=ctx.round_seed(r, method),
        threads=ctx.cfg.run.threads,
        lora=cfg.lora.model_dump(mode="json"),
        gradient_checkpointing=cfg.gradient_checkpointing,
        rewards=[x.model_dump(mode="json") for x in ctx.cfg.verify.rewards],
        report_to=list(cfg.report_to),
        tracker_dir=str(tracking.trainer_dir(ctx.run_dir, r, method)),
        extra_args=dict(cfg.extra_args),  # train.extra_args; the method's own ride in job[method]
    )
    job[method] = getattr(cfg, method).model_dump(mode="json")  # the method's own settings: job["sft"], ...
    if method == "proposer":
        job["proposer"]["system"] = ctx.cfg.prompt.system  # the solver's prompt, as the sample stage's
    return job


def _train(ctx: RunContext, r: int, method: Method, examples: list[dict[str, Any]]) -> StageResult:
    parent_version, _ = ctx.current_model()
    work = ctx.run_dir / "train" / f"round-{r:03d}-{method}"
    vision = is_vision_model(ctx.base_dir)
    out = ctx.run_dir / "models" / f"round-{r:03d}-{method}"
    job = _job(ctx, r, method, str(work / "data.parquet"), str(out))
    if vision:  # the rows with their problems' images (loop.trainers.vision, loop.trainers.vision_grpo)
        job.update(vision_job(method, job, ctx.cfg))  # type: ignore[typeddict-item]  # the same keys, vision values
        metas = pipeline.problem_meta(ctx.store, [e["problem_id"] for e in examples])
        examples = (vision_examples if method == "sft" else grpo_vision_examples)(examples, metas)
    write_snapshot(examples, work / "data.parquet")
    with ctx.gpu_released():  # a sleeping vLLM engine leaves the GPU to the training child
        metrics = run_child(
            job, work / "job.json", ctx.cfg.run.threads, ctx.cfg.train.launcher, worker=ctx.cfg.train.worker
        )
    version = model_hash(out)
    info = {"model_version": version, "parent": parent_version, "examples": len(examples), **metrics}
    row = {
        "model_version": version,
        "parent": parent_version,
        "run_id": ctx.run_id,
        "round": r,
        "kind": "lora",
        "base_path": str(ctx.base_dir),
        "path": str(out),
        "data_hash": data_hash(examples),
        "config": {
            "method": job["method"],
            "backend": job["backend"],
            "lora": job["lora"],
            method: job[method],
            "extra_args": job["extra_args"],
        },
        "metrics": {**metrics, "accepted": True},
    }
    return ctx.commit(r, f"train.{method}", info, lambda store: store.insert_rows("models", [row]))
