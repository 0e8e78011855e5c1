"""The proposer's generations: few-shot prompts, waves of completions, each one gated.

Every completion is parsed and gated (loop.proposer.gate) and becomes one Proposal, kept
or rejected with its reason; `proposal_rows` turns them into kept Problems and `proposals`
rows. Nothing is written here.

Ancestry: each few-shot example is a `Shot` whose `ref` is {"problem_id", "source", "sha256"}:
a verified problem's stored id; a procedural arithmetic fill-in's Problem id (stored only if an
arithmetic source also drew it); None for a starter word problem (source 'starter') and a
procedural code program (loop.proposer.programs), which have none; sha256 of the shown assistant
turn. Each proposal's `shots` are the refs of exactly the examples in its prompt, in prompt order,
and go to `proposals.shots` (migration 009).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from loop import cancel, sandbox
from loop.problems import Problem
from loop.problems.curriculum import band_hint, track
from loop.problems.procedural import arithmetic
from loop.progress import bar
from loop.proposer.gate import Gate, Parsed, executable, parse, render
from loop.samplers import SamplingParams
from store import proposals

PROPOSER_VERSION = "proposer-v1"
GEN_PER_PROMPT = 4
WAVE_FACTOR = 3  # a wave draws about 3x the problems still needed (at most sample.batch_size)
SANDBOX_TIMEOUT_S = 5.0
SYSTEM = (
    "You write short math word problems. Each problem comes with a one-line Python program "
    "that computes its answer. Reply in exactly this format:\n"
    "<problem>...</problem>\n<program>\nanswer = ...\n</program>"
)
ASK = "Write one new math problem."
STARTERS = [  # (problem, program): word problems in the format the proposer should copy
    ("Tom has 12 apples and buys 7 more. How many apples does he have?", "answer = 12 + 7"),
    ("A box holds 6 pens. How many pens are in 4 boxes?", "answer = 6 * 4"),
    ("Sara had 30 stickers and gave away 9. How many stickers are left?", "answer = 30 - 9"),
    (
        "A pizza is cut into 8 slices. Ben eats 3 slices. What fraction of the pizza is left?",
        "answer = Rational(8 - 3, 8)",
    ),
    ("There are 5 rows of chairs with 9 chairs in each row. How many chairs are there?", "answer = 5 * 9"),
    ("Mia reads 15 pages a day. How many pages does she read in 6 days?", "answer = 15 * 6"),
]


class Shot(NamedTuple):
    """One few-shot example and its ancestry record (`ref`, see the module docstring)."""

    question: str
    program: str
    ref: dict[str, Any]


def shot_ref(problem_id: str | None, source: str, shown: str) -> dict[str, Any]:
    """The ancestry record of one example: its problem id (or None), source, and the sha256 (16 hex)
    of `shown`, the example's assistant turn exactly as the prompt shows it."""
    digest = hashlib.sha256(shown.encode()).hexdigest()[:16]
    return {"problem_id": problem_id, "source": source, "sha256": digest}


def _shot(problem_id: str | None, source: str, question: str, program: str) -> Shot:
    return Shot(question, program, shot_ref(problem_id, source, render(question, program)))


def build_prompt(shots: list, hint: str = "") -> list[dict]:
    """Chat messages: system (format + hint), one user/assistant turn per shot, the ask.
    A shot is (question, program) or a `Shot`."""
    msgs = [{"role": "system", "content": SYSTEM + (f"\n{hint}" if hint else "")}]
    for shot in shots:
        msgs += [{"role": "user", "content": ASK}, {"role": "assistant", "content": render(shot[0], shot[1])}]
    return msgs + [{"role": "user", "content": ASK}]


def fewshot_pool(store, run_id: str, shots: int, seed: int, exclude=frozenset()) -> list[Shot]:
    """Verified problems with a program (this run); topped up with fallbacks when short: procedural
    problems (their problem ids) and the starter word problems (no problem id: source 'starter')."""
    pool = [_shot(*row) for row in proposals.verified_programs(store, run_id)]
    if len(pool) < shots:
        procedural = arithmetic(len(STARTERS), [1, 2], seed, exclude)
        pool += [_shot(p.problem_id, p.source, p.question, p.meta["program"]) for p in procedural]
        pool += [_shot(None, "starter", q, prog) for q, prog in STARTERS]
    return pool


def steering_hint(store, run_id: str, r: int, band: tuple[float, float]) -> str:
    stats = track(proposals.pass_rate_rows(store, run_id, r, source="self"))
    texts = proposals.question_texts(store, "self") if stats else {}
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
    votes: dict[str, Any] | None = None  # the agreement filter's record (loop.proposer.agreement)
    shots: list[dict[str, Any]] = field(default_factory=list)  # ancestry: the prompt's examples' refs

    @property
    def kept(self) -> bool:
        return self.reason == "ok"


def run_program(program: str):
    """The proposal's answer program through the sandbox (twice, must agree)."""
    return sandbox.run(executable(program), timeout_s=SANDBOX_TIMEOUT_S, runs=2)


def judge(
    gate: Gate, attempt: int, raw: str, finish: str, prompt: list[dict], room: bool, runner: Callable = run_program
) -> Proposal:
    """Parse and gate one completion; a valid one when the quota is full is 'quota'."""
    parsed = parse(raw, finish)
    if parsed.ok and not room:
        assert parsed.problem is not None  # an ok parse has a problem
        if gate.text_reason(parsed.problem) is None:
            return Proposal(attempt, raw, prompt, parsed, "quota")
    v = gate.check(parsed, runner)
    return Proposal(attempt, raw, prompt, parsed, v.reason, v.answer, {**v.detail, "finish_reason": finish})


