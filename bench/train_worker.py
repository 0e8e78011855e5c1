"""A round's training job in a fresh child against the warm worker (train.worker, issue 20).

    python bench/train_worker.py [--model embedded:smollm2-135m-instruct] [--repeats 3]
                                 [--out bench/results/train_worker.json]

The default config's SFT job (configs/default.yaml = the built-in defaults: 20 steps, batch 4,
LoRA r 16, one torch thread), built by the train stage's own `_job` on 64 verified-style chains
(procedural arithmetic problems, their exact answers in the <reasoning>/<answer> format), run
`--repeats` times each way in one process, alternating fresh and warm so the machine's load
falls on both alike: `fresh` = `python -m loop.trainers.child JOB.json` per job, as before;
`warm` = the same job handed to one warm worker (its first job starts it and pays the imports).
Per job: wall seconds from the call to the returned metrics, the optimizer steps' seconds
(`step_times`), the rest (start-up, model load, trainer set-up, saving) and the worker's pid.
Every job has the same seed, so every adapter must be the same: `same_weights` checks it.
The machine's load average before and after is recorded (2 cores shared with other work).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _examples(n: int) -> list[dict]:
    from loop.problems.procedural import arithmetic
    from loop.prompts import format_chain, messages
    return [{"problem_id": p.problem_id, "prompt": messages(p.question),
             "completion": [{"role": "assistant", "content": format_chain(f"{p.meta['expression']} = {p.answer}.",
                                                                          p.answer)}]}
            for p in arithmetic(n, [1, 2], seed=11)]


def _job(model: str, work: Path, n: int):
    """The train stage's SFT job for round 1 of a default run (loop.stages.train._job)."""
    from loop.config import Config
    from loop.models import model_hash, resolve_model
    from loop.stages import train
    from loop.trainers.chains import write_snapshot
    cfg = Config()
    cfg.run.dir = str(work / "run")
    base = resolve_model(model)
    ctx = SimpleNamespace(cfg=cfg, base_dir=base, run_dir=work / "run",
                          round_seed=lambda r, salt="": 1234 + r,
                          current_model=lambda: (model_hash(base), None))
    write_snapshot(_examples(n), work / "data.parquet")
    return train._job(ctx, 1, "sft", str(work / "data.parquet"), str(work / "out")), cfg  # type: ignore[arg-type]


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(path / "adapter_model.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_worker.json"))
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from loop.trainers import launch
    work = Path(tempfile.mkdtemp(prefix="train-worker-"))
    job, cfg = _job(args.model, work, args.examples)
    load0 = os.getloadavg()
    rows: list[dict] = []
    ref = None
    for i in range(args.repeats):
        for mode in ("fresh", "warm"):
            out = work / f"out-{mode}-{i}"
            t0 = time.perf_counter()
            m = launch.run_child({**job, "out": str(out)}, work / f"{mode}-{i}.json", cfg.run.threads, worker=mode)
            wall = time.perf_counter() - t0
            steps = sum(m["step_times"])
            worker = launch.warm_worker() if mode == "warm" else None
            tensors = _tensors(out)
            ref = ref or tensors
            same = ref.keys() == tensors.keys() and all(torch.allclose(ref[k], tensors[k], rtol=0, atol=1e-6)
                                                        for k in ref)
            rows.append({"mode": mode, "repeat": i, "wall_s": round(wall, 2), "steps_s": round(steps, 2),
                         "overhead_s": round(wall - steps, 2), "steps": m["steps"], "train_loss": m["train_loss"],
                         "peak_memory_gb": round(m["peak_memory_gb"], 3), "worker_pid": worker.pid if worker else None,
                         "same_weights_as_first": same})
            print(json.dumps(rows[-1]), flush=True)
    launch.close_worker()

    def col(mode: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["mode"] == mode]

    summary = {mode: {"wall_s": col(mode, "wall_s"), "overhead_s": col(mode, "overhead_s"),
                      "median_wall_s": statistics.median(col(mode, "wall_s")),
                      "median_overhead_s": statistics.median(col(mode, "overhead_s"))}
               for mode in ("fresh", "warm")}
    warm_later = col("warm", "wall_s")[1:]  # the jobs after the worker's first (a run's rounds 2..N)
    result = {
        "model": args.model,
        "job": {"method": "sft", "max_steps": job["sft"]["max_steps"], "batch_size": job["sft"]["batch_size"],
                "examples": args.examples, "threads": cfg.run.threads},
        "rows": rows,
        "summary": summary,
        "warm_after_first_median_wall_s": statistics.median(warm_later) if warm_later else None,
        "saved_per_job_s": round(summary["fresh"]["median_wall_s"] - statistics.median(warm_later), 2)
        if warm_later else None,
        "same_weights": all(r["same_weights_as_first"] for r in rows),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("summary", "saved_per_job_s", "same_weights")}, indent=2))


if __name__ == "__main__":
    main()
