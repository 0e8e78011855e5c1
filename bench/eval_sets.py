"""A loop run trained on part of GSM8K train and evaluated on two sets every round: procedural
arithmetic and a held-out GSM8K sample the loop never trains on (`evaluate.sets`; the
proposals exclude its questions). Real embedded model, CPU. Writes
bench/results/eval_sets_rounds.json: per round and set, accuracy and n.

    python bench/eval_sets.py [--rounds 2] [--n 50] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop import inspection  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.runner import run_rounds  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=50, help="problems per evaluation set")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-evalsets-"))
    sets = (f"[{{name: arithmetic, kind: arithmetic, n: {a.n}, levels: [1, 2]}}, "
            f"{{name: gsm8k, kind: jsonl, path: {GSM8K}, n: {a.n}, seed: 7}}]")
    sources = f"[{{kind: arithmetic, count: 16, levels: [1, 2]}}, {{kind: jsonl, path: {GSM8K}, count: 16}}]"
    overrides = [f"run.dir={work}", f"evaluate.sets={sets}", f"propose.sources={sources}",
                 "evaluate.max_new_tokens=192", *a.set]
    cfg = load_config(None, overrides)
    t0 = time.time()
    ctx = run_rounds(cfg, a.rounds)
    rows = inspection.sets(cfg.store_path, ctx.run_id)
    out = {"overrides": overrides, "rounds": a.rounds, "wall_s": round(time.time() - t0, 1),
           "per_round": rows, "gate_set": "arithmetic (split heldout)"}
    (ROOT / "bench" / "results" / "eval_sets_rounds.json").write_text(json.dumps(out, indent=2, default=str))
    for r in rows:
        print(r["round"], r["split"], r["n"], r["accuracy"])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
