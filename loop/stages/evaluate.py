"""Evaluate stage: greedy pass@1 on fixed held-out sets (`evaluate.sets`, loop.problems.evalsets;
default one procedural set). Each set is an `evaluations` row (split = its name; the gated set's
split is `heldout`); the step's top-level accuracy and the gate are the gated set's, named in
`gate_set`, and `sets` holds every set's numbers. A set with `k` also samples `samples`
completions a problem at `evaluate.temperature` and stores pass@k/maj@k (loop.metrics) in
its row's `metrics`.

The held-out set depends only on `evaluate.{n_problems, levels, seed}`; proposals
never include its expressions. Round 0 is the model before any training, so
each round's gain is measured against it. The model evaluated is always the local
one being trained (ctx.eval_sampler), also when a teacher endpoint samples.
Accuracy counts a correct answer wherever the verifier finds it; `format_rate`
counts strict-format answers. A dashboard set (images; loop.problems.odometer) counts a problem
correct when every field is read right (`dashboard_fields` = 1) and reports each field's accuracy
(`fields`).
`evaluate.every = M` evaluates after every M-th round only (round 0 always); a
round not due records its step as skipped, like train's sub-steps.
"""

from __future__ import annotations

from typing import Any

from loop import cancel
from loop.context import RunContext, StageResult
from loop.metrics import set_metrics, vote_key
from loop.problems import Problem
from loop.problems.evalsets import eval_sets
from loop.problems.procedural import heldout
from loop.progress import bar
from loop.prompts import problem_messages
from loop.rounds import due
from loop.samplers import SamplingParams
from rewards import build_reward
from rewards.dashboard import field_match, fields
from store import pipeline


def evaluate_model(
    ctx: RunContext,
    problems: list[Problem] | None = None,
    name: str = "heldout",
    ks: list[int] | None = None,
    n_samples: int = 0,
) -> dict[str, Any]:
    """Greedy pass@1 on `problems`; with `ks`, also pass@k/maj@k from `n_samples` sampled
    completions a problem (`metrics`; per problem the votes and per-sample correctness in details)."""
    cfg = ctx.cfg.evaluate
    problems = heldout(cfg.n_problems, cfg.levels, cfg.seed) if problems is None else problems
    sampler = ctx.eval_sampler()
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=0)
    prompts = [problem_messages({"question": p.question, "meta": p.meta}, ctx.cfg.prompt.system) for p in problems]
    with bar(f"evaluate {name} ({len(problems)} held-out, greedy)", len(problems)) as advance:
        outs = [g[0].text for g in sampler.generate(prompts, params, cancel.ticking(advance))]
    answers = [p.answer for p in problems]
    dash = bool(problems) and all(p.kind == "dashboard" for p in problems)  # read every field right
    correct = build_reward("dashboard_fields" if dash else "correctness", {})(prompts, outs, answer=answers)
    strict = build_reward("strict_format", {})(prompts, outs, answer=answers)
    details = [
        {"question": p.question, "answer": p.answer, "completion": o, "correct": c}
        for p, o, c in zip(problems, outs, correct)
    ]
    n_correct = sum(1 for c in correct if c == 1.0)
    res = {
        "n": len(problems),
        "correct": n_correct,
        "accuracy": n_correct / len(problems),
        "format_rate": sum(1 for s in strict if s and s > 0) / len(problems),
        "details": details,
        "metrics": None,
    }
    if ks:
        res["metrics"] = sampled_metrics(sampler, prompts, answers, ks, n_samples, cfg, name, details)
    if dash:
        res["fields"] = per_field(answers, outs)
    return res


def sampled_metrics(sampler, prompts, answers, ks: list[int], n: int, cfg, name: str, details) -> dict[str, Any]:
    """pass@k/maj@k from n samples a problem at `evaluate.temperature` (seeded, reproducible);
    each problem's detail gains its vote keys and per-sample correctness."""
    params = SamplingParams(n=n, temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=1)
    with bar(f"evaluate {name} ({len(prompts)} x {n} samples, pass@k/maj@k)", len(prompts) * n) as advance:
        groups = [[c.text for c in g] for g in sampler.generate(prompts, params, cancel.ticking(advance))]
    flat = [t for g in groups for t in g]
    scores = build_reward("correctness", {})(None, flat, answer=[a for a in answers for _ in range(n)])
    correct = [[s == 1.0 for s in scores[i * n : (i + 1) * n]] for i in range(len(groups))]
    for d, texts, c in zip(details, groups, correct):
        d.update(votes=[vote_key(t) for t in texts], samples_correct=c)
    return {"samples": n, "temperature": cfg.temperature, **set_metrics(groups, correct, ks)}


