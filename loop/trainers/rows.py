"""Instruction conversations as TRL SFT rows, and `train.sft.mix`: instruction data mixed into a
round's verified chains.

`to_row`: {"messages"} -> a prompt/completion row, conversational (the model's chat template)
or the course's Alpaca prompt text. `mix_examples`: per `train.sft.mix` source, a seeded
sample of round(weight x chains) conversations (weight 1.0 = as many rows as verified chains),
in the chains' row schema (problem_id `mix:<hash>`, conversational prompt/completion).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from loop.problems.seeds import source_conversations
from loop.prompts import alpaca_prompt


def to_row(conv: dict[str, Any], template: str) -> dict[str, Any]:
    """A TRL prompt/completion row: conversational (chat template) or Alpaca text."""
    msgs = conv["messages"]
    if template == "chat":
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    return {"prompt": _alpaca_text(msgs), "completion": msgs[-1]["content"]}


def _alpaca_text(msgs: list[dict[str, str]]) -> str:
    system = next((m["content"] for m in msgs if m["role"] == "system"), None)
    user = [m["content"] for m in msgs if m["role"] == "user"][-1]
    instruction, _, extra = user.partition("\n\n")  # alpaca rows join instruction and input so
    return alpaca_prompt(instruction, extra, system)


def mix_examples(mix, n_chains: int, seed: int) -> list[dict[str, Any]]:
    """Instruction rows to add to `n_chains` verified chains (none when there are no chains)."""
    out: list[dict[str, Any]] = []
    for k, src in enumerate(mix):
        want = round(src.weight * n_chains)
        convs = source_conversations(src)
        for conv in random.Random(seed + k).sample(convs, min(want, len(convs))):
            row = to_row(conv, "chat")
            key = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
            out.append({"problem_id": f"mix:{key}", **row})
    return out
