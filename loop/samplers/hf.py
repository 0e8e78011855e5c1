"""Hugging Face `generate` backend: batched, left-padded, sampled or greedy.

A group is the prompt repeated n times inside a batch. Reproducibility: the torch
RNG is seeded with (params.seed, batch index) before each batch, so the same
prompts, params and batch size give the same completions. Stop strings end a
row (HF `stop_strings`); the text is cut before the earliest one. Budget
forcing (params.thinking_budget / num_waits) runs through
loop.samplers.budget: later phases batch the continuations that are left,
grouped by (max_tokens, stop), each batch seeded from its first request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loop import cancel
from loop.models import load_for_inference
from loop.samplers import Completion, SamplingParams, sample_dtype
from loop.samplers.budget import Piece, Request, cut_at_stop, run_budgeted
from loop.samplers.chat import eos_ids, render


class HFSampler:
    name = "hf"

    def __init__(self, model_dir, adapter_dir, sample_cfg, model_cfg):
        self.model_dir = Path(model_dir)
        self.dtype = sample_dtype("hf", sample_cfg, model_cfg)
        self.batch_size = sample_cfg.batch_size
        self.set_adapter(adapter_dir)

    def set_adapter(self, adapter_dir) -> None:
        # HF has no hot LoRA swap for a merged model: reload base + merge (cheap at this size).
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.model, self.tok = load_for_inference(self.model_dir, self.adapter_dir, self.dtype)
        self.eos_ids = eos_ids(self.tok)

    def close(self) -> None:
        self.model = None

    def _render(self, messages: list[dict]) -> str:
        return render(self.tok, messages)

    def _count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, progress: Callable[[int], None] | None = None
    ) -> list[list[Completion]]:
        texts = [self._render(m) for m in prompts]
        prompt_tokens = [self._count(t) for t in texts]

        def first(max_tokens: int, stop: list[str], prog) -> list[list[Piece]]:
            return self._groups(texts, params, max_tokens, stop, prog)

        def cont(reqs: list[Request], phase: int) -> list[Piece]:
            return self._continue(reqs, params)

        return run_budgeted(texts, prompt_tokens, params, first, cont, self._count, progress)

    def _groups(
        self,
        texts: list[str],
        params: SamplingParams,
        max_tokens: int,
        stop: list[str],
        progress: Callable[[int], None] | None,
    ) -> list[list[Piece]]:
        flat = [(i, t) for i, t in enumerate(texts) for _ in range(params.n)]
        out: list[list[Piece]] = [[] for _ in texts]
        for b, start in enumerate(range(0, len(flat), self.batch_size)):
            chunk = flat[start : start + self.batch_size]
            pieces = self._batch([t for _, t in chunk], params, max_tokens, stop, params.seed * 100_003 + b)
            for (i, _), piece in zip(chunk, pieces):
                out[i].append(piece)
            if progress:
                progress(len(chunk))
        return out

    def _continue(self, reqs: list[Request], params: SamplingParams) -> list[Piece]:
        """Continuations batched by equal (max_tokens, stop); results in request order."""
        out: list[Piece | None] = [None] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for k, r in enumerate(reqs):
            groups.setdefault((r.max_tokens, tuple(r.stop)), []).append(k)
        for (max_tokens, stop), idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                cancel.check()
                chunk = idx[start : start + self.batch_size]
                pieces = self._batch(
                    [reqs[k].prompt for k in chunk], params, max_tokens, list(stop), reqs[chunk[0]].seed
                )
                for k, piece in zip(chunk, pieces):
                    out[k] = piece
        return out  # type: ignore[return-value]

    def _batch(
        self, texts: list[str], params: SamplingParams, max_tokens: int, stop: list[str], seed: int
    ) -> list[Piece]:
        import torch

        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        greedy = params.temperature == 0
        kwargs = dict(
            max_new_tokens=max_tokens,
            do_sample=not greedy,
            eos_token_id=self.eos_ids,
            pad_token_id=self.tok.pad_token_id,
        )
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tok)
        torch.manual_seed(seed)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1] :]
        return [self._piece(row.tolist(), stop) for row in new]

    def _piece(self, ids: list[int], stop: list[str]) -> Piece:
        n, finish = len(ids), "length"
        for k, t in enumerate(ids):
            if t in self.eos_ids:
                n, finish = k, "stop"
                break
        text, which = cut_at_stop(self.tok.decode(ids[:n], skip_special_tokens=True), stop)
        return Piece(text=text, tokens=n, finish="stop" if which else finish, stop=which)