def per_field(answers: list[str], outs: list[str]) -> dict[str, float]:
    """Dashboard sets: the share of problems whose each field was read right (rewards.dashboard)."""
    gold = [fields(a) for a in answers]
    pred = [fields(o) for o in outs]
    names = list(dict.fromkeys(k for g in gold for k in g))
    return {
        k: sum(bool(k in p and field_match(k, g[k], p[k])) for g, p in zip(gold, pred) if k in g) / len(gold)
        for k in names
    }


def stage(ctx: RunContext, r: int) -> StageResult:
    """Evaluate the current model after round r (r = 0: before the first round), then gate it.
    A round not due by `evaluate.every` is recorded as skipped."""
    every = ctx.cfg.evaluate.every
    if r > 0 and not due(every, r):
        return ctx.commit(r, "evaluate", {"skipped": f"evaluate.every={every}"})
    version, _ = ctx.current_model()
    keys = ("n", "correct", "accuracy", "format_rate", "metrics")
    rows, per_set = [], {}
    settings = {s.name: s for s in ctx.cfg.evaluate.sets}
    for name, split, problems in eval_sets(ctx.cfg.evaluate):
        s = settings.get(name)
        res = evaluate_model(ctx, problems, name, s.k if s else [], s.n_samples if s else 0)
        rows.append(
            {
                "run_id": ctx.run_id,
                "round": r,
                "model_version": version,
                "split": split,
                "details": res["details"],
                **{k: res.get(k) for k in keys},
            }
        )
        per_set[name] = {k: res.get(k) for k in keys if k != "metrics" or res.get(k)} | (
            {"fields": res["fields"]} if "fields" in res else {}
        )
    gate_set, res = next(iter(per_set.items()))  # the gated set comes first
    info = dict(res) | {"model_version": version, "gate_set": gate_set, "sets": per_set}
    gate = gate_decision(ctx, version, res["accuracy"], r)
    if gate:
        info["gate"] = gate | {"set": gate_set, "reason": f"{gate_set}: {gate['reason']}"}

    def write(store) -> None:
        store.insert_rows("evaluations", rows, conflict="DO NOTHING")
        if gate and not gate["accepted"]:  # every model since the last accepted evaluation (evaluate.every)
            pipeline.reject_models(store, ctx.run_id, gate["previous_round"], r, info["gate"]["reason"])

    return ctx.commit(r, "evaluate", info, write)


def gate_decision(ctx: RunContext, version: str, accuracy: float, r: int) -> dict[str, Any] | None:
    """Compare the model trained in round r with the last accepted model's held-out accuracy
    (`evaluate.gate_against: best`: the best accepted accuracy so far).

    None when there is nothing to gate (gate off, no new model this round, no earlier
    evaluation). Rejected when accuracy fell by more than `evaluate.gate_tolerance`
    (absolute); then every model trained in round r (and in rounds whose evaluation
    `evaluate.every` skipped since that evaluation) is marked rejected, so the current
    model reverts to the last accepted one."""
    cfg = ctx.cfg.evaluate
    rows = pipeline.accepted_evaluations(ctx.store, ctx.run_id, r)
    if cfg.gate_tolerance is None or not rows or rows[0]["model_version"] == version:
        return None
    prev, tol = rows[0], cfg.gate_tolerance
    ref = max(rows, key=lambda x: x["accuracy"]) if cfg.gate_against == "best" else prev
    accepted = accuracy >= ref["accuracy"] - tol
    basis = "before the round" if ref is prev else f"the best so far (round {ref['round']})"
    reason = f"held-out accuracy {accuracy:.3f} vs {ref['accuracy']:.3f} {basis} (tolerance {tol})" + (
        "" if accepted else ": dropped too far, keeping the previous model"
    )
    return {
        "accepted": accepted,
        "previous": prev["model_version"],
        "previous_accuracy": prev["accuracy"],
        "previous_round": prev["round"],
        "against": cfg.gate_against,
        "reference_accuracy": ref["accuracy"],
        "reference_round": ref["round"],
        "reason": reason,
    }
