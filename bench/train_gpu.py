"""Unsloth vs TRL training backends on the same jobs: seconds per step and peak memory.

Each (backend, method) job runs in its own process through loop.trainers.launch.run_child, so
peak GPU memory is per job. Seconds per step is the median after the first step
(the first includes compilation); each row also has TRL's profiled phases (generation,
rewards, loss), summed and per step. Run on a CUDA machine:

    python bench/train_gpu.py --model gguf:/tmp/smollm2.gguf --json out.json
    python bench/train_gpu.py --model tiny:llama-1.5b --steps 6
    python bench/train_gpu.py --model tiny:llama-7b --methods sft --sft-tokens 384 --steps 20
    python bench/train_gpu.py --methods grpo --backends trl,unsloth,unsloth@off+UNSLOTH_GRPO_SEQ_PACKING=1
    python bench/train_gpu.py --model tiny:llama-7b --methods sft --backends trl,unsloth,unsloth:4bit
    python bench/train_gpu.py --model tiny:llama-1.5b --methods grpo --baseline trl+LOOP_GRPO_GENERATION=hf \
        --backends trl+LOOP_GRPO_GENERATION=hf,unsloth+LOOP_GRPO_GENERATION=hf,unsloth,trl

GRPO generation (train.grpo.generation.engine, auto = vllm on CUDA) is picked per row with
+LOOP_GRPO_GENERATION=hf|vllm; each row records the one it used (`generation`: hf,
vllm-unsloth, vllm-colocate) and the device's peak memory (`device_peak_gb`: total - free,
sampled in the child; vLLM's sleep-mode memory is outside torch's own peak, `peak_memory_gb`).
Ratios are against the `--baseline` row (default trl).
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
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


FILLER = " Check: add the tens, then the ones, and compare with the estimate."  # ~15 tokens


def _jobs(model: str, work: Path, steps: int, grpo_batch: int = 64, completion_len: int = 128,
          sft_tokens: int = 0, sft_pad_multiple: int | None = None, sft_spread: bool = False) -> dict:
    from loop.config import Config
    from loop.models import resolve_model
    from loop.problems.procedural import arithmetic
    from loop.prompts import format_chain, messages
    from loop.trainers.chains import write_snapshot
    base = resolve_model(model)
    probs = arithmetic(256, [1, 2], seed=11)
    n = sft_tokens // 15
    sft = [{"problem_id": p.problem_id, "prompt": messages(p.question),
            "completion": [{"role": "assistant", "content": format_chain(
                f"{p.meta['expression']} = {p.answer}." + FILLER * (i % (n + 1) if sft_spread else n), p.answer)}]}
           for i, p in enumerate(probs)]
    grpo = [{"problem_id": p.problem_id, "prompt": messages(p.question), "answer": p.answer, "pass_rate": 0.5}
            for p in probs]
    write_snapshot(sft, work / "sft.parquet")
    write_snapshot(grpo, work / "grpo.parquet")
    cfg = Config().train
    cfg.sft.max_steps, cfg.sft.batch_size, cfg.sft.pad_to_multiple_of = steps, 16, sft_pad_multiple
    cfg.grpo.max_steps, cfg.grpo.batch_size, cfg.grpo.num_generations = steps, grpo_batch, 8
    cfg.grpo.max_completion_length = completion_len
    common = {"base": str(base), "parent_adapter": None, "seed": 0, "threads": None,
              "lora": cfg.lora.model_dump(mode="json"),
              "rewards": [r.model_dump(mode="json") for r in Config().verify.rewards]}
    return {m: {**common, "method": m, "data": str(work / f"{m}.parquet"), m: getattr(cfg, m).model_dump(mode="json")}
            for m in ("sft", "grpo")}


def run(model: str, steps: int, backends: list[str], methods: list[str], launcher: str | None = None,
        **kw) -> list[dict]:
    from loop.trainers.launch import run_child
    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        jobs = _jobs(model, work, steps, **kw)
        for method in methods:
            for i, backend in enumerate(backends):
                name, quant, gc, env = parse_backend(backend)
                job = {**jobs[method], "backend": name, "gradient_checkpointing": gc,
                       "out": str(work / f"{method}-{i}")}
                if quant:
                    job["lora"] = {**job["lora"], "quant": quant}
                t0 = time.perf_counter()
                try:
                    with mock.patch.dict(os.environ, env):
                        m = run_child(job, work / f"{method}-{i}.json", None, launcher)
                except Exception as e:  # noqa: BLE001 - one failed backend still reports the other
                    rows.append({"method": method, "backend": backend, "error": str(e)})
                    continue
                warm = m["step_times"][1:] or m["step_times"]
                print(json.dumps({"method": method, "backend": backend, **m}), flush=True)
                rows.append({"method": method, "backend": backend, "steps": m["steps"],
                             "job_s": round(time.perf_counter() - t0, 1),  # imports, load, engine start, steps
                             "processes": m.get("processes", 1),
                             "s_per_step": statistics.median(warm), "first_step_s": m["step_times"][0],
                             "peak_memory_gb": m["peak_memory_gb"], "last_loss": m["last_loss"],
                             "phase_s": m.get("phase_s", {}), "total_step_s": sum(m["step_times"]),
                             "generation": m.get("generation"), "device_peak_gb": m.get("device_peak_gb"),
                             "generate_s_per_step": _warm_median(_generation_steps(m.get("phase_steps", {})))})
    return rows


GENERATION_PHASES = ("transformers.generate", "vLLM.generate", "sync_weights")  # TRL's profiled blocks


def _generation_steps(phase_steps: dict[str, list[float]]) -> list[float] | None:
    """Seconds per step spent generating (HF or vLLM, with vLLM's weight sync), summed."""
    found = [phase_steps[k] for k in GENERATION_PHASES if phase_steps.get(k)]
    return [sum(xs) for xs in zip(*found)] if found else None


def _warm_median(xs: list[float] | None) -> float | None:
    return statistics.median(xs[1:] or xs) if xs else None


def parse_backend(spec: str) -> tuple[str, str | None, str, dict]:
    """`unsloth:4bit@off+KEY=VAL+...`: backend, train.lora.quant (None: the config's),
    train.gradient_checkpointing, extra child environment."""
    head, *envs = spec.split("+")
    head, _, gc = head.partition("@")
    name, _, quant = head.partition(":")
    return name, quant or None, gc or "auto", dict(e.split("=", 1) for e in envs)


def phase_share(row: dict) -> dict[str, float]:
    """Each profiled phase as a share of all step time (generation, rewards, loss forward, ...)."""
    total = row.get("total_step_s") or 0
    return {k: v / total for k, v in row.get("phase_s", {}).items()} if total else {}


def ratios(rows: list[dict], baseline: str = "trl") -> list[dict]:
    """Each other row against the baseline row of its method: speedup per step, memory ratio
    (torch's peak; device_memory_ratio from the device's peak where both rows have one)."""
    out = []
    by = {(r["method"], r["backend"]): r for r in rows if "error" not in r}
    for method in sorted({r["method"] for r in rows}):
        t = by.get((method, baseline))
        for (m, backend), u in by.items():
            if m == method and backend != baseline and t:
                x = {"method": method, "backend": backend, "speedup": t["s_per_step"] / u["s_per_step"],
                     "memory_ratio": u["peak_memory_gb"] / t["peak_memory_gb"]}
                if u.get("device_peak_gb") and t.get("device_peak_gb"):
                    x["device_memory_ratio"] = u["device_peak_gb"] / t["device_peak_gb"]
                out.append(x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--backends", default="unsloth,trl",
                    help="comma list; NAME:QUANT sets train.lora.quant (16bit, 4bit); NAME@GC sets "
                         "train.gradient_checkpointing (off, on, offload); "
                         "+KEY=VAL adds to the child's environment")
    ap.add_argument("--methods", default="sft,grpo")
    ap.add_argument("--grpo-batch", type=int, default=64, help="completions per GRPO step")
    ap.add_argument("--completion-len", type=int, default=128)
    ap.add_argument("--sft-tokens", type=int, default=0, help="lengthen SFT chains by about this many tokens")
    ap.add_argument("--sft-spread", action="store_true", help="chain lengths spread evenly up to --sft-tokens")
    ap.add_argument("--sft-pad-multiple", type=int, help="train.sft.pad_to_multiple_of (few batch shapes, "
                    "e.g. with +UNSLOTH_BLOCK_CUDAGRAPHS=1)")
    ap.add_argument("--launcher", help='train.launcher for every row, e.g. "torchrun --nproc_per_node 2"')
    ap.add_argument("--baseline", default="trl", help="the row the others are compared with")
    ap.add_argument("--json", help="write results here")
    a = ap.parse_args()
    rows = run(a.model, a.steps, a.backends.split(","), a.methods.split(","), launcher=a.launcher,
               grpo_batch=a.grpo_batch, completion_len=a.completion_len, sft_tokens=a.sft_tokens,
               sft_pad_multiple=a.sft_pad_multiple, sft_spread=a.sft_spread)
    res = {"model": a.model, "launcher": a.launcher, "rows": rows, "ratios": ratios(rows, a.baseline),
           "baseline": a.baseline}
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"training backends on {a.model}")
    for c in ("method", "backend", "generation", "s/step (warm)", "generate s/step", "first step s", "peak GiB",
              "device GiB", "error"):
        t.add_column(c)
    for r in rows:
        gen = r.get("generate_s_per_step")
        t.add_row(r["method"], r["backend"], str(r.get("generation") or ""), f"{r.get('s_per_step', 0):.3f}",
                  "" if gen is None else f"{gen:.3f}", f"{r.get('first_step_s', 0):.1f}",
                  f"{r.get('peak_memory_gb', 0):.2f}", f"{r.get('device_peak_gb') or 0:.2f}", r.get("error", "")[:60])
    Console().print(t)
    for r in rows:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(phase_share(r).items(), key=lambda kv: -kv[1])[:5])
        if shares:
            print(f"{r['method']} {r['backend']}: {shares}")
    for x in res["ratios"]:
        dev = f", {x['device_memory_ratio']:.2f}x its device memory" if "device_memory_ratio" in x else ""
        print(f"{x['method']}: {x['backend']} {x['speedup']:.2f}x faster per step, {x['memory_ratio']:.2f}x the "
              f"memory of {a.baseline}{dev}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
