"""Code-reasoning rounds on the real embedded model (configs/code.yaml, sizes from --set): per
round, the model's program proposals (kept, rejected by reason), the pass-rate distribution of
the round's tasks per kind, held-out accuracy on the code set (gated) and on arithmetic, and the
gate's decision. Writes bench/results/code_rounds.json.

    python bench/code_rounds.py [--rounds 5] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop import inspection  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.runner import run_rounds  # noqa: E402
from store import proposals  # noqa: E402
from store.db import Store  # noqa: E402


def round_rows(store: Store, run_id: str, rounds: int) -> list[dict]:
    out = []
    for r in range(1, rounds + 1):
        summary = proposals.round_summary(store, run_id, r)
        props, rates, gate = summary["proposals"], summary["rates"], summary["evaluate"]
        by_kind: dict[str, list[float]] = {}
        for x in rates:
            by_kind.setdefault(x["kind"], []).append(round(float(x["pass_rate"]), 3))
        out.append({
            "round": r,
            "proposals": len(props),
            "kept": sum(p["status"] == "kept" for p in props),
            "rejected_by_reason": dict(Counter(p["reason"] for p in props if p["status"] == "rejected")),
            "pass_rates_by_kind": {k: sorted(v) for k, v in sorted(by_kind.items())},
            "gate": (json.loads(gate).get("gate") or {}).get("accepted") if gate else None,
        })
    return out


def by_level(store: Store, run_id: str, cfg) -> list[dict]:
    """Held-out code accuracy per round, split by the task's level and kind (the set is
    regenerated from its seed: questions map back to their problems)."""
    from loop.problems.evalsets import set_problems

    out = []
    rows = store.query(
        "SELECT round, details FROM evaluations WHERE run_id = ? AND details IS NOT NULL ORDER BY round", [run_id]
    )
    for s in cfg.evaluate.sets:
        if s.kind != "code":
            continue
        meta = {p.question: (p.level, p.meta["task"]) for p in set_problems(s)}
        for r in rows:
            details = json.loads(r["details"])
            if not details or details[0]["question"] not in meta:
                continue  # another set's row
            tally: dict[str, list[int]] = {}
            for d in details:
                level, task = meta[d["question"]]
                for key in (f"level {level}", task):
                    tally.setdefault(key, [0, 0])[0] += d["correct"] == 1.0
                    tally[key][1] += 1
            out.append({"round": r["round"], "set": s.name, **{k: f"{c}/{n}" for k, (c, n) in sorted(tally.items())}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "code_rounds.json"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-code-"))
    overrides = [f"run.dir={work}", *a.set]
    cfg = load_config(ROOT / "configs" / "code.yaml", overrides)
    t0 = time.time()
    ctx = run_rounds(cfg, a.rounds)
    with Store(cfg.store_path, read_only=True) as st:
        rows = round_rows(st, ctx.run_id, a.rounds)
        levels = by_level(st, ctx.run_id, cfg)
    out = {"config": "configs/code.yaml", "overrides": a.set, "rounds": a.rounds,
           "wall_s": round(time.time() - t0, 1), "per_round": rows,
           "heldout": inspection.sets(cfg.store_path, ctx.run_id), "code_heldout_by_level_and_kind": levels}
    Path(a.out).write_text(json.dumps(out, indent=2, default=str))
    for r in out["heldout"]:
        print(r["round"], r["split"], r["n"], r["accuracy"])
    for r in levels:
        print(r)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
