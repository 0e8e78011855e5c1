"""Sample stage: a GRPO group of G completions per problem, through one backend (loop.samplers).

Every sample row carries its provenance: model version and parent, backend, sampling
parameters with dtype, prompt template version, loop version. A sample id hashes (run,
round, problem, index, model version), so a resumed stage rewrites nothing.
"""

from __future__ import annotations

import hashlib

from loop import __version__, cancel
from loop.context import RunContext, StageResult
from loop.progress import bar
from loop.prompts import problem_messages, prompt_version
from loop.samplers import SamplingParams
from store import pipeline, stats


def stage(ctx: RunContext, r: int) -> StageResult:
    cfg = ctx.cfg.sample
    problems = pipeline.round_problems(ctx.store, ctx.run_id, r)
    sampler = ctx.sampler()
    served = getattr(sampler, "served_model", None)  # an endpoint's own weights: a teacher's samples
    version = f"{sampler.name}:{served}" if served else ctx.current_model()[0]
    parent = None if served else ctx.model_parent(version)
    params = SamplingParams(
        n=cfg.group_size,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=ctx.round_seed(r, "sample"),
        thinking_budget=cfg.budget.thinking_tokens,
        num_waits=cfg.budget.waits,
        answer_tokens=cfg.budget.answer_tokens,
    )
    with bar(f"round {r}: sample ({sampler.name})", len(problems) * params.n) as advance:
        groups = sampler.generate(
            [problem_messages(p, ctx.cfg.prompt.system) for p in problems], params, cancel.ticking(advance)
        )
    sampling = params.as_dict() | {"dtype": getattr(sampler, "dtype", None)}  # provenance
    rows = []
    for p, group in zip(problems, groups):
        for idx, c in enumerate(group):
            sid = hashlib.sha256(f"{ctx.run_id}:{r}:{p['problem_id']}:{idx}:{version}".encode()).hexdigest()[:20]
            rows.append(
                {
                    "sample_id": sid,
                    "run_id": ctx.run_id,
                    "round": r,
                    "problem_id": p["problem_id"],
                    "idx": idx,
                    "model_version": version,
                    "model_parent": parent,
                    "loop_version": __version__,
                    "backend": sampler.name,
                    "sampling": sampling,
                    "prompt_version": prompt_version(ctx.cfg.prompt.system),
                    "completion": c.text,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "finish_reason": c.finish_reason,
                    "meta": c.meta,
                }
            )
    info = {
        "samples": len(rows),
        "backend": sampler.name,
        "model_version": version,
        "completion_tokens": sum(x["completion_tokens"] for x in rows),
    }

    def write(store) -> None:
        store.insert_rows("samples", rows)
        stats.refresh_round(store, ctx.run_id, r)

    return ctx.commit(r, "sample", info, write)
