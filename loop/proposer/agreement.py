"""Agreement filter for natural-language self proposals: the answer program must agree with an
independent signal before a proposal is kept (`propose.sources[].agreement`).

  majority        the current model solves the problem `votes` times (the sample stage's prompt,
                  temperature, top_p and token cap); each completion's answer is extracted
                  (rewards.extract_answer) and answers are grouped by `rewards.verify`
                  equivalence. Agreed when the group equal to the program's answer is strictly
                  larger than every other group (ties and no readable answers disagree) and, for
                  a word problem (no operation written out: gate.states_arithmetic), when at least
                  `word_share` of the votes equal it: there the program and the solver tend to
                  make the same naive step on a nonsense or unanswerable question.
  second_program  the model writes `votes` more answer programs for the problem text alone
                  (the proposer's format); the first that runs in the sandbox is the second
                  program. Agreed when its output equals the first program's answer.
  none            no check (the proposal is kept as the gate left it).

A proposal that passed the gate but disagrees is rejected with reason `disagree:<mode>`. Either
way the votes are recorded on its `proposals` row (`agreement`, `votes`: migration 008):
`{"mode", "votes": [answers], "agree": n, "majority": answer | None, "agreed": bool}`, and for
majority `"need"`: the share of the votes that had to agree (0 unless a word problem).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loop.prompts import messages
from loop.proposer.gate import parse, states_arithmetic
from loop.samplers import SamplingParams
from rewards import extract_answer, verify

MODES = ("majority", "second_program", "none")
ASK_PROGRAM = (
    "Write a one-line Python program that computes the answer to this problem. Reply in exactly this "
    "format:\n<program>\nanswer = ...\n</program>"
)


def _equal(a: str, b: str) -> bool:
    return verify(a, b).equal is True


def majority_votes(
    answer: str, votes: list[str | None], word_share: float = 0.0, stated: bool = True
) -> dict[str, Any]:
    """The majority decision for one proposal's `answer` over the solver's extracted answers;
    `stated` False (a word problem) also needs `word_share` of all votes to agree."""
    groups: list[list[Any]] = []  # [representative, count]
    for v in votes:
        if not v:
            continue
        for g in groups:
            if _equal(g[0], v):
                g[1] += 1
                break
        else:
            groups.append([v, 1])
    agree = sum(1 for v in votes if v and _equal(answer, v))
    others = [c for rep, c in groups if not _equal(answer, rep)]
    top = max(groups, key=lambda g: g[1])[0] if groups else None
    agreed = agree > 0 and all(agree > c for c in others)
    share = 0.0 if stated else word_share
    agreed = agreed and agree >= share * len(votes)
    return {"mode": "majority", "votes": list(votes), "agree": agree, "majority": top, "agreed": agreed, "need": share}


def second_program_votes(answer: str, outputs: list[str | None]) -> dict[str, Any]:
    """The second-program decision: the first output that exists (a program that ran) must equal `answer`."""
    second = next((o for o in outputs if o is not None), None)
    agreed = second is not None and _equal(answer, second)
    agree = sum(1 for o in outputs if o is not None and _equal(answer, o))
    return {"mode": "second_program", "votes": list(outputs), "agree": agree, "majority": second, "agreed": agreed}


class Agreement:
    """`check(problem, answer, attempt) -> votes dict` for one source (see the module docstring)."""

    def __init__(self, ctx, src, seed: int, runner: Callable):
        self.mode, self.votes, self.seed, self.runner = src.agreement, src.votes, seed, runner
        self.word_share = src.word_share
        self.sampler, self.sample = ctx.sampler(), ctx.cfg.sample
        self.proposer_tokens, self.temperature = src.max_new_tokens, src.temperature

    def _generate(self, prompt: list[dict], attempt: int, tokens: int, temperature: float) -> list[str]:
        params = SamplingParams(
            n=self.votes,
            temperature=temperature,
            top_p=self.sample.top_p,
            max_new_tokens=tokens,
            seed=self.seed + 7919 * (attempt + 1),
        )
        return [c.text for c in self.sampler.generate([prompt], params)[0]]

    def check(self, problem: str, answer: str, attempt: int) -> dict[str, Any] | None:
        if self.mode == "none":
            return None
        if self.mode == "majority":
            texts = self._generate(messages(problem), attempt, self.sample.max_new_tokens, self.sample.temperature)
            votes = [extract_answer(t).value for t in texts]
            return majority_votes(answer, votes, self.word_share, states_arithmetic(problem))
        prompt = [{"role": "system", "content": ASK_PROGRAM}, {"role": "user", "content": problem}]
        outputs: list[str | None] = []
        for text in self._generate(prompt, attempt, self.proposer_tokens, self.temperature):
            program = parse(f"<problem>{problem}</problem>\n{text}").program
            res = self.runner(program) if program else None
            outputs.append(res.output.strip() if res is not None and res.ok and res.output else None)
        return second_program_votes(answer, outputs)
