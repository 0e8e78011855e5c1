"""Self-proposed problems: the current model writes, solves and checks its own problems.

Contract (the propose stage, loop/propose.py, calls `plan_round` once per round):
- Proposer role: for each `kind: self` source, the current model (`ctx.sampler()`)
  is prompted with `shots` few-shot examples, rendered as earlier chat turns in the
  format of `loop.proposal_checks.render`, and asked for ONE new problem with a
  one-line answer program. Examples are problems with a program that have at least
  one verified sample in this run; while fewer than `shots` exist, the procedural
  generator's problems (with their programs) and a few starter word problems fill
  in. The system prompt carries `band_hint(...)` over the pass rates of earlier
  self-proposed problems. Generation runs in waves of WAVE_FACTOR x the problems
  still needed (at most `sample.batch_size`; GEN_PER_PROMPT completions per prompt,
  each prompt its own few-shot draw) until `count` are kept or `count * attempts`
  were drawn.
- Every completion is parsed and gated (`loop.proposal_checks`: dedup, near-dup,
  decontamination, program/number agreement, `loop.sandbox.run` twice, gold
  check) and recorded as one `proposals` row, kept or rejected with its reason;
  valid completions beyond the quota are recorded as 'quota'.
- Curriculum: pass rates per (problem, round) come from the `problem_pass_rates`
  view (judged samples); `loop.curriculum.select_for_resampling` picks up to
  `propose.curriculum.resample_max` earlier problems to sample again and the
  problems to retire (recorded once in `retirements`).
- Nothing is written here: `plan_round` returns rows; the stage commits them with
  its step in one transaction.

Proposer training (GRPO): `grpo_dataset(store, run_id)` returns rows
{prompt, completion, pass_rate, ...}: the prompt the proposer saw, the proposal it
wrote, and its problem's pass rate in the round it was proposed. TRL passes extra
dataset columns to reward functions by name, so
`GRPOTrainer(reward_funcs=[loop.curriculum.proposer_learnability],
train_dataset=Dataset.from_list(rows))` rewards with learnability 1 - pass_rate
(0 at 0 or 1; None, skipped, for rejected proposals). That reward is the stored
proposal's (off-policy): every fresh completion of a row gets the same value. For
on-policy GRPO use `LearnabilityReward(solve)`: it gates each fresh completion
like the stage does and asks `solve(question, answer) -> pass_rate`.
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from loop.curriculum import band_hint, learnability, select_for_resampling, track
from loop.proposal_checks import Gate, Parsed, executable, parse, render

PROPOSER_VERSION = "proposer-v1"
GEN_PER_PROMPT = 4
WAVE_FACTOR = 3          # a wave draws about 3x the problems still needed (at most sample.batch_size)
SANDBOX_TIMEOUT_S = 5.0
SYSTEM = ("You write short math word problems. Each problem comes with a one-line Python program "
          "that computes its answer. Reply in exactly this format:\n"
          "<problem>...</problem>\n<program>\nanswer = ...\n</program>")
ASK = "Write one new math problem."
STARTERS = [  # (problem, program): word problems in the format the proposer should copy
    ("Tom has 12 apples and buys 7 more. How many apples does he have?", "answer = 12 + 7"),
    ("A box holds 6 pens. How many pens are in 4 boxes?", "answer = 6 * 4"),
    ("Sara had 30 stickers and gave away 9. How many stickers are left?", "answer = 30 - 9"),
    ("A pizza is cut into 8 slices. Ben eats 3 slices. What fraction of the pizza is left?",
     "answer = Rational(8 - 3, 8)"),
    ("There are 5 rows of chairs with 9 chairs in each row. How many chairs are there?", "answer = 5 * 9"),
    ("Mia reads 15 pages a day. How many pages does she read in 6 days?", "answer = 15 * 6"),
]


def build_prompt(shots: list[tuple[str, str]], hint: str = "") -> list[dict]:
    """Chat messages: system (format + hint), one user/assistant turn per shot, the ask."""
    msgs = [{"role": "system", "content": SYSTEM + (f"\n{hint}" if hint else "")}]
    for question, program in shots:
        msgs += [{"role": "user", "content": ASK}, {"role": "assistant", "content": render(question, program)}]
    return msgs + [{"role": "user", "content": ASK}]


def fewshot_pool(store, run_id: str, shots: int, seed: int, exclude=frozenset()) -> list[tuple[str, str]]:
    """Verified problems with a program (this run); topped up with fallbacks when short."""
    rows = store.query(
        "SELECT DISTINCT p.question, json_extract_string(p.meta, '$.program') AS program "
        "FROM problems p JOIN samples s USING (problem_id) WHERE s.run_id = ? AND s.verified "
        "AND json_extract_string(p.meta, '$.program') IS NOT NULL ORDER BY 1", [run_id])
    pool = [(r["question"], r["program"]) for r in rows]
    if len(pool) < shots:
        from loop.propose import arithmetic
        procedural = arithmetic(len(STARTERS), [1, 2], seed, exclude)
        pool += [(p.question, p.meta["program"]) for p in procedural] + STARTERS
    return pool


def pass_rate_rows(store, run_id: str, before: int, source: str | None = None) -> list[tuple]:
    """(problem_id, round, n, n_verified) of rounds < `before`, optionally of one source."""
    sql = ("SELECT pp.problem_id, pp.round, pp.n, pp.n_verified FROM problem_pass_rates pp "
           "JOIN problems p USING (problem_id) WHERE pp.run_id = ? AND pp.round < ?")
    params: list[Any] = [run_id, before]
    if source:
        sql += " AND p.source = ?"
        params.append(source)
    return [(r["problem_id"], r["round"], r["n"], r["n_verified"]) for r in store.query(sql, params)]


def steering_hint(store, run_id: str, r: int, band: tuple[float, float]) -> str:
    stats = track(pass_rate_rows(store, run_id, r, source="self"))
    texts = {x["problem_id"]: x["question"] for x in store.query(
        "SELECT problem_id, question FROM problems WHERE source = 'self'")} if stats else {}
    return band_hint(stats, band, examples=texts)


# --- one proposal -----------------------------------------------------------------------
@dataclass
class Proposal:
    attempt: int
    raw: str
    prompt: list[dict]
    parsed: Parsed
    reason: str
    answer: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.reason == "ok"


def run_program(program: str):
    """The proposal's answer program through the sandbox (twice, must agree)."""
    from loop.sandbox import run
    return run(executable(program), timeout_s=SANDBOX_TIMEOUT_S, runs=2)


