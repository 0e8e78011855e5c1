"""Evaluate stage: greedy pass@1 on a fixed held-out procedural set.

The held-out set depends only on `evaluate.{n_problems, levels, seed}`; proposals
never include its expressions. Round 0 is the model before any training, so
each round's gain is measured against it. Accuracy counts a correct answer
wherever the verifier finds it; `format_rate` counts strict-format answers.
"""
from __future__ import annotations

from loop.progress import bar
from loop.prompts import messages
from loop.propose import heldout
from loop.sample import SamplingParams


def evaluate_model(ctx) -> dict:
    from rewards import build_reward
    cfg = ctx.cfg.evaluate
    problems = heldout(cfg.n_problems, cfg.levels, cfg.seed)
    sampler = ctx.sampler()
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=0)
    prompts = [messages(p.question) for p in problems]
    with bar(f"evaluate ({len(problems)} held-out, greedy)", len(problems)) as advance:
        outs = [g[0].text for g in sampler.generate(prompts, params, advance)]
    answers = [p.answer for p in problems]
    correct = build_reward("correctness", {})(prompts, outs, answer=answers)
    strict = build_reward("strict_format", {})(prompts, outs, answer=answers)
    details = [{"question": p.question, "answer": p.answer, "completion": o, "correct": c}
               for p, o, c in zip(problems, outs, correct)]
    n_correct = sum(1 for c in correct if c == 1.0)
    return {"n": len(problems), "correct": n_correct, "accuracy": n_correct / len(problems),
            "format_rate": sum(1 for s in strict if s and s > 0) / len(problems), "details": details}


def stage(ctx, r: int) -> dict:
    """Evaluate the current model after round r (r = 0: before the first round)."""
    version, _ = ctx.current_model()
    res = evaluate_model(ctx)
    row = {"run_id": ctx.run_id, "round": r, "model_version": version, "split": "heldout",
           "n": res["n"], "correct": res["correct"], "accuracy": res["accuracy"],
           "format_rate": res["format_rate"], "details": res["details"]}
    info = {k: res[k] for k in ("n", "correct", "accuracy", "format_rate")} | {"model_version": version}
    with ctx.store.transaction():
        ctx.store.insert_rows("evaluations", [row], conflict="DO NOTHING")
        ctx.mark_done(r, "evaluate", info)
    return info
