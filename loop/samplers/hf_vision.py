"""Hugging Face `generate` for vision-language models (`sample.backend: hf` on a VLM folder).

Prompts are chat messages whose user content may hold image blocks
(`{"type": "image", "image": PATH}`); each image is opened as training opens it
(loop.problems.readers.images.open_image, `IMAGE_MAX_SIDE`) and passed to the model's
processor (loop.vlm.load_processor) with the rendered text. Batching, seeding (params.seed and
the batch index), EOS handling and stop strings follow loop.samplers.hf; text-only prompts (the
arithmetic held-out set) work too. Budget forcing is not supported here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loop.problems.readers.images import open_image
from loop.samplers import Completion, SamplingParams
from loop.samplers.budget import Piece
from loop.samplers.chat import eos_ids
from loop.samplers.hf import HFSampler
from loop.vlm import load_merged, load_processor

IMAGE_MAX_SIDE = 512


class HFVisionSampler(HFSampler):
    name = "hf"

    def set_adapter(self, adapter_dir) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        if self.adapter_dir:
            self.model = load_merged(self.model_dir, self.adapter_dir)
        else:
            self.model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model = self.model.to(getattr(torch, self.dtype)).eval()
        self.processor = load_processor(self.model_dir)
        self.tok = self.processor.tokenizer
        self.tok.padding_side = "left"
        self.eos_ids = eos_ids(self.tok)

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, progress: Callable[[int], None] | None = None
    ) -> list[list[Completion]]:
        if params.budgeted:
            raise ValueError("sample.budget (thinking budget / waits) is not supported for vision models")
        rendered = [self._prompt(m) for m in prompts]
        flat = [(i, *rendered[i]) for i in range(len(prompts)) for _ in range(params.n)]
        out: list[list[Completion]] = [[] for _ in prompts]
        for b, start in enumerate(range(0, len(flat), self.batch_size)):
            chunk = flat[start : start + self.batch_size]
            seed = params.seed * 100_003 + b
            pieces, used = self._vision_batch([(t, im) for _, t, im in chunk], params, seed)
            for (i, _, _), piece, n_prompt in zip(chunk, pieces, used):
                out[i].append(Completion(piece.text, n_prompt, piece.tokens, piece.finish))
            if progress:
                progress(len(chunk))
        return out

    def _prompt(self, messages: list[dict]) -> tuple[str, list]:
        images = [
            open_image(b["image"], IMAGE_MAX_SIDE)
            for m in messages
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "image"
        ]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, images

    def _vision_batch(self, items: list[tuple[str, list]], params: SamplingParams, seed: int):
        import torch

        images = [im for _, ims in items for im in ims]
        enc = self.processor(text=[t for t, _ in items], images=images or None, return_tensors="pt", padding=True).to(
            self.model.device
        )
        greedy = params.temperature == 0
        kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=not greedy, pad_token_id=self.tok.pad_token_id)
        kwargs["eos_token_id"] = self.eos_ids
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        torch.manual_seed(seed)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1] :]
        pieces: list[Piece] = [self._piece(row.tolist(), []) for row in new]
        return pieces, enc["attention_mask"].sum(dim=1).tolist()
