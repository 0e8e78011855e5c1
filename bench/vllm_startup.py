"""Where vLLM's engine start-up time goes on CPU: vLLM's defaults vs loop's settings.

    python bench/vllm_startup.py [--profiles default,fast] [--dtype float32] [--json]

Each profile starts `vllm.LLM` on the embedded model in a fresh process with
INFO logs, runs one 16-token generate, and splits the wall time at log lines
(1 s resolution: vLLM's log timestamps):
- default: vLLM's defaults (engine-core + worker processes, torch.compile with
  inductor, KV cache sized by memory fraction, warm-up/profiling run). The only
  change is VLLM_CPU_KVCACHE_SPACE=4: without an explicit KV size vLLM refuses to
  start here (it checks 92% of the NUMA node's memory, as the sandbox reports it);
- fast: loop.samplers.vllm.start_engine (in-process engine, enforce_eager,
  explicit 2 GiB KV cache, max_model_len <= 4096).
The compile cache lives in a fresh VLLM_CACHE_ROOT per run unless --warm-cache.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKS = [  # (segment that starts at this line, regex); [default only]
    ("LLM(): import entrypoints, engine config [+ spawn engine-core, re-import vllm]", r"MARK llm-call"),
    ("engine core: executor set-up", r"Initializing a V1 LLM engine"),
    ("worker: [spawn, re-import vllm,] distributed init", r"DP group leader|world_size=1 rank=0"),
    ("load model + weights", r"Starting to load model"),
    ("model runner set-up", r"Loading weights took"),
    ("[torch.compile (dynamo + inductor) + warm-up run]", r"Warming up model for the compilation"),
    ("[KV cache size decision]", r"Warming up done"),
    ("KV cache allocation + engine init", r"for KV cache on node"),
    ("finish LLM() (tokenizer, renderer)", r"init engine \(profile"),
    ("first generate (16 tokens)", r"MARK llm-ready"),
    ("end", r"MARK generated"),
]
STAMP = re.compile(r"(\d\d-\d\d \d\d:\d\d:\d\d)")


def mark(name: str) -> None:
    print(f"{time.strftime('%m-%d %H:%M:%S')} MARK {name}", file=sys.stderr, flush=True)


def child(profile: str, dtype: str) -> None:
    t0 = time.perf_counter()
    import vllm  # noqa: F401
    print(f"IMPORT {time.perf_counter() - t0:.2f}", flush=True)
    from loop.models import resolve_model
    model = resolve_model("embedded:smollm2-135m-instruct")
    mark("llm-call")
    t1 = time.perf_counter()
    if profile == "fast":
        from loop.samplers.vllm import start_engine
        llm = start_engine(model, dtype)
    else:
        from vllm import LLM
        llm = LLM(str(model), dtype=dtype)
    print(f"ENGINE {time.perf_counter() - t1:.2f}", flush=True)
    mark("llm-ready")
    from vllm import SamplingParams
    llm.generate(["What is 2 + 2?"], SamplingParams(max_tokens=16, temperature=0), use_tqdm=False)
    mark("generated")
    shutdown = getattr(llm.llm_engine.engine_core, "shutdown", None)
    if shutdown:  # the default profile's engine-core and worker processes
        shutdown()
    os._exit(0)


def breakdown(log: str) -> list[tuple[str, int]]:
    """Seconds between the first lines matching successive MARKS (those found, in time order)."""
    found = []
    for label, rx in MARKS:
        for line in log.splitlines():
            if re.search(rx, line) and (m := STAMP.search(line)):
                found.append((label, datetime.strptime(m.group(1), "%m-%d %H:%M:%S")))
                break
    found.sort(key=lambda x: x[1])
    return [(a[0], int((b[1] - a[1]).total_seconds())) for a, b in zip(found, found[1:])]


def run(profile: str, dtype: str, warm: bool) -> dict:
    env = dict(os.environ, VLLM_LOGGING_LEVEL="INFO", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    if profile == "default":
        env["VLLM_CPU_KVCACHE_SPACE"] = "4"
    with tempfile.TemporaryDirectory() as tmp:
        if not warm:
            env["VLLM_CACHE_ROOT"] = tmp
        log = Path(tmp) / "child.log"  # a file, not a pipe: engine processes inherit it
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            rc = subprocess.run([sys.executable, __file__, "--child", profile, "--dtype", dtype], env=env,
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=900).returncode
        wall = time.perf_counter() - t0
        text = log.read_text()
    if rc != 0 or "MARK generated" not in text:
        raise SystemExit(f"{profile} failed ({rc}):\n{text[-4000:]}")
    vals = dict(line.split()[:2] for line in text.splitlines() if line.startswith(("IMPORT ", "ENGINE ")))
    return {"profile": profile, "dtype": dtype, "import_s": float(vals["IMPORT"]), "engine_s": float(vals["ENGINE"]),
            "process_wall_s": round(wall, 1), "segments": breakdown(text)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", default="default,fast")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--warm-cache", action="store_true", help="keep vLLM's compile cache between runs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dtype)
    load0 = os.getloadavg()[0]
    res = [run(p, args.dtype, args.warm_cache) for p in args.profiles.split(",")]
    out = {"load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2), "runs": res}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    for r in res:
        t = Table(title=f"{r['profile']}: import {r['import_s']} s + engine {r['engine_s']} s "
                        f"(load avg {out['load_before']}->{out['load_after']})")
        t.add_column("segment")
        t.add_column("s", justify="right")
        for label, s in r["segments"]:
            t.add_row(label, str(s))
        Console().print(t)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
