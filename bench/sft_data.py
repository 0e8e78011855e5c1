"""`loop sft` on real instruction data, CPU, the real embedded model: the medical CSV
(configs/medical.yaml) and the Alpaca rows (configs/alpaca.yaml), with the test data in
../shared/data/. Writes bench/results/sft_<name>.json: the data's provenance, held-out
loss and perplexity before/after, the fixed prompts' answers before/after, time per step.

    python bench/sft_data.py [medical] [alpaca] [--steps N] [--set key=value ...]
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

from loop.config import load_config  # noqa: E402
from loop.instruct import run_sft  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CASES = {"medical": ("configs/medical.yaml", DATA / "medical" / "Data_数据"),
         "alpaca": ("configs/alpaca.yaml", DATA / "alpaca" / "alpaca_en_demo.json")}


def run_case(name: str, steps: int | None, sets: list[str]) -> dict:
    cfg_file, data = CASES[name]
    work = Path(tempfile.mkdtemp(prefix=f"bench-sft-{name}-"))
    cfg = load_config(ROOT / cfg_file, [f"run.dir={work}", *sets])
    cfg.instruct.sources[0].path = str(data)  # the shipped config's path is the user's to set
    if steps:
        cfg.instruct.max_steps = steps
    t0 = time.time()
    info = run_sft(cfg)
    shutil.rmtree(work, ignore_errors=True)
    times = info.get("step_times") or []
    return {"case": name, "config": cfg_file, "model": cfg.model.name, "threads": cfg.run.threads,
            "instruct": cfg.instruct.model_dump(mode="json"), "wall_s": round(time.time() - t0, 1), **info,
            "s_per_step": round(sum(times) / len(times), 3) if times else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    out_dir = ROOT / "bench" / "results"
    for name in a.cases:
        res = run_case(name, a.steps, a.set)
        (out_dir / f"sft_{name}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str))
        print(json.dumps({k: res.get(k) for k in ("case", "heldout_loss_before", "heldout_loss_after",
                                                 "heldout_ppl_before", "heldout_ppl_after", "wall_s")}))


if __name__ == "__main__":
    main()
