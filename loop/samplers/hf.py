"""Hugging Face `generate` backend: batched, left-padded, sampled or greedy.

A group is the prompt repeated n times inside a batch. Reproducibility: the torch
RNG is seeded with (params.seed, batch index) before each batch, so the same
prompts, params and batch size give the same completions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from loop.models import load_for_inference
from loop.sample import Completion, SamplingParams


class HFSampler:
    name = "hf"

    def __init__(self, model_dir, adapter_dir, sample_cfg, model_cfg):
        self.model_dir = Path(model_dir)
        self.dtype = model_cfg.dtype
        self.batch_size = sample_cfg.batch_size
        self.set_adapter(adapter_dir)

    def set_adapter(self, adapter_dir) -> None:
        # HF has no hot LoRA swap for a merged model: reload base + merge (cheap at this size).
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.model, self.tok = load_for_inference(self.model_dir, self.adapter_dir, self.dtype)
        eos = {self.tok.eos_token_id}
        im_end = self.tok.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tok.unk_token_id:
            eos.add(im_end)
        self.eos_ids = sorted(i for i in eos if i is not None)

    def close(self) -> None:
        self.model = None

    def _render(self, messages: list[dict]) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[list[dict]], params: SamplingParams,
                 progress: Callable[[int], None] | None = None) -> list[list[Completion]]:
        texts = [self._render(m) for m in prompts]
        flat = [(i, t) for i, t in enumerate(texts) for _ in range(params.n)]
        out: list[list[Completion]] = [[] for _ in prompts]
        for b, start in enumerate(range(0, len(flat), self.batch_size)):
            chunk = flat[start:start + self.batch_size]
            for (i, _), c in zip(chunk, self._batch([t for _, t in chunk], params, b)):
                out[i].append(c)
            if progress:
                progress(len(chunk))
        return out

    def _batch(self, texts: list[str], params: SamplingParams, batch_idx: int) -> list[Completion]:
        import torch
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        greedy = params.temperature == 0
        kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=not greedy,
                      eos_token_id=self.eos_ids, pad_token_id=self.tok.pad_token_id)
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tok)
        torch.manual_seed(params.seed * 100_003 + batch_idx)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1]:]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        return [self._completion(row, int(pl), params) for row, pl in zip(new, prompt_lens)]

    def _completion(self, row, prompt_len: int, params: SamplingParams) -> Completion:
        ids = row.tolist()
        n = len(ids)
        finish = "length"
        for k, t in enumerate(ids):
            if t in self.eos_ids:
                n, finish = k, "stop"
                break
        text = self.tok.decode(ids[:n], skip_special_tokens=True)
        if finish == "length" and params.stop and any(text.rstrip().endswith(s) for s in params.stop):
            finish = "stop"
        return Completion(text=text, prompt_tokens=prompt_len, completion_tokens=n, finish_reason=finish)
