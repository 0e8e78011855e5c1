"""The default demo at several seeds: held-out accuracy per round, stage times, median and spread.

    python bench/demo.py [--seeds 0,1,2] [--rounds 5] [-c configs/default.yaml] [--set KEY=VALUE ...]
                         [--dir /tmp/loop-demo] [--out bench/results/demo_seeds.json]

Runs `loop start --rounds R` once per seed (`run.seed`), one after another, each in a fresh run
directory, and times each as a whole command (engine start-up included). From each run's store
(`loop inspect --json`) and structured log (`loop.log`, stage_end events) it writes, per seed: the
held-out accuracy after every round (round 0: before training), each stage's seconds per round,
the GRPO stages' first and last mean reward with the round's pass rate before and the next round's
after; then per round the median, min and max over seeds, and the final accuracy's median and spread.
The held-out set is the config's (`evaluate.seed`), the same for every seed. The machine's load
average before and after is recorded: other work on the cores slows every stage.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from gpu_loop_report import read_log, rounds  # noqa: E402 - the same stage_end reader


def loop_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("loop")
    return [str(exe)] if exe.exists() else [sys.executable, str(ROOT / "cli.py")]


def run_seed(seed: int, args) -> dict:
    run_dir = Path(args.dir) / f"seed-{seed}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    sets = [f"run.dir={run_dir}", f"run.seed={seed}", *args.set]
    flags = ["-c", args.config, *[x for s in sets for x in ("--set", s)]]
    t0 = time.perf_counter()
    proc = subprocess.run([*loop_cmd(), "start", "--rounds", str(args.rounds), *flags], cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"seed": seed, "error": f"loop start exited {proc.returncode}", "wall_s": round(wall, 1)}
    out = subprocess.run([*loop_cmd(), "inspect", "--json", *flags], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    stored = json.loads(out.stdout)["rounds"]
    logged = {r["round"]: r for r in rounds(read_log(run_dir))}
    return {"seed": seed, "wall_s": round(wall, 1), "rounds": [merge(r, logged.get(r["round"], {})) for r in stored],
            "grpo": grpo_stages(read_log(run_dir), stored)}


def merge(stored: dict, logged: dict) -> dict:
    keep = ("round", "problems", "samples", "verified_frac", "mean_reward", "solved", "train_examples",
            "heldout_accuracy", "format_rate", "accepted")
    return {**{k: stored.get(k) for k in keep}, **{k: v for k, v in logged.items() if k.endswith("_s")}}


def grpo_stages(events: list[dict], stored: list[dict]) -> list[dict]:
    """Each round whose train stage ran GRPO: the job's first/last step mean reward, the round's
    pass rate (sampled before it) and the next round's (sampled with the model it made)."""
    frac = {r["round"]: r.get("verified_frac") for r in stored}
    acc = {r["round"]: r.get("heldout_accuracy") for r in stored}
    out = []
    for e in events:
        counts = e.get("counts") or {}
        if e.get("event") == "stage_end" and e.get("stage") == "train" and "grpo.steps" in counts:
            r = int(e["round"])
            out.append({"round": r, "steps": counts["grpo.steps"], "examples": counts.get("grpo.examples"),
                        "first_reward": counts.get("grpo.first_reward"), "last_reward": counts.get("grpo.last_reward"),
                        "pass_rate_before": frac.get(r), "pass_rate_after": frac.get(r + 1),
                        "heldout_before": acc.get(r - 1), "heldout_after": acc.get(r)})
    return out


def summary(seeds: list[dict], rounds_n: int) -> dict:
    ok = [s for s in seeds if "rounds" in s]
    per_round = []
    for r in range(rounds_n + 1):
        accs = [x["heldout_accuracy"] for s in ok for x in s["rounds"] if x["round"] == r and
                x["heldout_accuracy"] is not None]
        if accs:
            per_round.append({"round": r, "median": statistics.median(accs), "min": min(accs), "max": max(accs)})
    final = [s["rounds"][-1]["heldout_accuracy"] for s in ok if s["rounds"]]
    return {"per_round": per_round, "final_median": statistics.median(final) if final else None,
            "final_spread": (max(final) - min(final)) if final else None,
            "every_seed_above_round0": all(s["rounds"][-1]["heldout_accuracy"] > s["rounds"][0]["heldout_accuracy"]
                                           for s in ok if s["rounds"]),
            "wall_min": [round(s["wall_s"] / 60, 1) for s in seeds]}


def table(res: dict) -> None:
    for s in res["seeds"]:
        if "error" in s:
            print(f"seed {s['seed']}: {s['error']}")
            continue
        print(f"seed {s['seed']}: {s['wall_s'] / 60:.1f} min")
        for r in s["rounds"]:
            stages = " ".join(f"{k[:-2]} {r[k]:6.1f}" for k in ("sample_s", "train_s", "evaluate_s") if r.get(k))
            acc = r["heldout_accuracy"]
            print(f"  round {r['round']}: acc {acc if acc is None else f'{acc:.3f}'}  {stages}")
        for g in s["grpo"]:
            print(f"  GRPO round {g['round']}: reward {g['first_reward']} -> {g['last_reward']}, pass rate "
                  f"{g['pass_rate_before']} -> {g['pass_rate_after']}")
    print(json.dumps(res["summary"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-c", "--config", default="configs/default.yaml")
    ap.add_argument("--set", action="append", default=[], help="a config override for every seed (repeatable)")
    ap.add_argument("--dir", default="/tmp/loop-demo", help="parent of the per-seed run directories")
    ap.add_argument("--out", default=str(ROOT / "bench/results/demo_seeds.json"))
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    seeds = []
    for s in (int(x) for x in args.seeds.split(",")):
        seeds.append(run_seed(s, args))
        res = {"config": args.config, "sets": args.set, "rounds": args.rounds, "load_before": round(load0, 2),
               "load_after": round(os.getloadavg()[0], 2), "seeds": seeds, "summary": summary(seeds, args.rounds)}
        Path(args.out).write_text(json.dumps(res, indent=2))  # after every seed: a cut run keeps the others
    table(res)


if __name__ == "__main__":
    main()
