"""Self-proposed problems: the current model writes, solves and checks its own problems.

Contract (the propose stage, loop/stages/propose.py, calls `plan_round` once per round):
- Proposer role: for each `kind: self` source, the current model (`ctx.sampler()`)
  is prompted with `shots` few-shot examples, rendered as earlier chat turns in the
  format of `loop.proposer.gate.render`, and asked for ONE new problem with a
  one-line answer program. Examples are problems with a program that have at least
  one verified sample in this run; while fewer than `shots` exist, the procedural
  generator's problems (with their programs) and a few starter word problems fill
  in. The system prompt carries `band_hint(...)` over the pass rates of earlier
  self-proposed problems. Generation runs in waves of WAVE_FACTOR x the problems
  still needed (at most `sample.batch_size`; GEN_PER_PROMPT completions per prompt,
  each prompt its own few-shot draw) until `count` are kept or `count * attempts`
  were drawn.
- Every completion is parsed and gated (`loop.proposer.gate`: dedup, near-dup,
  decontamination, program/number agreement, `loop.sandbox.run` twice, gold
  check), then, with `agreement: majority | second_program`, vetted against the
  solver's majority answer or a second program (`loop.proposer.agreement`; votes
  on the row), and recorded as one `proposals` row, kept or rejected with its
  reason; valid completions beyond the quota are recorded as 'quota'.
- Ancestry: every proposal row (self and code) records `shots`, the few-shot examples its
  prompt showed, in prompt order: {problem_id (None for a starter or procedural code program),
  source, sha256 of the shown turn} (loop.proposer.generate.Shot; migration 009).
- Code proposer: a `kind: code` source with `model_count > 0` also asks the model for
  programs with inputs (loop.proposer.programs); each kept program gives one task per kind,
  its references the sandbox's outputs; every completion is a `proposals` row too.
- Curriculum: pass rates per (problem, round) come from the `problem_pass_rates`
  view (judged samples); `loop.problems.curriculum.select_for_resampling` picks up to
  `propose.curriculum.resample_max` earlier problems to sample again and the
  problems to retire (recorded once in `retirements`). A problem's band is its source
  kind's `propose.curriculum.bands` entry, else `band`; the self proposer's hint uses
  the `self` band.
- Nothing is written here: `plan_round` returns rows; the stage commits them with
  its step in one transaction.

Proposer training (GRPO): `loop.proposer.training.grpo_dataset(store, run_id)` returns rows
{prompt, completion, pass_rate, ...}: the prompt the proposer saw, the proposal it
wrote, and its problem's pass rate in the round it was proposed. TRL passes extra
dataset columns to reward functions by name, so
`GRPOTrainer(reward_funcs=[loop.problems.curriculum.proposer_learnability],
train_dataset=Dataset.from_list(rows))` rewards with learnability 4p(1-p)
(0 at 0 or 1; None, skipped, for rejected proposals). That reward is the stored
proposal's (off-policy): every fresh completion of a row gets the same value, so a GRPO
group's advantages are all zero. The loop's own proposer training (`train.proposer`,
loop.trainers.proposer) is on-policy: `LearnabilityReward(solve)` gates each fresh
completion like the stage does and asks `solve(question, answer) -> pass_rate` of the
policy being trained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loop.problems.curriculum import select_for_resampling, source_kind, track
from loop.problems.seeds import load_jsonl
from loop.proposer import programs
from loop.proposer.agreement import Agreement
from loop.proposer.gate import Gate
from loop.proposer.generate import (
    PROPOSER_VERSION,
    STARTERS,
    build_prompt,
    fewshot_pool,
    generate,
    proposal_rows,
    run_program,
    steering_hint,
)
from loop.proposer.training import LearnabilityReward, grpo_dataset
from store import proposals

__all__ = [
    "PROPOSER_VERSION",
    "STARTERS",
    "LearnabilityReward",
    "RoundPlan",
    "build_prompt",
    "fewshot_pool",
    "grpo_dataset",
    "plan_round",
    "run_program",
]


@dataclass
class RoundPlan:
    problems: list = field(default_factory=list)  # kept self-proposed Problems
    resample: list[str] = field(default_factory=list)  # earlier problem ids sampled again
    tables: dict[str, list[dict]] = field(default_factory=dict)  # extra rows: proposals, retirements
    info: dict[str, Any] = field(default_factory=dict)


def curriculum_plan(ctx, r: int) -> tuple[list[str], list[dict]]:
    """(problem ids to resample, retirement rows) from pass rates of rounds before r."""
    cur = ctx.cfg.propose.curriculum
    retired = proposals.retired_ids(ctx.store, ctx.run_id)
    stats = {k: v for k, v in track(proposals.pass_rate_rows(ctx.store, ctx.run_id, r)).items() if k not in retired}
    resample, retire = select_for_resampling(stats, tuple(cur.band), cur.retire_after, kind_bands(ctx, stats))
    rows = [
        {
            "run_id": ctx.run_id,
            "problem_id": pid,
            "round": r,
            "reason": why,
            "history": [list(h) for h in stats[pid].history],
        }
        for pid, why in retire
    ]
    return resample[: cur.resample_max], rows


def kind_bands(ctx, ids) -> dict[str, tuple[float, float]]:
    """problem_id -> its source kind's band (`propose.curriculum.bands`), for the problems in `ids`
    whose kind has one."""
    cur = ctx.cfg.propose.curriculum
    if not cur.bands:
        return {}
    sources = proposals.problem_sources(ctx.store, ctx.run_id)
    kinds = {pid: source_kind(sources[pid]) for pid in ids if pid in sources}
    return {pid: tuple(cur.bands[k]) for pid, k in kinds.items() if k in cur.bands}


def load_gate(ctx, fresh: list, held: list, src) -> Gate:
    """Every stored problem + this round's fresh ones; held-out set and eval files."""
    stored = proposals.stored_questions(ctx.store)
    stored += [(p.problem_id, p.question) for p in fresh]
    evals = [p.question for path in src.eval_paths for p in load_jsonl(path)]
    return Gate(stored, evals + [p.question for p in held], held, near_dup=src.near_dup)


