"""`loop export model` per format on the real embedded model after one trained SFT round (CPU):
size on disk, export seconds (the whole `export_model` call: store read, merge, write), the
program it was loaded and run in, and greedy agreement with the trained model (base + adapter,
fp32, transformers) on 20 held-out prompts (loop.problems.procedural.heldout, the rounds'
system prompt): the share of prompts with the identical answer, and the share of answer tokens
before the first difference. Writes bench/results/exports.json.

    python bench/exports.py [--tokens 24] [--prompts 20] [--formats lora,merged16,...]

llama.cpp consumers (llama-completion, llama-quantize) are found like the exporter finds them
(LOOP_LLAMA_COMPLETION / LOOP_LLAMA_QUANTIZE, PATH, the copy scripts/setup.sh builds with
LOOP_BUILD_LLAMA_CPP=1); a format whose tool is missing is recorded as skipped, with why.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop.export.errors import ExportError  # noqa: E402
from loop.export.model import export_model  # noqa: E402
from loop.export.quantize import find_tool  # noqa: E402
from loop.problems.procedural import heldout  # noqa: E402
from loop.prompts import SYSTEM_PROMPT, messages  # noqa: E402
from tests import consumers  # noqa: E402

SETS = ["sample.backend=hf", "evaluate.backend=hf", "evaluate.n_problems=2", "evaluate.max_new_tokens=8",
        "train.sft.max_steps=4", "train.sft.batch_size=2", "train.sft.max_seq_len=96", "train.sft.learning_rate=0.001"]
# format label -> (export arguments, consumers it is run in)
CASES = {
    "lora": ({"fmt": "lora"}, ["peft", "vllm-lora"]),
    "merged16 (bf16)": ({"fmt": "merged16"}, ["transformers", "vllm"]),
    "merged16 (fp32)": ({"fmt": "merged16", "dtype": "float32"}, ["transformers", "vllm"]),
    "merged4 (nf4)": ({"fmt": "merged4", "dtype": "float32"}, ["transformers"]),
    "gguf f16": ({"fmt": "gguf", "outtype": "f16"}, ["llama.cpp"]),
    "gguf q8_0": ({"fmt": "gguf", "outtype": "q8_0"}, ["llama.cpp"]),
    "gguf q6_k": ({"fmt": "gguf", "outtype": "q6_k"}, ["llama.cpp"]),
    "gguf q5_k_m": ({"fmt": "gguf", "outtype": "q5_k_m"}, ["llama.cpp"]),
    "gguf q4_k_m": ({"fmt": "gguf", "outtype": "q4_k_m"}, ["llama.cpp"]),
    "gguf q4_0": ({"fmt": "gguf", "outtype": "q4_0"}, ["llama.cpp"]),
    "ollama q4_k_m": ({"fmt": "ollama", "outtype": "q4_k_m"}, ["llama.cpp (Modelfile prompt)"]),
}


def size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)


def token_agreement(tok, got: list[str], want: list[str]) -> float:
    """Share of the reference's answer tokens before the first token where the answers differ."""
    same = total = 0
    for g, w in zip(got, want):
        gi, wi = tok(g, add_special_tokens=False).input_ids, tok(w, add_special_tokens=False).input_ids
        k = next((i for i, (a, b) in enumerate(zip(gi, wi)) if a != b), min(len(gi), len(wi)))
        same, total = same + k, total + max(len(wi), 1)
    return round(same / total, 3)


def run_consumer(name: str, out: Path, st: dict, tok, texts: list[str], n: int) -> list[str]:
    from transformers import AutoModelForCausalLM
    if name == "peft":
        from peft import PeftModel
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(st["base"]), out).eval()
        return consumers.hf_greedy(model, tok, texts, n)
    if name == "transformers":
        return consumers.hf_greedy(AutoModelForCausalLM.from_pretrained(out).eval(), tok, texts, n)
    if name == "vllm":
        return consumers.vllm_greedy(out, tok, texts, n)
    if name == "vllm-lora":
        return consumers.vllm_greedy(st["base"], tok, texts, n, adapter=out)
    gguf = next(out.glob("*.gguf"))
    if name.endswith("(Modelfile prompt)"):
        text = (out / "Modelfile").read_text()
        texts = [consumers.modelfile_prompt(text, [{"role": "user", "content": t}]) for t in st["questions"]]
    return consumers.llama_greedy(find_tool("llama-completion"), gguf, texts, n)


def bench_case(label: str, st: dict, ref: dict, work: Path, n: int) -> dict:
    kwargs, uses = CASES[label]
    out = work / label.replace(" ", "_").replace("(", "").replace(")", "")
    row: dict = {"format": label, **{k: v for k, v in kwargs.items() if k != "fmt"}}
    t0 = time.perf_counter()
    try:
        export_model(st["store"], out, kwargs["fmt"], dtype=kwargs.get("dtype", "bfloat16"),
                     outtype=kwargs.get("outtype", "f16"))
    except ExportError as e:
        return {**row, "skipped": str(e)}
    row.update(export_s=round(time.perf_counter() - t0, 1), size_mb=size_mb(out), loads_in={})
    for use in uses:
        try:
            t0 = time.perf_counter()
            got = run_consumer(use, out, st, ref["tok"], ref["texts"], n)
        except ExportError as e:
            row["loads_in"][use] = {"skipped": str(e)}
            continue
        row["loads_in"][use] = {
            "answers_identical": round(consumers.agreement(got, ref["answers"]), 3),
            "tokens_agreeing": token_agreement(ref["tok"], got, ref["answers"]),
            "generate_s": round(time.perf_counter() - t0, 1),
        }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--formats", default=",".join(CASES))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "exports.json"))
    a = ap.parse_args()
    from loop.models import load_for_inference
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        t0 = time.perf_counter()
        st = consumers.trained_store(Path(tmp) / "run", SETS)
        train_s = round(time.perf_counter() - t0, 1)
        model, tok = load_for_inference(st["base"], st["adapter"])
        st["questions"] = [p.question for p in heldout(a.prompts, [1, 2], 7)]
        texts = [consumers.chat_text(tok, q, SYSTEM_PROMPT) for q in st["questions"]]
        assert texts[0] == tok.apply_chat_template(messages(st["questions"][0]), tokenize=False,
                                                   add_generation_prompt=True)
        ref = {"tok": tok, "texts": texts, "answers": consumers.hf_greedy(model, tok, texts, a.tokens)}
        del model
        rows = [bench_case(label, st, ref, Path(tmp) / "exports", a.tokens) for label in a.formats.split(",")]
    result = {
        "model": "embedded:smollm2-135m-instruct + one SFT round (4 steps, lr 1e-3)",
        "setup_s": train_s, "prompts": a.prompts, "greedy_tokens": a.tokens,
        "reference": "base + adapter, fp32, transformers (argmax steps)",
        "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores (shared)",
        "formats": rows,
    }
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
