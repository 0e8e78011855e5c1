"""Vision-language models (Qwen2.5-VL): the tiny random one for tests, and loading any one.

`build_tiny_vlm(out, tok_dir, shape)`: a seeded random `Qwen2_5_VLForConditionalGeneration`
from a small `Qwen2_5_VLConfig`, with a processor made here (Qwen2.5-VL's PIL image
processor; the given text tokenizer plus the vision special tokens `<|vision_start|>`,
`<|vision_end|>`, `<|image_pad|>`, `<|video_pad|>`; a ChatML chat template that renders
image blocks as Qwen does). `loop.models` resolves `tiny:qwen2.5-vl` with it.

`load_processor(folder)`: an image-only Qwen2.5-VL processor. transformers' own
`Qwen2_5_VLProcessor` insists on a video processor, which needs torchvision; this machine
has none and image SFT never uses video, so `ImageProcessor` takes only the image
processor and the tokenizer (same tokens, same `__call__`). Any folder with a
`preprocessor_config.json`/`processor_config.json` is a vision model (`is_vision_model`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# name -> (text config overrides, vision config overrides); random weights, seeded
TINY_VL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "qwen2.5-vl": (
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1], window_size=56),
    ),
    # Qwen2.5-VL-3B's shape (the embedded tokenizer's 49k vocabulary, not Qwen's 151k), for GPU
    # speed/memory benchmarks; saved in bf16.
    "qwen2.5-vl-3b": (
        dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
        ),
        dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            fullatt_block_indexes=[7, 15, 23, 31],
            window_size=112,
        ),
    ),
}
# Few image tokens per image on CPU: 28x28 pixels per token, 4..256 tokens.
MIN_PIXELS, MAX_PIXELS = 4 * 28 * 28, 256 * 28 * 28


def is_vision_model(folder: str | Path) -> bool:
    p = Path(folder)
    return (p / "preprocessor_config.json").is_file() or (p / "processor_config.json").is_file()


def build_tiny_vlm(out: Path, tok, key: str) -> Path:
    """Build and save the tiny VLM `key` into `out` (atomically) with the text tokenizer `tok`
    (the vision tokens are added to it); returns `out`."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text, vision = TINY_VL[key]
    tok.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    third = head_dim // 2 // 3
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [head_dim // 2 - 2 * third, third, third]}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            rope_parameters=rope,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            max_position_embeddings=4096,
            **text,
        ),
        vision_config=dict(out_hidden_size=text["hidden_size"], **vision),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    with torch.no_grad():  # no zero pad row: pad = <|im_end|> ends every turn (see loop.models)
        embed: Any = model.get_input_embeddings()
        embed.weight[tok.pad_token_id].normal_(0.0, 0.02)  # Qwen2.5-VL's initializer_range
    if text["hidden_size"] > 512:
        model = model.to(torch.bfloat16)  # type: ignore[arg-type]  # transformers' @wraps'd .to reads as unbound
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)  # the parts, not our processor class: AutoProcessor elsewhere reads them
    _image_processor().save_pretrained(tmp)
    (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    tmp.replace(out) if not out.exists() else shutil.rmtree(tmp)
    return out


def _image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def load_processor(folder: str | Path):
    """The folder's tokenizer and image processor as one image-only Qwen2.5-VL processor."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    image = Qwen2VLImageProcessorPil.from_pretrained(folder)
    return ImageProcessor(image_processor=image, tokenizer=tok, chat_template=_chat_template(folder, tok))


def _chat_template(folder: Path, tok) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    for name in ("chat_template.json", "processor_config.json"):
        try:
            found = json.loads((folder / name).read_text()).get("chat_template")
        except (OSError, ValueError):
            continue
        if found:
            return found
    return tok.chat_template or CHAT_TEMPLATE


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "chat_template.jinja", "chat_template.json")


def load_merged(base: Path, adapter: Path):
    """The VLM with its LoRA adapter merged in (fp32), for `loop export model --format merged16`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def copy_processor_files(base: Path, dest: Path) -> None:
    """The image processor's and chat template's files beside a merged VLM's weights."""
    for name in PROCESSOR_FILES:
        if (Path(base) / name).is_file():
            shutil.copy2(Path(base) / name, Path(dest) / name)


def _processor_class():
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        """Qwen2_5_VLProcessor without the video processor (which needs torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2_5_VLProcessor


def ImageProcessor(**kw):  # noqa: N802  (a class made on first use: transformers is heavy)
    global _CLASS
    if _CLASS is None:
        _CLASS = _processor_class()
    return _CLASS(**kw)


_CLASS: Any = None
