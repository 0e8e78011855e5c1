"""Chat rendering shared by the local backends (hf, vllm): one prompt text, one set of stop ids.

A prompt is a list of chat messages; it is rendered with the tokenizer's own chat template
and the generation prompt (the assistant turn's opening), so both backends sample from the
same text. Generation stops at the tokenizer's EOS and at ChatML's `<|im_end|>`.
"""

from __future__ import annotations


def render(tok, messages: list[dict]) -> str:
    """The chat template applied to `messages`, ending with the assistant turn's opening."""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def eos_ids(tok) -> list[int]:
    """The tokenizer's EOS and ChatML's `<|im_end|>` (a tokenizer may name another EOS, e.g. a
    base model's `<|endoftext|>`, while its chat template ends turns with `<|im_end|>`)."""
    eos = {tok.eos_token_id}
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        eos.add(im_end)
    return sorted(i for i in eos if i is not None)
