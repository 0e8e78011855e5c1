"""`loop eval`: evaluate the run's current model on its evaluation sets, now, without a round.

- Plain: every set (`evaluate.sets`, or the procedural `heldout`) as the evaluate stage does:
  greedy pass@1 and format rate, plus pass@k/maj@k of a set with `k` (loop.metrics).
- Budget sweep (s1, "simple test-time scaling"): for each `waits` w and thinking `budget` b,
  every set is answered greedily with budget forcing (loop.samplers.budget): thinking is cut at
  b tokens (then `</reasoning>` and the answer are forced, with `sample.budget.answer_tokens`),
  and the model's first w attempts to end its thinking are replaced by "Wait". A point is
  (set, waits, budget) -> accuracy, mean completion tokens, the share that hit the budget and
  the mean waits used. No budget (`budgets` empty, waits given) is the plain token cap
  `evaluate.max_new_tokens`.

Nothing is written to the store (an evaluation on demand is no round); the run is opened as
`loop start` opens it (sources validated, model resolved, store locked), so it is the model a
next round would evaluate. `sweep_png` draws accuracy against mean tokens, a line per waits.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from loop import cancel
from loop.config import Config
from loop.inspection.view import pyplot
from loop.problems import Problem, ProposeError
from loop.problems.evalsets import eval_sets
from loop.progress import bar
from loop.prompts import messages
from loop.runner import open_run
from loop.samplers import SamplingParams
from loop.stages.evaluate import evaluate_model
from rewards import build_reward


def run_eval(cfg: Config, budgets: list[int], waits: list[int], only: str | None = None) -> dict[str, Any]:
    """{"run_id", "model_version", "sets": [...]} plain, or with "points" for a sweep."""
    sets = _pick(eval_sets(cfg.evaluate), only)
    settings = {s.name: s for s in cfg.evaluate.sets}
    ctx = open_run(cfg)
    try:
        version, _ = ctx.current_model()
        out: dict[str, Any] = {"run_id": ctx.run_id, "model_version": version}
        if not budgets and not waits:
            out["sets"] = []
            for name, _, probs in sets:
                s = settings.get(name)
                res = evaluate_model(ctx, probs, name, s.k if s else [], s.n_samples if s else 0)
                res.pop("details")
                out["sets"].append({"set": name, **res})
            return out
        sampler = ctx.eval_sampler()
        caps: list[int | None] = [*budgets] or [None]  # None: no budget, the plain token cap
        out["points"] = [
            {"set": name, **budget_point(sampler, probs, b, w, cfg, name)}
            for name, _, probs in sets
            for w in waits or [0]
            for b in caps
        ]
        return out
    finally:
        ctx.close()


def _pick(sets: list[tuple[str, str, list[Problem]]], only: str | None) -> list[tuple[str, str, list[Problem]]]:
    if only is None:
        return sets
    picked = [s for s in sets if s[0] == only]
    if not picked:
        raise ProposeError(f"loop eval --only {only!r}: no such evaluation set; sets: {', '.join(s[0] for s in sets)}")
    return picked


def budget_point(sampler, problems: list[Problem], budget: int | None, waits: int, cfg: Config, name: str) -> dict:
    """Greedy accuracy of one (budget, waits) point on one set."""
    answer_tokens = cfg.sample.budget.answer_tokens
    cap = cfg.evaluate.max_new_tokens if budget is None else budget + answer_tokens
    params = SamplingParams(
        n=1,
        temperature=0.0,
        max_new_tokens=cap,
        seed=0,
        thinking_budget=budget,
        num_waits=waits,
        answer_tokens=answer_tokens,
    )
    prompts = [messages(p.question, cfg.prompt.system) for p in problems]
    label = f"eval {name}: budget {budget if budget is not None else 'none'}, waits {waits}"
    with bar(f"{label} ({len(problems)} problems)", len(problems)) as advance:
        comps = [g[0] for g in sampler.generate(prompts, params, cancel.ticking(advance))]
    scores = build_reward("correctness", {})(prompts, [c.text for c in comps], answer=[p.answer for p in problems])
    return {
        "budget": budget,
        "waits": waits,
        "n": len(problems),
        "accuracy": sum(s == 1.0 for s in scores) / len(problems),
        "tokens": fmean(c.completion_tokens for c in comps),
        "budget_hit": fmean(bool(c.meta.get("budget_hit")) for c in comps),
        "waits_used": fmean(c.meta.get("waits_used", 0) for c in comps),
    }


def sweep_png(data: dict[str, Any], path) -> None:
    """Accuracy (%) against mean tokens per completion: one line per (set, waits), points by budget."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lines: dict[tuple[str, int], list[dict]] = {}
    for p in data["points"]:
        lines.setdefault((p["set"], p["waits"]), []).append(p)
    for (name, w), pts in lines.items():
        pts = sorted(pts, key=lambda p: p["tokens"])
        ax.plot([p["tokens"] for p in pts], [100 * p["accuracy"] for p in pts], marker="o", label=f"{name}, waits {w}")
        for p in pts:
            ax.annotate(str(p["budget"] or "none"), (p["tokens"], 100 * p["accuracy"]), fontsize=7)
    ax.set(
        xlabel="tokens per completion (mean; labels: thinking budget)",
        ylabel="accuracy (%)",
        ylim=(0, 100),
        title=f"budget sweep, model {data['model_version']}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
