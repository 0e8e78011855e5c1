"""Self-play with and without proposer GRPO (issue 19): the proposer's mean learnability per round.

Runs `loop start --rounds N -c configs/self.yaml` twice on the embedded model, once as shipped
(train.proposer.every=0) and once with `train.proposer.every=1`, then reads both stores: per round
the proposals drawn and kept, the share kept, the kept problems' mean learnability 4p(1-p) of their
pass rate in that round, held-out accuracy, and the proposer job's mean reward at its first and last
step. Writes bench/results/proposer_training.json.

    python bench/proposer_training.py [--rounds 3] [--only with|without] [--report-only] [--dir /tmp/ptrain]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop import inspection  # noqa: E402
from store.db import Store  # noqa: E402

VARIANTS = {"without": [], "with": ["train.proposer.every=1"]}


def run(name: str, rounds: int, base: Path) -> float:
    """One loop run of configs/self.yaml; its wall seconds."""
    sets = [f"run.dir={base / name}", "run.threads=1", *VARIANTS[name]]
    cmd = [sys.executable, "-m", "cli", "start", "--rounds", str(rounds), "-c", "configs/self.yaml"]
    cmd += [x for s in sets for x in ("--set", s)]
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return round(time.monotonic() - t0, 1)


def per_round(db: Path) -> list[dict]:
    """loop inspect proposer's rows (drawn, kept, share kept, mean learnability of the kept proposals'
    problems) with the round's held-out accuracy and the proposer job's first/last mean reward."""
    curve = {r["round"]: r for r in inspection.proposer(db)["rounds"]}
    with Store(db, read_only=True) as store:
        evals = {x["round"]: json.loads(x["info"]) for x in store.query("SELECT round, info FROM steps WHERE stage = 'evaluate'")}
        jobs = {x["round"]: json.loads(x["metrics"]) for x in store.query("SELECT round, metrics, config FROM models")
                if json.loads(x["config"]).get("method") == "proposer"}
    out = []
    for r in sorted(set(curve) | set(evals)):
        c, job = curve.get(r, {}), jobs.get(r, {})
        out.append({"round": r, "proposals": c.get("drawn", 0), "kept": c.get("kept", 0),
                    "kept_share": c.get("kept_share"), "mean_learnability": c.get("mean_learnability"),
                    "heldout_accuracy": evals.get(r, {}).get("accuracy"),
                    "proposer_first_reward": job.get("first_reward"), "proposer_last_reward": job.get("last_reward")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=list(VARIANTS))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--dir", default="/tmp/ptrain")
    a = ap.parse_args()
    base, names = Path(a.dir), [a.only] if a.only else list(VARIANTS)
    dest = ROOT / "bench" / "results" / "proposer_training.json"
    before = json.loads(dest.read_text())["variants"] if dest.exists() else {}  # an earlier --only run's wall time
    walls = {n: v.get("wall_s") for n, v in before.items()}
    walls |= {} if a.report_only else {n: run(n, a.rounds, base) for n in names}
    result = {"config": "configs/self.yaml", "rounds": a.rounds, "variants": {}}
    for n in VARIANTS:
        db = base / n / "loop.duckdb"
        if db.exists():
            result["variants"][n] = {"sets": VARIANTS[n], "wall_s": walls.get(n), "rounds": per_round(db)}
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
