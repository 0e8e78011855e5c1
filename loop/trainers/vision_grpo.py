"""Vision-language GRPO in the training child (`method: vision-grpo`: a VLM round's GRPO).

Contract:
- Rows (`job["data"]`, loop.trainers.vision_rows.grpo_vision_examples): {"problem_id", "prompt":
  chat messages with string content (the system prompt, the question), "answer" (the gold),
  "pass_rate", "image": the problem's image path (None: a text-only problem), "image_sha256",
  "max_side"}. Each image is opened here as sampling opens it (loop.problems.readers.images.
  open_image: RGB, longer side <= max_side) into TRL's `image` column; GRPOTrainer puts it before
  the first user turn's text (trl.data_utils.prepare_multimodal_messages), where the sampler
  shows it (loop.prompts.problem_messages).
- Model: loop.trainers.vision.trl_model (the job's parent adapter continued, else a fresh LoRA on
  the layers `instruct.vision` selects), the VLM's processor as TRL's processing_class.
- Training: loop.trainers.trl.run_grpo (TRL GRPOTrainer, the same GRPOConfig arguments as text
  GRPO), rewards `job["rewards"]` (verify.rewards, e.g. dashboard_fields) called with TRL's
  signature `(prompts, completions, **columns)`, the gold in the `answer` column. Generation is
  Hugging Face generate (metrics `generation: hf`); TRL only, never unsloth (vision_rows.vision_job).
- Output: the adapter and the processor's tokenizer in `job["tmp"]`; metrics as text GRPO's
  (first/last reward and loss, steps, step times, peak memory).
"""

from __future__ import annotations

from typing import Any

from loop.problems.readers.images import open_image
from loop.trainers import trl as trl_backend
from loop.trainers.vision import trl_model


def load_rows(path: str) -> list[dict[str, Any]]:
    """A snapshot's GRPO rows with each image opened (RGB, resized) in place of its path."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return [{**r, "image": open_image(r["image"], r["max_side"]) if r.get("image") else None} for r in rows]


def grpo(job: dict) -> dict:
    from datasets import Dataset

    cuda = trl_backend._setup(job)
    model, processor, peft = trl_model(job)
    data = Dataset.from_list(load_rows(job["data"]))
    metrics = trl_backend.run_grpo(job, model, processor, cuda, peft, label="vision GRPO", dataset=data)
    processor.tokenizer.save_pretrained(job["tmp"])
    return metrics
