"""Training the proposer: GRPO rows from the `proposals` table, and an on-policy reward.

See loop.proposer's docstring for the contract of `grpo_dataset` and `LearnabilityReward`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from loop.problems.curriculum import learnability
from loop.proposer.gate import Gate, parse
from loop.proposer.generate import run_program
from store import proposals


def grpo_dataset(store, run_id: str, include_rejected: bool = False) -> list[dict]:
    """Rows {prompt, completion, pass_rate, proposal_id, round, status, reason} for GRPO on the
    proposer (see the module docstring); pass_rate is None until the problem was sampled and
    for rejected proposals."""
    rows = proposals.proposals_with_pass_rates(store, run_id, include_rejected)
    return [
        {
            "prompt": json.loads(x["prompt"]),
            "completion": [{"role": "assistant", "content": x["raw"]}],
            "pass_rate": x["n_verified"] / x["n"] if x["n"] else None,
            "proposal_id": x["proposal_id"],
            "round": x["round"],
            "status": x["status"],
            "reason": x["reason"],
        }
        for x in rows
    ]


class LearnabilityReward:
    """On-policy proposer reward (TRL signature): each fresh completion is parsed and gated
    as in the stage, then `solve(question, answer) -> pass_rate` (e.g. G solver samples
    verified against `answer`) gives learnability; invalid proposals earn 0.0."""

    __name__ = "proposer_learnability_online"

    def __init__(self, solve: Callable[[str, str], float], gate: Gate | None = None, runner: Callable = run_program):
        self.solve, self.gate, self.runner = solve, gate or Gate([]), runner

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        out: list[float | None] = []
        for c in completions:
            parsed = parse(c if isinstance(c, str) else c[-1]["content"])
            v = self.gate.check(parsed, self.runner)
            if v.reason != "ok":
                out.append(0.0)
                continue
            assert parsed.problem is not None and v.answer is not None  # passed: parsed ok, sandbox answered
            out.append(learnability(self.solve(parsed.problem, v.answer)))
        return out
