"""Per-round stage seconds and held-out accuracy of `loop start` runs, from their loop.log.

    python bench/gpu_loop_report.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--out FILE]

Reads each run directory's structured log (JSON lines; `stage_end` events carry the stage's
seconds and counts, evaluate's counts its held-out accuracy) and prints, per run and round,
the seconds of every stage, the round's total and the accuracy after it (round 0: before
training); with two runs, the first's round time over the second's ("speedup": the second
run's mean seconds over the first's, on the rounds 1.. that both completed: a run cut mid-round
has no evaluate for that round). The last attempt of a stage counts.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGES = ["propose", "sample", "verify", "train", "evaluate"]


def read_log(run_dir: Path) -> list[dict]:
    out = []
    for f in sorted(run_dir.glob("loop.log*"), reverse=True):  # rotated files first: oldest lines
        for line in f.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def rounds(events: list[dict]) -> list[dict]:
    """One row per round: stage seconds, total, accuracy, the train stage's generation."""
    by: dict[int, dict] = {}
    for e in events:
        if e.get("event") != "stage_end":
            continue
        row = by.setdefault(int(e["round"]), {"round": int(e["round"])})
        row[f"{e['stage']}_s"] = e.get("seconds")
        counts = e.get("counts") or {}
        if e["stage"] == "evaluate" and "accuracy" in counts:
            row["heldout_accuracy"] = counts["accuracy"]
        if e["stage"] == "train":
            row["grpo_generation"] = counts.get("grpo.generation")
            row["sft_backend"] = counts.get("sft.backend")
        if e["stage"] == "sample":
            row["sample_backend"] = counts.get("backend")
    for row in by.values():
        row["round_s"] = round(sum(row.get(f"{s}_s") or 0 for s in STAGES), 2)
        row["complete"] = row.get("evaluate_s") is not None  # a run cut mid-round has no evaluate
    return [by[r] for r in sorted(by)]


def report(runs: dict[str, Path]) -> dict:
    res = {"runs": {name: rounds(read_log(d)) for name, d in runs.items()}}
    names = list(runs)
    if len(names) == 2:
        a, b = (res["runs"][n] for n in names)
        both = {r["round"] for r in a if r["complete"]} & {r["round"] for r in b if r["complete"]} - {0}

        def mean(rows: list[dict]) -> float:  # rounds 1.. that both runs completed
            return sum(r["round_s"] for r in rows if r["round"] in both) / max(1, len(both))
        if mean(a):
            res["speedup"] = {"of": names[0], "over": names[1], "round_s": round(mean(b) / mean(a), 2),
                              "rounds": sorted(both),
                              f"{names[0]}_mean_round_s": round(mean(a), 1), f"{names[1]}_mean_round_s": round(mean(b), 1)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--out")
    a = ap.parse_args()
    res = report({x.split("=", 1)[0]: Path(x.split("=", 1)[1]) for x in a.runs})
    for name, rows in res["runs"].items():
        print(name)
        for r in rows:
            stages = "  ".join(f"{s} {r.get(f'{s}_s') or 0:6.1f}" for s in STAGES)
            print(f"  round {r['round']}: {stages}  | {r['round_s']:6.1f} s  acc {r.get('heldout_accuracy')}")
    if "speedup" in res:
        print("speedup:", res["speedup"])
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
