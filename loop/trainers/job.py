"""The training job: what the train stage hands the training process, as JSON (`job.json`).

A job names its method and backend, the base model folder and the adapter it continues,
the Parquet snapshot it trains on, the folder it publishes, and the settings of its
method; backends read it as a plain dict (`job["sft"]["max_steps"]`). `tmp` is added by
the child: the scratch folder the adapter is written to before it is renamed into `out`.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Method = Literal["sft", "grpo", "proposer", "instruct"]


class TrainJob(TypedDict, total=False):
    # vision: vision-language SFT (`loop sft` on a vision source, a VLM round's SFT; loop.trainers.vision);
    # vision-grpo: a VLM round's GRPO on its problems' images (loop.trainers.vision_grpo)
    method: Method | Literal["vision", "vision-grpo"]
    backend: str  # train.backend: auto | trl | unsloth
    base: str  # the base model folder
    parent_adapter: str | None  # the current adapter, continued; None = a fresh LoRA
    data: str  # Parquet snapshot of the examples
    out: str  # where the adapter and metrics.json are published
    tmp: str  # scratch folder (set by the child)
    seed: int
    threads: int | None
    lora: dict[str, Any]  # train.lora
    gradient_checkpointing: str
    sft: dict[str, Any]  # train.sft, for method sft
    grpo: dict[str, Any]  # train.grpo, for method grpo
    proposer: dict[str, Any]  # train.proposer + the solver's system prompt, for method proposer
    rewards: list[dict[str, Any]]  # verify.rewards, for GRPO
    instruct: dict[str, Any]  # the `instruct` section, for method instruct (`loop sft`); vision*: its layers
    heldout: str  # Parquet of the held-out rows (never trained on), for instruct
    prompts: list[Any]  # fixed prompts (chat messages or text), answered before and after
    report_to: list[str]  # train.report_to: the trainer's trackers (loop.tracking.trainer_env)
    tracker_dir: str  # where they write: RUN_DIR/tracker/round-NNN-METHOD
    extra_args: dict[str, Any]  # train.extra_args, passed to SFTConfig/GRPOConfig (loop.trainers.args)
