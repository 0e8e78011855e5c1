"""Readers while a run writes: `loop inspect` latency during a round, and the writer's round
time with and without a reader polling.

    python bench/store_readers.py [--rounds 3] [--config configs/tiny.yaml] [--preload 0]
                                  [--interval 0] [--out bench/results/store_readers.json]

Three runs of `loop start --rounds N` in fresh run directories, in their own process (as a
user runs them): `quiet` with no reader; `polled` with a reader process calling every
inspect library function (`summary`, `rounds`, `problems`, `samples`, `curve`; what
`loop inspect ...` runs after its imports) in turn, `--interval` seconds apart, until the
run ends; `polled_copy`, the control, with the same reader on a copy of the quiet run's store
(the same reads and CPU, but no lock between them and the writer): polled minus polled_copy is
what sharing the file costs the writer, polled_copy minus quiet what the reader's CPU does.
Each call's latency (open read-only + queries + close, the wait for the writer's
transaction included) and every refusal are recorded. Round time = the sum of a round's
`stage_end` seconds in `loop.log`. `--preload N` first puts N synthetic samples into the
store (bench/store.py's rows, under a run id of their own) so the writer's opens and
checkpoints and the readers' queries run on a store of that size. The machine's load
average is recorded: on 2 shared cores, the reader's CPU is part of what the writer pays.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READER = """
import json, sys, time
from loop import inspection as lib
path, stop, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
calls = [("summary", lib.summary), ("rounds", lib.rounds), ("problems", lib.problems),
         ("samples", lib.samples), ("curve", lib.curve)]
import os
out, i = [], 0
while not os.path.exists(stop):
    name, fn = calls[i % len(calls)]
    i += 1
    t0 = time.perf_counter()
    try:
        fn(path)
        out.append({"call": name, "ms": 1000 * (time.perf_counter() - t0), "ok": True})
    except Exception as e:  # a refusal is a result here, not a crash
        out.append({"call": name, "ms": 1000 * (time.perf_counter() - t0), "ok": False, "error": str(e)[:200]})
    time.sleep(interval)
print(json.dumps(out))
"""


def preload(store: Path, n: int) -> None:
    if n <= 0:
        return
    import numpy as np

    from bench.store import batch
    from store.db import Store
    rng = np.random.default_rng(0)
    with Store(store) as st:
        for start in range(0, n, 250_000):
            with st.transaction():  # run id 'run-bench', which has no runs row: the loop starts its own
                st.append_arrow("samples", batch(start, min(250_000, n - start), rng), conflict=None)


def one_run(cfg: str, rounds: int, polled: bool, interval: float, n_preload: int,
            read_path: Path | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="loop-readers-"))
    run, store, stop = tmp / "run", tmp / "run" / "loop.duckdb", tmp / "stop"
    run.mkdir()
    preload(store, n_preload)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    reader = None
    t0 = time.time()
    writer = subprocess.Popen([sys.executable, "-m", "cli", "start", "--rounds", str(rounds), "-c", cfg,
                               "--set", f"run.dir={run}"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if polled:
        while read_path is None and not store.exists():
            time.sleep(0.01)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(read_path or store), str(stop), str(interval)],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    err = writer.communicate()[1]
    wall = time.time() - t0
    stop.touch()
    calls = json.loads(reader.communicate()[0]) if reader else []
    if writer.returncode != 0:
        raise SystemExit(f"loop start failed: {err[-2000:]}")
    per_round: dict[int, float] = {}
    for line in (run / "loop.log").read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "stage_end" and ev.get("round", 0) >= 1:
            per_round[ev["round"]] = per_round.get(ev["round"], 0.0) + ev["seconds"]
    return {"store": str(store), "wall_s": round(wall, 2),
            "round_s": [round(per_round[r], 2) for r in sorted(per_round)],
            "median_round_s": round(statistics.median(per_round.values()), 2), "reader": _latency(calls)}


def _latency(calls: list[dict]) -> dict:
    if not calls:
        return {}
    ok = sorted(c["ms"] for c in calls if c["ok"])
    by = {}
    for name in sorted({c["call"] for c in calls}):
        ms = sorted(c["ms"] for c in calls if c["call"] == name and c["ok"])
        by[name] = {"n": len(ms), "median_ms": round(statistics.median(ms), 1) if ms else None,
                    "max_ms": round(ms[-1], 1) if ms else None}
    return {"calls": len(calls), "refused": sum(not c["ok"] for c in calls),
            "errors": sorted({c.get("error", "") for c in calls if not c["ok"]})[:3],
            "median_ms": round(statistics.median(ok), 1), "p95_ms": round(ok[int(0.95 * (len(ok) - 1))], 1),
            "max_ms": round(ok[-1], 1), "by_call": by}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("--preload", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = {"config": a.config, "rounds": a.rounds, "preload_samples": a.preload, "interval_s": a.interval,
           "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    res["quiet"] = one_run(a.config, a.rounds, False, a.interval, a.preload)
    res["polled"] = one_run(a.config, a.rounds, True, a.interval, a.preload)
    copy = Path(tempfile.mkdtemp(prefix="loop-readers-copy-")) / "loop.duckdb"
    shutil.copy(res["quiet"]["store"], copy)
    res["polled_copy"] = one_run(a.config, a.rounds, True, a.interval, a.preload, read_path=copy)
    res["loadavg_after"] = os.getloadavg()
    q = res["quiet"]["median_round_s"]
    res["round_slowdown"] = {k: round(res[k]["median_round_s"] / q, 3) for k in ("polled", "polled_copy")}
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
