"""Model resolution: special tokens of converted and tiny models (loop/models.py)."""
from __future__ import annotations

import pytest

from loop.models import CONVERSION, chatml_tokens, resolve_model

S, E, T = "<|im_start|>", "<|im_end|>", "<|endoftext|>"


@pytest.fixture(scope="module")
def chatml_tok():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(resolve_model("tiny:llama"))


@pytest.mark.parametrize("eos, pad, want_eos, want_pad", [
    (S, S, E, E),      # what transformers' GGUF reader gives SmolLM2: all three named <|im_start|>
    (E, None, E, E),   # no pad: pad on EOS
    (E, T, E, T),      # a pad of its own is kept
    (T, None, E, E),   # another EOS: ChatML's turn end wins, since turns end there
])
def test_chatml_tokens(chatml_tok, eos, pad, want_eos, want_pad):
    tok = chatml_tok
    tok.bos_token, tok.eos_token, tok.pad_token = S, eos, pad
    chatml_tokens(tok)
    assert (tok.eos_token, tok.pad_token) == (want_eos, want_pad)


def test_chatml_tokens_leaves_a_non_chatml_tokenizer_alone():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"a": 0, "<unk>": 1, "</s>": 2}, "<unk>")),
                                  eos_token="</s>", unk_token="<unk>")
    chatml_tokens(tok)
    assert (tok.eos_token, tok.pad_token) == ("</s>", "</s>")


def test_converted_embedded_model_ends_turns_with_im_end():
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig
    path = resolve_model("embedded:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    im_end = tok.convert_tokens_to_ids(E)
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token) == (im_end, im_end, S)
    assert AutoConfig.from_pretrained(path).eos_token_id == im_end
    gen = GenerationConfig.from_pretrained(path)
    assert (gen.eos_token_id, gen.pad_token_id) == (im_end, im_end)


def test_tiny_model_has_no_zero_embedding_row():
    # a zero row (nn.Embedding's padding_idx) on a token that every chat turn contains sent
    # TRL's gradients to NaN in the 28-layer tiny:llama-1.5b
    import torch
    from transformers import AutoModelForCausalLM
    path = resolve_model("tiny:llama")
    assert path.name.endswith(f"-v{CONVERSION}")
    emb = AutoModelForCausalLM.from_pretrained(path).get_input_embeddings().weight
    assert bool((emb.abs().sum(-1) > 0).all())
    assert emb.shape[0] > 1000 and torch.isfinite(emb).all()
