"""Prompt templates. The template version is stored with every sample, so a
change here must bump PROMPT_VERSION."""

from __future__ import annotations

PROMPT_VERSION = "reasoning-answer-v1"

SYSTEM_PROMPT = "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"


def messages(question: str) -> list[dict]:
    """Chat messages for one problem."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


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
