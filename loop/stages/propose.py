"""Propose stage: round r's problems, stored with the round's membership in one transaction.

Sources come from loop.problems (procedural, seed files); a `self` source or
`propose.curriculum.resample_max > 0` adds the proposer's plan (loop.proposer): problems
the model wrote, earlier problems re-added in the pass-rate band, and retirements.
Held-out expressions and questions are never proposed.
"""

from __future__ import annotations

from loop import cancel
from loop.context import RunContext, StageResult
from loop.problems.evalsets import all_heldout
from loop.problems.procedural import heldout_keys
from loop.problems.sources import propose
from loop.proposer import plan_round
from store import stats


def stage(ctx: RunContext, r: int) -> StageResult:
    cfg = ctx.cfg
    held = all_heldout(cfg.evaluate)  # every evaluation set, files included: never proposed
    exclude = heldout_keys(held)
    problems = propose(cfg.propose.sources, seed=ctx.round_seed(r, "propose"), exclude=exclude)
    cancel.check()
    plan = None
    if cfg.propose.curriculum.resample_max or any(
        s.kind == "self" or (s.kind == "code" and s.model_count) for s in cfg.propose.sources
    ):
        plan = plan_round(ctx, r, problems, held, exclude)
        problems += plan.problems
    rows = [
        {
            "problem_id": p.problem_id,
            "source": p.source,
            "kind": p.kind,
            "level": p.level,
            "question": p.question,
            "answer": p.answer,
            "meta": p.meta,
        }
        for p in problems
    ]
    ids = list(dict.fromkeys([p.problem_id for p in problems] + (plan.resample if plan else [])))
    members = [{"run_id": ctx.run_id, "round": r, "problem_id": pid} for pid in ids]
    info = {"problems": len(ids), "sources": sorted({p.source for p in problems})} | (plan.info if plan else {})
    extra = plan.tables if plan else {}

    def write(store) -> None:
        store.insert_rows("problems", rows)
        store.insert_rows("round_problems", members)
        for table, table_rows in extra.items():
            store.insert_rows(table, table_rows)
        stats.record_proposed(store, ctx.run_id, r)

    return ctx.commit(r, "propose", info, write)
