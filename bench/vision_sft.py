"""Vision SFT (`loop sft -c configs/vision.yaml`) speed and memory, per backend and quantization.

The course's figure to compare against: Qwen2.5-VL, 2 examples x 30 steps, 3.9 GB peak on an
RTX 4090. On the H200: `python bench/vision_sft.py --model tiny:qwen2.5-vl-3b` (Qwen2.5-VL-3B's
shape, random weights) runs trl 16-bit LoRA, unsloth 16-bit LoRA and unsloth 4-bit QLoRA (unsloth
needs CUDA and the package); on CPU `--cases trl-16bit --model tiny:qwen2.5-vl --steps 2` checks
the script. Writes bench/results/vision_sft_<model>.json: per case s/step (median after the first
step), the device's peak memory (sampled, GB), torch's peak allocation, held-out loss before/after.

    python bench/vision_sft.py [--model NAME] [--steps 30] [--cases trl-16bit unsloth-16bit unsloth-4bit]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop.config import load_config  # noqa: E402
from loop.instruct import run_sft  # noqa: E402

CASES = {"trl-16bit": ("trl", "16bit"), "unsloth-16bit": ("unsloth", "16bit"), "unsloth-4bit": ("unsloth", "4bit")}
COURSE = {"gpu": "RTX 4090", "examples_x_steps": "2 x 30", "peak_gb": 3.9}


def run_case(name: str, model: str, steps: int) -> dict:
    backend, quant = CASES[name]
    work = Path(tempfile.mkdtemp(prefix=f"bench-vision-{name}-"))
    sets = [f"run.dir={work}", f"model.name={model}", f"instruct.vision.backend={backend}",
            f"train.lora.quant={quant}", f"instruct.max_steps={steps}", "instruct.batch_size=2",
            "instruct.grad_accum=1", "instruct.max_new_tokens=16"]
    cfg = load_config(ROOT / "configs" / "vision.yaml", sets)
    sheet = "odometer.xlsx" if importlib.util.find_spec("openpyxl") else "odometer.csv"  # the same rows
    cfg.instruct.sources[0].path = str(ROOT / "data" / "vision" / sheet)
    t0 = time.time()
    info = run_sft(cfg)
    shutil.rmtree(work, ignore_errors=True)
    times = info.get("step_times") or []
    return {"case": name, "backend": backend, "quant": quant, "model": model, "steps": info["steps"],
            "s_per_step": statistics.median(times[1:]) if len(times) > 1 else None,
            "first_step_s": times[0] if times else None,
            "device_peak_gb": info.get("device_peak_gb"), "torch_peak_gb": info.get("peak_memory_gb"),
            "heldout_loss_before": info["heldout_loss_before"], "heldout_loss_after": info["heldout_loss_after"],
            "wall_s": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny:qwen2.5-vl-3b")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    a = ap.parse_args()
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    out = {"course": COURSE, "device": device, "cases": []}
    for name in a.cases:
        try:
            out["cases"].append(run_case(name, a.model, a.steps))
        except Exception as e:  # noqa: BLE001  (one case failing, e.g. no unsloth, keeps the others)
            out["cases"].append({"case": name, "error": f"{type(e).__name__}: {e}"[:500]})
        print(json.dumps(out["cases"][-1]))
        dest = ROOT / "bench" / "results" / f"vision_sft_{a.model.replace(':', '_')}.json"
        dest.write_text(json.dumps(out, indent=2) + "\n")  # after each case: a time limit keeps the rows done


if __name__ == "__main__":
    main()