def waves(ctx, src, count: int, make_prompt: Callable, judge_one: Callable, seed: int, stop: list[str], label: str):
    """Waves of proposer generations until `count` are kept or `count * src.attempts` were drawn.

    make_prompt(rng) -> (chat messages, ancestry refs of its shots); judge_one(attempt, raw, finish,
    prompt, room) -> a proposal with `.kept` and `.shots` (room: the quota is not full yet); each
    proposal's `shots` are set to its prompt's refs."""
    rng, kept = random.Random(seed), 0
    out: list = []
    budget, wave = count * src.attempts, 0
    per_wave = max(GEN_PER_PROMPT, ctx.cfg.sample.batch_size // GEN_PER_PROMPT * GEN_PER_PROMPT)
    sampler = ctx.sampler()
    while kept < count and len(out) < budget:
        want = min(per_wave, budget - len(out), WAVE_FACTOR * (count - kept))
        drawn = [make_prompt(rng) for _ in range(-(-want // GEN_PER_PROMPT))]
        prompts = [msgs for msgs, _ in drawn]
        params = SamplingParams(
            n=GEN_PER_PROMPT,
            temperature=src.temperature,
            top_p=ctx.cfg.sample.top_p,
            max_new_tokens=src.max_new_tokens,
            seed=seed + wave,
            stop=stop,
        )
        with bar(f"propose ({label}, wave {wave + 1})", len(prompts) * GEN_PER_PROMPT) as advance:
            groups = sampler.generate(prompts, params, cancel.ticking(advance))
        for (prompt, refs), group in zip(drawn, groups):
            for c in group:
                cancel.check()  # each judgement runs the sandbox: a stop ends the stage between them
                p = judge_one(len(out), c.text, c.finish_reason, prompt, kept < count)
                p.shots = list(refs)
                kept += p.kept
                out.append(p)
        wave += 1
    return out


def generate(
    ctx,
    src,
    gate: Gate,
    pool: list[Shot],
    hint: str,
    seed: int,
    runner: Callable = run_program,
    agree: Callable | None = None,
) -> list[Proposal]:
    """Waves of proposer generations until `src.count` are kept or the budget is spent.
    `agree(problem, answer, attempt) -> votes | None` (loop.proposer.agreement) vets each proposal
    that passed the gate; one that disagrees is rejected as `disagree:<mode>`."""

    def make_prompt(rng: random.Random) -> tuple[list[dict], list[dict]]:
        shots = rng.sample(pool, min(src.shots, len(pool)))
        return build_prompt(shots, hint), [s.ref for s in shots]

    def judge_one(attempt: int, raw: str, finish: str, prompt: list[dict], room: bool) -> Proposal:
        p = judge(gate, attempt, raw, finish, prompt, room, runner)
        if p.kept and agree is not None:
            assert p.parsed.problem is not None and p.answer is not None  # passed the gate
            p.votes = agree(p.parsed.problem, p.answer, attempt)
            if p.votes is not None and not p.votes["agreed"]:
                p.reason = f"disagree:{p.votes['mode']}"
        if p.kept:
            assert p.parsed.problem is not None  # a kept proposal parsed ok
            gate.add(f"self:{seed}:{p.attempt}", p.parsed.problem)
        return p

    return waves(ctx, src, src.count, make_prompt, judge_one, seed, ["</program>"], "self")


# --- rows for the store -----------------------------------------------------------------
def proposal_row(ctx, r: int, version: str, pid: str, p, **fields) -> dict:
    """One `proposals` row: proposal `p`'s common columns (its shots' ancestry included) plus
    `fields` (text, problem_id, program, answer, meta; agreement and votes when the agreement filter ran)."""
    return {
        "proposal_id": pid,
        "run_id": ctx.run_id,
        "round": r,
        "model_version": version,
        "attempt": p.attempt,
        "status": "kept" if p.kept else "rejected",
        "reason": p.reason,
        "raw": p.raw,
        "prompt": p.prompt,
        "shots": p.shots,
        "agreement": None,
        "votes": None,
        **fields,
    }


def proposal_rows(ctx, r: int, drawn: list[Proposal], version: str, salt: str):
    """(kept Problems, proposals rows) for one self source."""
    problems, rows = [], []
    for p in drawn:
        pid = hashlib.sha256(f"{ctx.run_id}:{r}:{salt}:{p.attempt}:{version}:{p.raw}".encode()).hexdigest()[:20]
        problem = None
        if p.kept:
            assert p.parsed.problem is not None and p.answer is not None  # kept: parsed ok, sandbox answered
            problem = Problem(
                question=p.parsed.problem,
                answer=p.answer,
                source="self",
                kind="self",
                meta={
                    "program": p.parsed.program,
                    "proposal_id": pid,
                    "round": r,
                    "model_version": version,
                    "proposer": PROPOSER_VERSION,
                },
            )
            problems.append(problem)
        rows.append(
            proposal_row(
                ctx,
                r,
                version,
                pid,
                p,
                text=p.parsed.problem,
                problem_id=problem.problem_id if problem else None,
                program=p.parsed.program,
                answer=p.answer,
                meta=p.detail,
                agreement=p.votes["mode"] if p.votes else None,
                votes=p.votes,
            )
        )
    return problems, rows
