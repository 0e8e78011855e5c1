"""Store benchmark: batched ingest rate and `loop.inspection.summary` latency at scale.

    python bench/store.py [--sizes 1000000,10000000] [--batch 250000] [--dir DIR] [--json]

Ingest: synthetic but realistic sample rows (20-char ids, ~200-char completions,
reward JSON, sampling JSON, provenance columns) are appended in batches, one
transaction per batch that also refreshes the touched rounds' summary rows
(store/stats.py), as the sample/verify stages do; the samples primary key is
always in force. Row generation is excluded from the rates. Three paths are
compared on the first size: `Store.insert_rows` (Python dicts), `append_arrow`
with ON CONFLICT DO NOTHING (what stages use), `append_arrow(conflict=None)`
(fresh keys; a duplicate still fails on the key). The store then grows to each
size by fresh-key bulk ingest; at each size the marginal rate of both Arrow modes
is measured on MARGINAL more samples (the ON CONFLICT probe slows down as the key
index grows). Rates are wall-clock and per CPU-second of this process (the machine
may be shared: the load average is reported).
Summary: at each size the store is closed; `loop.inspection.summary` (open read-only
+ every summary query: what `loop.inspection.summary` runs) is timed cold, then the
queries alone on an open store; median of 5.
Batch size: DuckDB writes an insert of at least one row group (122,880 rows) straight
into the database file ("optimistic writes") instead of the WAL, which is then
checkpointed again: measured here, 100k-row batches ingest at ~200k/s, 250k-row batches
at ~400k/s (fresh keys). The default batch is 250k; `--batch 100000` shows the other.
Targets: ingest >= 200,000 samples/s; summary < 200 ms at 1M and 10M samples.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from store.db import Store  # noqa: E402

GROUP = 8                    # samples per problem (GRPO group)
PER_ROUND = 100_000          # samples per round
MARGINAL = 200_000           # samples appended per mode to measure the rate at a size
REWARDS = [json.dumps({"xmlcount": x, "soft_format": s, "strict_format": s, "int": i, "correctness": c})
           for x in (0.0, 0.5) for s in (0.0, 1.0) for i in (0.0, 0.5) for c in (0.0, 1.0)]
COMPLETIONS = [f"<reasoning>\nstep {k}: " + "let us add the numbers carefully " * 5 + f"\n</reasoning>\n"
               f"<answer>\n{k}\n</answer>" for k in range(64)]
SAMPLING = json.dumps({"n": GROUP, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256, "seed": 1, "stop": []})


def batch(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    """Samples start..start+n: round = i // PER_ROUND, problem = i // GROUP, idx = i % GROUP."""
    i = np.arange(start, start + n)
    verified = rng.random(n) < 0.3
    rew = rng.integers(0, len(REWARDS), n)
    return pa.table({
        "sample_id": pa.array([f"{k:020x}" for k in i.tolist()]),
        "run_id": pa.array(["run-bench"] * n).dictionary_encode(),
        "round": pa.array((i // PER_ROUND + 1).astype(np.int32)),
        "problem_id": pa.array([f"p{k:015x}" for k in (i // GROUP).tolist()]),
        "idx": pa.array((i % GROUP).astype(np.int32)),
        "model_version": pa.array(["m0"] * n).dictionary_encode(),
        "model_parent": pa.nulls(n, pa.string()),
        "loop_version": pa.array(["0.1.0"] * n).dictionary_encode(),
        "backend": pa.array(["vllm"] * n).dictionary_encode(),
        "sampling": pa.array([SAMPLING] * n).dictionary_encode(),
        "prompt_version": pa.array(["reasoning-answer-v1"] * n).dictionary_encode(),
        "completion": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 64, n).astype(np.int32)),
                                                     pa.array(COMPLETIONS)),
        "prompt_tokens": pa.array(rng.integers(40, 80, n).astype(np.int32)),
        "completion_tokens": pa.array(rng.integers(20, 256, n).astype(np.int32)),
        "finish_reason": pa.array(["stop"] * n).dictionary_encode(),
        "verifier_version": pa.array(["0.1.0"] * n).dictionary_encode(),
        "rewards": pa.DictionaryArray.from_arrays(pa.array(rew.astype(np.int32)), pa.array(REWARDS)),
        "reward_total": pa.array(rng.random(n) * 6),
        "advantage": pa.array(rng.standard_normal(n)),
        "verified": pa.array(verified),
        "extracted": pa.array(np.where(verified, "42", "7").tolist()),
    })


def side_tables(st: Store, first_round: int, last_round: int) -> None:
    """Rounds, steps, round_problems, problems and evaluations that go with the samples."""
    rounds = range(first_round, last_round + 1)
    per = PER_ROUND // GROUP
    pids = [f"p{k:015x}" for r in rounds for k in range((r - 1) * per, r * per)]
    st.append_arrow("problems", pa.table({"problem_id": pids, "source": ["arithmetic"] * len(pids),
                                          "question": ["What is 1 + 1?"] * len(pids), "answer": ["2"] * len(pids)}))
    st.append_arrow("round_problems", pa.table({"run_id": ["run-bench"] * len(pids),
                                                "round": [int(p[1:], 16) // per + 1 for p in pids], "problem_id": pids}))
    from store import stats
    for r in rounds:
        stats.record_proposed(st, "run-bench", r)
    st.insert_rows("rounds", [{"run_id": "run-bench", "round": r, "status": "done", "model_version": "m0"} for r in rounds])
    st.insert_rows("steps", [{"run_id": "run-bench", "round": r, "stage": s, "status": "done", "attempts": 1}
                             for r in rounds for s in ("propose", "sample", "verify", "train", "evaluate")])
    st.insert_rows("evaluations", [{"run_id": "run-bench", "round": r, "model_version": "m0", "split": "heldout",
                                    "n": 50, "correct": r % 50, "accuracy": (r % 50) / 50} for r in rounds])


def ingest(path: Path, start: int, stop: int, bsize: int, rng, conflict: str | None = "DO NOTHING") -> dict:
    """Append samples start..stop in batches; returns wall and CPU seconds of the store work."""
    from store import stats
    wall = cpu = 0.0
    with Store(path) as st:
        for s in range(start, stop, bsize):
            b = batch(s, min(bsize, stop - s), rng)
            t0, c0 = time.perf_counter(), time.process_time()
            with st.transaction():
                st.append_arrow("samples", b, conflict=conflict)
                for r in range(s // PER_ROUND + 1, (s + b.num_rows - 1) // PER_ROUND + 2):
                    stats.refresh_round(st, "run-bench", r)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        with st.transaction():
            side_tables(st, start // PER_ROUND + 1, (stop - 1) // PER_ROUND + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        st.con.execute("CHECKPOINT")  # durable in the main file, not only in the WAL
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu}


def new_store(path: Path) -> Path:
    with Store(path) as st, st.transaction():
        st.insert_rows("runs", [{"run_id": "run-bench", "config": {}, "loop_version": "bench"}])
    return path


def dict_path(path: Path, n: int, bsize: int, rng) -> dict:
    """The same through Store.insert_rows (Python dicts, ON CONFLICT DO NOTHING)."""
    wall = cpu = 0.0
    with Store(path) as st:
        for s in range(0, n, bsize):
            rows = batch(s, min(bsize, n - s), rng).to_pylist()
            t0, c0 = time.perf_counter(), time.process_time()
            with st.transaction():
                st.insert_rows("samples", rows)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu}


def summary_latency(path: Path, reps: int = 5) -> dict:
    from loop import inspection as inspect
    from store import queries
    cold = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s = inspect.summary(path)
        cold.append(time.perf_counter() - t0)
    with Store(path, read_only=True) as st:
        warm = []
        for _ in range(reps):
            t0 = time.perf_counter()
            queries.summary(st, "run-bench")
            warm.append(time.perf_counter() - t0)
    assert s["samples"] > 0
    return {"summary_ms": 1000 * statistics.median(cold), "summary_queries_ms": 1000 * statistics.median(warm),
            "summary_samples": s["samples"]}


def compare_paths(work: Path, n: int, bsize: int) -> dict:
    """samples/s (wall, per CPU-second) of the three ingest paths, n samples each, fresh stores."""
    out = {}
    for name, fn in [("insert_rows (dicts)", lambda p, rng: dict_path(p, n, bsize, rng)),
                     ("append_arrow, ON CONFLICT", lambda p, rng: ingest(p, 0, n, bsize, rng)),
                     ("append_arrow, fresh keys", lambda p, rng: ingest(p, 0, n, bsize, rng, conflict=None))]:
        path = new_store(work / "paths.duckdb")
        t = fn(path, np.random.default_rng(0))
        out[name] = {"rows_per_s": n / t["wall_s"], "rows_per_cpu_s": n / t["cpu_s"]}
        for f in (path, path.with_name(path.name + ".wal")):
            f.unlink(missing_ok=True)
    return out


def run(sizes: list[int], bsize: int, work: Path, compare_n: int) -> dict:
    import os
    paths = compare_paths(work, compare_n, bsize)
    path = new_store(work / "bench.duckdb")
    rng = np.random.default_rng(0)
    results, have, wall, cpu, extra = [], 0, 0.0, 0.0, 10**12
    for size in sizes:
        r = ingest(path, have, size, bsize, rng, conflict=None)
        have, wall, cpu = size, wall + r["wall_s"], cpu + r["cpu_s"]
        row = {"samples": size, "batch": bsize, "bulk_rows_per_s": size / wall, "bulk_rows_per_cpu_s": size / cpu,
               "store_mb": path.stat().st_size / 1e6, **summary_latency(path)}
        for mode, conflict in (("on_conflict", "DO NOTHING"), ("fresh", None)):
            m = ingest(path, extra, extra + MARGINAL, bsize, rng, conflict=conflict)  # ids far above: new keys
            extra += MARGINAL
            row[f"marginal_{mode}_rows_per_s"] = MARGINAL / m["wall_s"]
        results.append(row)
    return {"paths": paths, "sizes": results, "load_avg": os.getloadavg()[0], "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated sample counts, ascending")
    ap.add_argument("--batch", type=int, default=250_000, help="samples per append (one transaction each)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    ap.add_argument("--compare", type=int, default=500_000, help="samples per ingest-path comparison")
    ap.add_argument("--json", action="store_true", help="print JSON")
    a = ap.parse_args()
    sizes = sorted(int(float(s)) for s in a.sizes.split(","))
    work = a.dir or Path(tempfile.mkdtemp(prefix="loop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run(sizes, a.batch, work, a.compare)
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(results, indent=2))
        return
    render(results, a.compare)


def render(res: dict, compare_n: int) -> None:
    from rich.console import Console
    from rich.table import Table
    c = Console()
    t = Table(title=f"ingest paths, {compare_n:,} samples (target >= 200,000 samples/s)")
    for col in ("path", "samples/s (wall)", "samples/CPU-s"):
        t.add_column(col, justify="right")
    for name, r in res["paths"].items():
        t.add_row(name, f"{r['rows_per_s']:,.0f}", f"{r['rows_per_cpu_s']:,.0f}")
    c.print(t)
    t = Table(title=f"growing store (fresh-key bulk ingest); marginal rates on {MARGINAL:,} more; "
                    "`inspect summary` latency (target < 200 ms)")
    for col in ("samples", "bulk samples/s", "bulk samples/CPU-s", "at size: ON CONFLICT samples/s",
                "at size: fresh samples/s", "summary ms (cold open)", "summary queries ms", "store MB"):
        t.add_column(col, justify="right")
    for r in res["sizes"]:
        t.add_row(f"{r['samples']:,}", f"{r['bulk_rows_per_s']:,.0f}", f"{r['bulk_rows_per_cpu_s']:,.0f}",
                  f"{r['marginal_on_conflict_rows_per_s']:,.0f}", f"{r['marginal_fresh_rows_per_s']:,.0f}",
                  f"{r['summary_ms']:.1f}", f"{r['summary_queries_ms']:.1f}", f"{r['store_mb']:,.0f}")
    c.print(t)
    c.print(f"load average {res['load_avg']:.1f} on {res['cpus']} CPUs")


if __name__ == "__main__":
    main()
