"""`loop eval` on the real embedded model, CPU: greedy pass@1 with pass@k/maj@k from k samples,
and the s1 budget sweep (thinking budgets x "Wait" counts), on one-digit sums (a GSM8K-format
file written here; SmolLM2-135M solves too few two-digit sums to show a slope). Writes
bench/results/eval_sweep.json (every point, wall times) and bench/results/eval_sweep.png.

    python bench/eval_sweep.py [--n 24] [--budgets 16,32,64] [--waits 0,1] [--k 4]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop.config import load_config  # noqa: E402
from loop.sweep import run_eval, sweep_png  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def easy_file(path: Path, n: int) -> None:
    rng = random.Random(0)
    pairs = [(rng.randint(1, 9), rng.randint(1, 9)) for _ in range(n)]
    path.write_text("\n".join(json.dumps({"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"})
                              for a, b in pairs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--budgets", default="16,32,64")
    ap.add_argument("--waits", default="0,1")
    ap.add_argument("--k", type=int, default=4)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    easy_file(work / "easy.jsonl", a.n)
    sets = f"[{{name: easy, kind: jsonl, path: {work / 'easy.jsonl'}, k: [1, {a.k}], samples: {a.k}}}]"
    overrides = [f"run.dir={work / 'run'}", f"evaluate.sets={sets}", "evaluate.max_new_tokens=96",
                 "sample.backend=hf", "sample.budget.answer_tokens=24"]
    cfg = load_config(None, overrides)
    t0 = time.time()
    plain = run_eval(cfg, [], [])
    t1 = time.time()
    sweep = run_eval(cfg, [int(x) for x in a.budgets.split(",")], [int(x) for x in a.waits.split(",")])
    t2 = time.time()
    sweep_png(sweep, RESULTS / "eval_sweep.png")
    out = {"model": cfg.model.name, "overrides": overrides, "problems": a.n, "plain": plain["sets"],
           "plain_wall_s": round(t1 - t0, 1), "sweep": sweep["points"], "sweep_wall_s": round(t2 - t1, 1)}
    (RESULTS / "eval_sweep.json").write_text(json.dumps(out, indent=2, default=str))
    for s in plain["sets"]:
        print(s["set"], "greedy", s["accuracy"], s["metrics"])
    for p in sweep["points"]:
        print(p["waits"], p["budget"], p["accuracy"], round(p["tokens"], 1), p["budget_hit"])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
