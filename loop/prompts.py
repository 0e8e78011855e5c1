"""Prompt templates. The template version is stored with every sample, so a
change here must bump PROMPT_VERSION."""
from __future__ import annotations

PROMPT_VERSION = "reasoning-answer-v1"

SYSTEM_PROMPT = (
    "Respond in the following format:\n"
    "<reasoning>\n...\n</reasoning>\n"
    "<answer>\n...\n</answer>"
)


def messages(question: str) -> list[dict]:
    """Chat messages for one problem."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def format_chain(reasoning: str, answer: str) -> str:
    """The canonical target format that SFT teaches (the seed recipe's strict format,
    which ends with a newline after `</answer>`)."""
    return f"<reasoning>\n{reasoning.strip()}\n</reasoning>\n<answer>\n{answer.strip()}\n</answer>\n"
