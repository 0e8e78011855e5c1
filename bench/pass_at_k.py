"""pass@k of the embedded model, before training and with a run's adapter, on the default held-out
problems: how much a run's greedy accuracy could rise by sharpening what the model already samples.

HF generate on CPU (one thread), `--samples` completions a problem at temperature 0.8, top-p 0.95,
128 new tokens, the default system prompt; verified as the verify stage does. Writes
bench/results/pass_at_k.json (overall and per problem kind).

    taskset -c 1 python bench/pass_at_k.py --adapter RUN/models/round-005-sft [--n 100] [--samples 8]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def correct_counts(model, tok, problems, samples: int, batch: int = 8) -> list[tuple[str, int]]:
    """(kind, correct completions out of `samples`) per problem."""
    import torch

    from loop.prompts import messages
    from rewards import extract_answer, verify

    out = []
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        texts = [tok.apply_chat_template(messages(p.question), add_generation_prompt=True, tokenize=False)
                 for p in chunk]
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=128, do_sample=True, temperature=0.8, top_p=0.95,
                                 num_return_sequences=samples, pad_token_id=tok.pad_token_id)
        decoded = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for j, p in enumerate(chunk):
            done = decoded[j * samples:(j + 1) * samples]
            ok = sum(bool(verify(str(p.answer), extract_answer(t).value or "", timeout_s=2.0).equal) for t in done)
            out.append((p.kind, ok))
    return out


def table(counts: list[tuple[str, int]], samples: int, ks: list[int]) -> dict:
    from loop.metrics import pass_at_k

    def mean(rows):
        return {f"pass@{k}": round(sum(pass_at_k(samples, c, k) for _, c in rows) / len(rows), 3) for k in ks}

    res = mean(counts)
    for kind in sorted({k for k, _ in counts}):
        res[kind] = mean([x for x in counts if x[0] == kind])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True, help="a run's LoRA folder (e.g. RUN/models/round-005-sft)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pass_at_k.json"))
    a = ap.parse_args()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loop.models import resolve_model
    from loop.problems.procedural import heldout

    torch.set_num_threads(1)
    base = resolve_model("embedded:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = "left"
    problems = heldout(a.n, [1, 2], 1_000_003)  # the default evaluate.levels and seed
    ks = sorted({1, min(4, a.samples), a.samples})
    out = {"n": a.n, "samples": a.samples, "adapter": a.adapter, "models": {}}
    for name, adapter in [("base", None), ("adapter", a.adapter)]:
        model = AutoModelForCausalLM.from_pretrained(base)
        if adapter:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        t0 = time.time()
        out["models"][name] = {**table(correct_counts(model.eval(), tok, problems, a.samples), a.samples, ks),
                               "s": round(time.time() - t0)}
        print(name, json.dumps(out["models"][name]), flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
