"""Verify stage: score every completion with the configured rewards.

Per sample: each reward's value (None = cannot judge, never a silent 0), the
weighted total over judged rewards, the group-relative advantage
(r - mean) / (std + eps) within its problem's group (GRPO), and `verified`:
the correctness reward judged it exactly 1.0.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from loop import cancel
from loop.context import RunContext, StageResult
from loop.prompts import messages
from rewards import VERIFIER_VERSION, build_reward, extract_answer
from store import pipeline, stats

EPS = 1e-4


@dataclass
class Scored:
    rewards: dict[str, float | None]
    total: float | None
    verified: bool
    extracted: str | None
    advantage: float | None = None


class RewardSet:
    """The configured rewards, built once from `{name, weight, params}` entries."""

    def __init__(self, verify_cfg):
        self.entries = [(r.name, r.weight, build_reward(r.name, r.params)) for r in verify_cfg.rewards]
        names = [n for n, _, _ in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"verify.rewards: a reward is listed twice: {names}")
        if verify_cfg.correctness not in names:
            raise ValueError(f"verify.correctness: {verify_cfg.correctness!r} is not among verify.rewards {names}")
        self.correctness = verify_cfg.correctness

    def score(self, prompts: list[Any], completions: list[str], answers: list[str]) -> list[Scored]:
        values = {name: fn(prompts, completions, answer=answers) for name, _, fn in self.entries}
        out = []
        for i, text in enumerate(completions):
            per = {name: values[name][i] for name, _, _ in self.entries}
            judged = [(w, per[n]) for n, w, _ in self.entries if per[n] is not None]
            total = sum(w * v for w, v in judged) if judged else None
            out.append(
                Scored(
                    rewards=per,
                    total=total,
                    verified=per[self.correctness] == 1.0,
                    extracted=extract_answer(text).value,
                )
            )
        return out


def group_advantages(totals: list[float | None]) -> list[float | None]:
    """GRPO advantages within one group; samples that could not be judged get None."""
    judged = [t for t in totals if t is not None]
    if not judged:
        return [None] * len(totals)
    mean = statistics.fmean(judged)
    std = statistics.pstdev(judged) if len(judged) > 1 else 0.0
    return [None if t is None else (t - mean) / (std + EPS) for t in totals]


def verify_groups(reward_set: RewardSet, groups: dict[str, list[dict]]) -> dict[str, list[Scored]]:
    """groups: problem_id -> sample rows (with 'prompt', 'completion', 'answer')."""
    out = {}
    for pid, rows in groups.items():
        cancel.check()  # a stop request ends scoring within a group's time
        scored = reward_set.score(
            [r["prompt"] for r in rows], [r["completion"] for r in rows], [r["answer"] for r in rows]
        )
        for s, adv in zip(scored, group_advantages([s.total for s in scored])):
            s.advantage = adv
        out[pid] = scored
    return out


# --- the stage ------------------------------------------------------------------
def stage(ctx: RunContext, r: int) -> StageResult:
    """Score round r's samples and write every verdict in one transaction."""
    groups: dict[str, list[dict]] = {}
    for row in pipeline.round_samples(ctx.store, ctx.run_id, r):
        groups.setdefault(row["problem_id"], []).append(
            {**row, "prompt": messages(row["question"], ctx.cfg.prompt.system)}
        )
    scored = verify_groups(RewardSet(ctx.cfg.verify), groups)
    updates = []
    for pid, group in groups.items():
        for row, s in zip(group, scored[pid]):
            updates.append(
                {
                    "sample_id": row["sample_id"],
                    "rewards": s.rewards,
                    "reward_total": s.total,
                    "advantage": s.advantage,
                    "verified": s.verified,
                    "extracted": s.extracted,
                    "verifier_version": VERIFIER_VERSION,
                }
            )
    info = {
        "samples": len(updates),
        "verified": sum(u["verified"] for u in updates),
        "problems_solved": sum(any(s.verified for s in g) for g in scored.values()),
    }

    def write(store) -> None:
        store.update_samples(updates)
        stats.refresh_round(store, ctx.run_id, r)

    return ctx.commit(r, "verify", info, write)
