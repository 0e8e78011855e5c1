"""A small, fully known store written directly (no model): two runs, two rounds,
a base model and one LoRA child, verdicts with known pass rates, one interrupted step.

Latest run `run-b`, per problem (judged / verified over all rounds):
  p1: 4/4 (1.0)   p2: 4/3 (0.75)   p3: 8/2 (0.25)   p4: 4 samples, none judged yet
"""
from __future__ import annotations

import hashlib

from store import stats
from store.db import Store

REWARDS = ("xmlcount", "soft_format", "strict_format", "int", "correctness")
PLAN = [  # (round, problem, model, verdicts per idx: True/False/None = not judged)
    (1, "p1", "base0", [True, True, True, True]),
    (1, "p2", "base0", [True, True, False, True]),
    (1, "p3", "base0", [False, False, False, False]),
    (2, "p3", "lora1", [True, False, True, False]),
    (2, "p4", "lora1", [None, None, None, None]),
]
EXPECT = {"samples": 20, "verified": 9, "judged": 16, "problems": 4, "problems_solved": 3,
          "pass_rate": {"p1": 1.0, "p2": 0.75, "p3": 0.25, "p4": None}}


def sample_id(run: str, r: int, pid: str, idx: int) -> str:
    return hashlib.sha256(f"{run}:{r}:{pid}:{idx}".encode()).hexdigest()[:20]


def _sample(run, r, pid, model, idx, ok):
    judged = ok is not None
    rewards = {n: (1.0 if ok else 0.0) for n in REWARDS} if judged else None
    return {"sample_id": sample_id(run, r, pid, idx), "run_id": run, "round": r, "problem_id": pid, "idx": idx,
            "model_version": model, "model_parent": None if model == "base0" else "base0", "loop_version": "0.1.0",
            "backend": "hf", "prompt_version": "reasoning-answer-v1",
            "sampling": {"n": 4, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64, "seed": 7, "stop": []},
            "completion": f"<answer>{idx}</answer>", "prompt_tokens": 10, "completion_tokens": 5,
            "finish_reason": "stop", "meta": {}, "verifier_version": "v1" if judged else None,
            "rewards": rewards, "reward_total": (6.0 if ok else 0.0) if judged else None,
            "advantage": 0.0 if judged else None, "verified": ok, "extracted": str(idx) if judged else None}


def populate(path) -> None:
    with Store(path) as st, st.transaction():
        st.con.execute("INSERT INTO runs (run_id, created_at, config, loop_version) VALUES "
                       "('run-a', TIMESTAMP '2026-01-01', '{}', '0.1.0'), "
                       "('run-b', TIMESTAMP '2026-02-01', '{}', '0.1.0')")
        st.insert_rows("models", [  # the base model has no row
            {"model_version": "lora1", "parent": "base0", "run_id": "run-b", "round": 1, "kind": "lora",
             "path": "/m1", "data_hash": "d1"}])
        st.insert_rows("problems", [{"problem_id": p, "source": "arithmetic", "kind": "add_sub", "level": 1,
                                     "question": f"What is {i} + {i}?", "answer": str(2 * i), "meta": {}}
                                    for i, p in enumerate(["p1", "p2", "p3", "p4", "pa"], 1)])
        st.insert_rows("round_problems", [{"run_id": "run-b", "round": r, "problem_id": p}
                                          for r, p, _, _ in PLAN] + [{"run_id": "run-a", "round": 1, "problem_id": "pa"}])
        st.insert_rows("samples", [_sample("run-b", r, p, m, i, ok) for r, p, m, oks in PLAN
                                   for i, ok in enumerate(oks)] + [_sample("run-a", 1, "pa", "base0", 0, True)])
        for run, r in {("run-b", r) for r, *_ in PLAN} | {("run-a", 1)}:
            stats.record_proposed(st, run, r)  # as the propose stage does
            stats.refresh_round(st, run, r)    # as the sample and verify stages do
        st.insert_rows("evaluations", [{"run_id": "run-b", "round": r, "model_version": m, "split": "heldout",
                                        "n": 4, "correct": c, "accuracy": c / 4, "format_rate": 0.5}
                                       for r, m, c in [(0, "base0", 1), (1, "lora1", 2), (2, "lora1", 3)]])
        st.insert_rows("rounds", [{"run_id": "run-b", "round": 1, "status": "done", "model_version": "base0"},
                                  {"run_id": "run-b", "round": 2, "status": "running", "model_version": "lora1"}])
        steps = [(0, "evaluate", "done")] + [(1, s, "done") for s in ("propose", "sample", "verify", "train", "evaluate")]
        steps += [(1, "train.sft", "done"), (2, "propose", "done"), (2, "sample", "done"), (2, "verify", "running")]
        st.insert_rows("steps", [{"run_id": "run-b", "round": r, "stage": s, "status": status,
                                  "attempts": 2 if status == "running" else 1,
                                  "info": {"examples": 3} if s == "train.sft" else {}} for r, s, status in steps])