def judge(gate: Gate, attempt: int, raw: str, finish: str, prompt: list[dict],
          room: bool, runner: Callable = run_program) -> Proposal:
    """Parse and gate one completion; a valid one when the quota is full is 'quota'."""
    parsed = parse(raw, finish)
    if parsed.ok and not room and gate.text_reason(parsed.problem) is None:
        return Proposal(attempt, raw, prompt, parsed, "quota")
    v = gate.check(parsed, runner)
    return Proposal(attempt, raw, prompt, parsed, v.reason, v.answer, {**v.detail, "finish_reason": finish})


def generate(ctx, src, gate: Gate, pool: list[tuple[str, str]], hint: str, seed: int,
             runner: Callable = run_program) -> list[Proposal]:
    """Waves of proposer generations until `src.count` are kept or the budget is spent."""
    from loop.progress import bar
    from loop.sample import SamplingParams
    rng, out, kept = random.Random(seed), [], 0
    budget, wave = src.count * src.attempts, 0
    per_wave = max(GEN_PER_PROMPT, ctx.cfg.sample.batch_size // GEN_PER_PROMPT * GEN_PER_PROMPT)
    sampler = ctx.sampler()
    while kept < src.count and len(out) < budget:
        want = min(per_wave, budget - len(out), WAVE_FACTOR * (src.count - kept))
        n_prompts = -(-want // GEN_PER_PROMPT)
        prompts = [build_prompt(rng.sample(pool, min(src.shots, len(pool))), hint) for _ in range(n_prompts)]
        params = SamplingParams(n=GEN_PER_PROMPT, temperature=src.temperature, top_p=ctx.cfg.sample.top_p,
                                max_new_tokens=src.max_new_tokens, seed=seed + wave, stop=["</program>"])
        with bar(f"propose (self, wave {wave + 1})", n_prompts * GEN_PER_PROMPT) as advance:
            groups = sampler.generate(prompts, params, advance)
        for prompt, group in zip(prompts, groups):
            for c in group:
                p = judge(gate, len(out), c.text, c.finish_reason, prompt, kept < src.count, runner)
                if p.kept:
                    kept += 1
                    gate.add(f"self:{seed}:{p.attempt}", p.parsed.problem)
                out.append(p)
        wave += 1
    return out


# --- rows for the store -----------------------------------------------------------------
def proposal_rows(ctx, r: int, proposals: list[Proposal], version: str, salt: str):
    """(kept Problems, proposals rows) for one self source."""
    from loop.propose import Problem
    problems, rows = [], []
    for p in proposals:
        pid = hashlib.sha256(f"{ctx.run_id}:{r}:{salt}:{p.attempt}:{version}:{p.raw}".encode()).hexdigest()[:20]
        problem = None
        if p.kept:
            problem = Problem(question=p.parsed.problem, answer=p.answer, source="self", kind="self",
                              meta={"program": p.parsed.program, "proposal_id": pid, "round": r,
                                    "model_version": version, "proposer": PROPOSER_VERSION})
            problems.append(problem)
        rows.append({"proposal_id": pid, "run_id": ctx.run_id, "round": r, "model_version": version,
                     "attempt": p.attempt, "text": p.parsed.problem,
                     "problem_id": problem.problem_id if problem else None, "program": p.parsed.program,
                     "answer": p.answer, "status": "kept" if p.kept else "rejected", "reason": p.reason,
                     "raw": p.raw, "prompt": p.prompt, "meta": p.detail})
    return problems, rows


# --- the round's plan ------------------------------------------------------------------------
@dataclass
class RoundPlan:
    problems: list = field(default_factory=list)     # kept self-proposed Problems
    resample: list[str] = field(default_factory=list)  # earlier problem ids sampled again
    tables: dict[str, list[dict]] = field(default_factory=dict)  # extra rows: proposals, retirements
    info: dict[str, Any] = field(default_factory=dict)


def curriculum_plan(ctx, r: int) -> tuple[list[str], list[dict]]:
    """(problem ids to resample, retirement rows) from pass rates of rounds before r."""
    cur = ctx.cfg.propose.curriculum
    retired = {x["problem_id"] for x in ctx.store.query(
        "SELECT problem_id FROM retirements WHERE run_id = ?", [ctx.run_id])}
    stats = {k: v for k, v in track(pass_rate_rows(ctx.store, ctx.run_id, r)).items() if k not in retired}
    resample, retire = select_for_resampling(stats, tuple(cur.band), cur.retire_after)
    rows = [{"run_id": ctx.run_id, "problem_id": pid, "round": r, "reason": why,
             "history": [list(h) for h in stats[pid].history]} for pid, why in retire]
    return resample[:cur.resample_max], rows


def load_gate(ctx, fresh: list, held: list, src) -> Gate:
    """Every stored problem + this round's fresh ones; held-out set and eval files."""
    from loop.propose import load_jsonl
    stored = [(x["problem_id"], x["question"]) for x in ctx.store.query(
        "SELECT problem_id, question FROM problems ORDER BY created_at, problem_id")]
    stored += [(p.problem_id, p.question) for p in fresh]
    evals = [p.question for path in src.eval_paths for p in load_jsonl(path)]
    return Gate(stored, evals + [p.question for p in held], held, near_dup=src.near_dup)


def plan_round(ctx, r: int, fresh: list, held: list, exclude: set[str]) -> RoundPlan:
    """Curriculum resampling + retirements, then every `self` source's proposals."""
    plan = RoundPlan()
    cur = ctx.cfg.propose.curriculum
    plan.resample, retire = curriculum_plan(ctx, r)
    plan.tables = {"retirements": retire, "proposals": []}
    version, _ = ctx.current_model()
    for k, src in enumerate(ctx.cfg.propose.sources):
        if src.kind != "self" or src.count == 0:
            continue
        seed = ctx.round_seed(r, f"propose-self-{k}")
        pool = fewshot_pool(ctx.store, ctx.run_id, src.shots, seed, exclude)
        hint = steering_hint(ctx.store, ctx.run_id, r, tuple(cur.band))
        gate = load_gate(ctx, fresh + plan.problems, held, src)
        proposals = generate(ctx, src, gate, pool, hint, seed)
        problems, rows = proposal_rows(ctx, r, proposals, version, salt=str(k))
        plan.problems += problems
        plan.tables["proposals"] += rows
    reasons = Counter(x["reason"] for x in plan.tables["proposals"] if x["status"] == "rejected")
    plan.info = {"self_proposed": len(plan.tables["proposals"]), "self_kept": len(plan.problems),
                 "self_rejected": dict(sorted(reasons.items())), "resampled": len(plan.resample),
                 "retired": len(retire)}
    return plan


# --- proposer training --------------------------------------------------------------------------
def grpo_dataset(store, run_id: str, include_rejected: bool = False) -> list[dict]:
    """Rows {prompt, completion, pass_rate, proposal_id, round, status, reason} for GRPO on the
    proposer (see the module docstring); pass_rate is None until the problem was sampled and
    for rejected proposals."""
    import json
    rows = store.query(
        "SELECT pr.proposal_id, pr.round, pr.prompt, pr.raw, pr.status, pr.reason, "
        "sum(pp.n) AS n, sum(pp.n_verified) AS n_verified FROM proposals pr "
        "LEFT JOIN problem_pass_rates pp ON pp.run_id = pr.run_id AND pp.problem_id = pr.problem_id "
        "AND pp.round = pr.round WHERE pr.run_id = ? AND (pr.status = 'kept' OR ?) "
        "GROUP BY ALL ORDER BY pr.round, pr.proposal_id", [run_id, include_rejected])
    return [{"prompt": json.loads(x["prompt"]), "completion": [{"role": "assistant", "content": x["raw"]}],
             "pass_rate": x["n_verified"] / x["n"] if x["n"] else None, "proposal_id": x["proposal_id"],
             "round": x["round"], "status": x["status"], "reason": x["reason"]} for x in rows]


class LearnabilityReward:
    """On-policy proposer reward (TRL signature): each fresh completion is parsed and gated
    as in the stage, then `solve(question, answer) -> pass_rate` (e.g. G solver samples
    verified against `answer`) gives learnability; invalid proposals earn 0.0."""
    __name__ = "proposer_learnability_online"

    def __init__(self, solve: Callable[[str, str], float], gate: Gate | None = None,
                 runner: Callable = run_program):
        self.solve, self.gate, self.runner = solve, gate or Gate([]), runner

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        out = []
        for c in completions:
            parsed = parse(c if isinstance(c, str) else c[-1]["content"])
            v = self.gate.check(parsed, self.runner)
            out.append(learnability(self.solve(parsed.problem, v.answer)) if v.reason == "ok" else 0.0)
        return out
