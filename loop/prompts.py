"""Prompt templates. The template version is stored with every sample, so a
change here must bump PROMPT_VERSION; a configured `prompt.system` replaces SYSTEM_PROMPT
in every problem's chat (sample, verify, train rows, evaluate, loop eval) and tags the version."""

from __future__ import annotations

import hashlib
import json

PROMPT_VERSION = "reasoning-answer-v1"

SYSTEM_PROMPT = "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"


def messages(question: str, system: str | None = None) -> list[dict]:
    """Chat messages for one problem; `system` is `prompt.system` (None = SYSTEM_PROMPT, "" = none)."""
    text = SYSTEM_PROMPT if system is None else system
    return ([{"role": "system", "content": text}] if text else []) + [{"role": "user", "content": question}]


def system_text(system: str | None = None) -> str | None:
    """The system message `prompt.system` gives (None: no system message)."""
    return (SYSTEM_PROMPT if system is None else system) or None


def prompt_version(system: str | None = None) -> str:
    """PROMPT_VERSION, tagged with a hash of a configured system prompt (stored with each sample)."""
    if system is None:
        return PROMPT_VERSION
    return f"{PROMPT_VERSION}+system:{hashlib.sha256(system.encode()).hexdigest()[:8]}"


def problem_messages(problem: dict, system: str | None = None) -> list[dict]:
    """Chat messages for a stored problem (`system`: as for `messages`); one with an image in its
    meta (a dashboard) shows the image before the question (an image block, loop.samplers.hf_vision)."""
    meta = problem.get("meta") or {}
    meta = json.loads(meta) if isinstance(meta, str) else meta
    msgs = messages(problem["question"], system)
    if meta.get("image"):
        msgs[-1] = {
            "role": "user",
            "content": [{"type": "image", "image": meta["image"]}, {"type": "text", "text": problem["question"]}],
        }
    return msgs


def format_chain(reasoning: str, answer: str) -> str:
    """The canonical target format that SFT teaches (the seed recipe's strict format,
    which ends with a newline after `</answer>`)."""
    return f"<reasoning>\n{reasoning.strip()}\n</reasoning>\n<answer>\n{answer.strip()}\n</answer>\n"


# The course's Alpaca prompt (Unsloth's notebooks); a source's system prompt replaces its first line.
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
ALPACA_PROMPT = "{preamble}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def alpaca_prompt(instruction: str, input: str = "", system: str | None = None) -> str:
    """The Alpaca prompt text up to the response (the completion, then EOS, follows)."""
    return ALPACA_PROMPT.format(preamble=system or ALPACA_PREAMBLE, instruction=instruction, input=input)