def plan_self(ctx, r: int, k: int, src, seen: list, held: list, exclude: set[str], version: str):
    """(kept Problems, proposals rows) of one `kind: self` source; `seen`: this round's problems so far."""
    seed = ctx.round_seed(r, f"propose-self-{k}")
    pool = fewshot_pool(ctx.store, ctx.run_id, src.shots, seed, exclude)
    hint = steering_hint(ctx.store, ctx.run_id, r, tuple(ctx.cfg.propose.curriculum.band_for("self")))
    gate = load_gate(ctx, seen, held, src)
    agree = Agreement(ctx, src, seed, run_program)
    drawn = generate(ctx, src, gate, pool, hint, seed, agree=agree.check)
    return proposal_rows(ctx, r, drawn, version, salt=str(k))


def plan_code(ctx, r: int, k: int, src, seen: list, exclude: set[str], version: str):
    """(tasks, proposals rows) of the model-written programs of one `kind: code` source."""
    known = {programs.program_key(x) for x in [*exclude, *proposals.code_programs(ctx.store)]}
    known |= {programs.program_key(p.meta["code"]) for p in seen if "code" in p.meta}
    drawn = programs.generate(ctx, src, known, ctx.round_seed(r, f"propose-code-{k}"), exclude)
    return programs.proposal_rows(ctx, r, drawn, version, src.tasks, salt=str(k))


def plan_round(ctx, r: int, fresh: list, held: list, exclude: set[str]) -> RoundPlan:
    """Curriculum resampling + retirements, then every `self` source's proposals and every `code`
    source's model-written programs."""
    plan = RoundPlan()
    plan.resample, retire = curriculum_plan(ctx, r)
    plan.tables = {"retirements": retire, "proposals": []}
    version, _ = ctx.current_model()
    for k, src in enumerate(ctx.cfg.propose.sources):
        if src.kind == "code" and src.model_count:
            problems, rows = plan_code(ctx, r, k, src, fresh + plan.problems, exclude, version)
        elif src.kind == "self" and src.count:
            problems, rows = plan_self(ctx, r, k, src, fresh + plan.problems, held, exclude, version)
        else:
            continue
        plan.problems += problems
        plan.tables["proposals"] += rows
    reasons = Counter(x["reason"] for x in plan.tables["proposals"] if x["status"] == "rejected")
    kept_rows = sum(x["status"] == "kept" for x in plan.tables["proposals"])
    plan.info = {
        "self_proposed": len(plan.tables["proposals"]),
        "self_kept": kept_rows,
        "self_tasks": len(plan.problems),
        "self_rejected": dict(sorted(reasons.items())),
        "resampled": len(plan.resample),
        "retired": len(retire),
    }
    return plan
