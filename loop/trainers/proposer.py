"""Proposer GRPO (`train.proposer`, method `proposer`): the model learns to write problems it can learn from.

Contract:
- The job's Parquet rows are proposer prompts (`prompt`: the chat the proposer saw, from the
  `proposals` table: store.proposals.recent_prompts); `job["proposer"]` is train.proposer plus
  `system` (the solver's system prompt, prompt.system).
- Each fresh completion is parsed and gated as the propose stage gates it
  (loop.proposer.training.LearnabilityReward: format, the answer program run twice in
  loop.sandbox, duplicates of the prompts' own few-shot problems rejected), then solved
  `solves` times by the policy being trained (HF generate on the sample stage's prompt, in eval
  mode, without gradients); the share of answers equal to the program's (rewards.verify) is its
  pass rate p and its reward learnability(p) = 4p(1-p); an invalid proposal earns 0.
- Proposer and solver are one model (one adapter, as in Absolute Zero): the job continues the
  current adapter and publishes the next one, like the sft and grpo methods.
- It runs on the trl backend's model and LoRA (loop.trainers.trl) on CPU or GPU; generation is
  HF generate (no vLLM engine), its metrics record `generation: hf` and the reward's mean per
  step (first_reward, last_reward: mean learnability at the start and the end of the job).
"""

from __future__ import annotations

from loop.progress import train_callback
from loop.prompts import messages
from loop.proposer.gate import Gate, parse
from loop.proposer.training import LearnabilityReward
from loop.samplers.chat import eos_ids, render
from loop.trainers import trl
from rewards import extract_answer, verify


def shot_problems(prompt: list[dict]) -> list[str]:
    """The few-shot problems in a proposer prompt: its earlier assistant turns, parsed."""
    texts = [parse(m["content"]).problem for m in prompt if m.get("role") == "assistant"]
    return [t for t in texts if t]


class PolicySolver:
    """`solve(question, answer) -> pass rate` by sampling the (training) model itself."""

    def __init__(self, model, tok, settings: dict):
        self.model, self.tok, self.cfg = model, tok, settings

    def __call__(self, question: str, answer: str) -> float:
        import torch

        text = render(self.tok, messages(question, self.cfg.get("system")))
        ids = self.tok(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        training = self.model.training
        self.model.eval()  # no dropout, no recomputation hooks while it answers
        try:
            with torch.no_grad():
                out = self.model.generate(
                    **ids,
                    do_sample=True,
                    temperature=self.cfg["temperature"],
                    top_p=0.95,
                    max_new_tokens=self.cfg["solve_max_new_tokens"],
                    num_return_sequences=self.cfg["solves"],
                    eos_token_id=eos_ids(self.tok),
                    pad_token_id=self.tok.pad_token_id,
                )
        finally:
            self.model.train(training)
        texts = self.tok.batch_decode(out[:, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        right = sum(1 for t in texts if (v := extract_answer(t).value) and verify(answer, v).equal is True)
        return right / len(texts)


def enough_prompts(ds, settings: dict):
    """The rows repeated, in turn, until one step's prompts are there (fewer: TRL trains 0 steps)."""
    need = settings["batch_size"] // settings["num_generations"]
    if len(ds) >= need:
        return ds
    from datasets import concatenate_datasets

    return concatenate_datasets([ds] * -(-need // len(ds))).select(range(need))


def grpo_job(job: dict) -> dict:
    """The job as trl.grpo_args reads it: train.proposer in place of train.grpo, one reward."""
    p = job["proposer"]
    keys = ("max_steps", "batch_size", "num_generations", "max_completion_length", "learning_rate", "beta")
    return {**job, "grpo": {**{k: p[k] for k in keys}, "temperature": p["temperature"]}, "rewards": []}


def grpo(job: dict) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cuda = trl._setup(job)
    model, peft_config, tok = trl._model_and_peft(job)
    ds = enough_prompts(Dataset.from_parquet(job["data"]), job["proposer"])
    shots = dict.fromkeys(t for row in ds["prompt"] for t in shot_problems(row))  # distinct, in order
    reward = LearnabilityReward(solve=lambda q, a: 0.0, gate=Gate((f"shot-{i}", t) for i, t in enumerate(shots)))
    args = GRPOConfig(**{**trl.grpo_args(grpo_job(job), cuda), "reward_weights": [1.0]})
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[train_callback("train (proposer GRPO)"), trl.step_timer()],
    )
    reward.solve = PolicySolver(trainer.model, tok, job["proposer"])  # the policy as it trains
    trl._quiet(trainer)
    return {**trl._finish(trainer, trainer.train(), len(ds), job["tmp"]), "generation": "hf"}
