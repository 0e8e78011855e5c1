"""`model.chat_template`: a chat template that replaces the tokenizer's, checked before round 0.

`model.chat_template` is a named template (`TEMPLATES`), a Jinja template string (it holds
`{{` or `{%`), or a file holding one. `check_template` compiles it the way transformers does
(its sandboxed Jinja environment) and renders a test conversation (system, user, assistant,
user, then the generation prompt); a template that fails names its source and line, and one
that drops the user's words is refused. `templated_folder` gives the model folder everything
loads from (samplers, the training child, exports): without a template the base folder as
it is; with one, a cached copy of the folder whose files are links to the base's, except
the tokenizer's template (`chat_template.jinja`, and no `chat_template` key in
tokenizer_config.json). The weights are the base's, so the model version is unchanged; the
template is pinned with the run's config (loop.run_config: `model`).
A model with no template and none configured is refused with what to set, instead of
transformers' error at the first prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import traceback
from pathlib import Path

import jinja2

from loop.models import ModelError, loop_cache, resolve_model

# Plain ChatML (the embedded model's template without its default system message).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TEMPLATES: dict[str, str] = {"chatml": CHATML}
PROBE = "Probe question 7 + 5?"
TEST_CONVERSATION = [
    {"role": "system", "content": "You are a test."},
    {"role": "user", "content": "Hello."},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": PROBE},
]
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json", "additional_chat_templates")


def template_text(spec: str) -> tuple[str, str]:
    """(the template, where it came from) for a `model.chat_template` value."""
    if spec in TEMPLATES:
        return TEMPLATES[spec], f"model.chat_template {spec!r}"
    if "{{" in spec or "{%" in spec:
        return spec, "model.chat_template (inline)"
    p = Path(spec).expanduser()
    if not p.is_file():
        raise ModelError(
            f"model.chat_template {spec!r}: not a named template (valid: {', '.join(sorted(TEMPLATES))}), "
            f"not a Jinja template (no {{{{ or {{%), and no such file"
        )
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"model.chat_template {p}: cannot read it as UTF-8: {e}") from None


def check_template(text: str, source: str) -> str:
    """Render the test conversation with `text`; return the rendering or raise ModelError naming
    `source` and the template's line."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        tpl = _compile_jinja_template(text)
    except jinja2.TemplateSyntaxError as e:
        raise ModelError(f"{source}:{e.lineno}: chat template syntax error: {e.message}") from None
    try:
        out = tpl.render(messages=TEST_CONVERSATION, add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
    except Exception as e:  # noqa: BLE001 - any render error (undefined, raise_exception, type) is the template's
        raise ModelError(f"{source}:{_template_line(e)}: chat template fails on a test conversation: {e}") from None
    if PROBE not in out:
        raise ModelError(f"{source}: the chat template drops the user's message (rendered: {out[:200]!r})")
    return out


def _template_line(e: BaseException) -> str:
    """The template line a render error happened on (jinja2 maps frames to `<template>`)."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == "<template>"]
    return str(lines[-1]) if lines else "?"


def has_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def templated_folder(base: Path, spec: str | None, cache_dir: str | None = None, required: bool = True) -> Path:
    """The folder to load `base` from with `spec` as its chat template (see the module docstring);
    `required=False` (`loop sft` with the Alpaca prompt text) lets a model without one pass."""
    if spec is None:
        if required and not has_template(base):
            raise ModelError(
                f"{base}: the model has no chat template (a base model?); set model.chat_template "
                f"(one of {', '.join(sorted(TEMPLATES))}, a Jinja string or a .jinja file); "
                f"`loop sft` also takes instruct.template: alpaca (the prompt as plain text)"
            )
        return base
    text, source = template_text(spec)
    check_template(text, source)
    key = hashlib.sha256(f"{base.resolve()}\0{text}".encode()).hexdigest()[:12]
    out = loop_cache(cache_dir) / "templated" / f"{base.name}-{key}"
    if not (out / "chat_template.jinja").is_file():
        _build(base, text, out)
    return out


def _build(base: Path, text: str, out: Path) -> None:
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in base.iterdir():
        if f.name not in TEMPLATE_FILES:
            (tmp / f.name).symlink_to(f.resolve())
    conf = base / "tokenizer_config.json"
    if conf.is_file():
        data = json.loads(conf.read_text())
        data.pop("chat_template", None)
        (tmp / conf.name).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (tmp / "chat_template.jinja").write_text(text, encoding="utf-8")
    tmp.replace(out) if not out.exists() else shutil.rmtree(tmp)  # atomic publish


def run_template(cfg: dict) -> tuple[str | None, str]:
    """(the chat template the run rendered with, where it came from); None when unreadable here."""
    model = cfg.get("model") or {}
    spec, name = model.get("chat_template"), model.get("name")
    try:
        if spec:
            return template_text(spec)[0], f"model.chat_template {spec!r}"
        if not name:
            return None, "unknown (the run's config names no model)"
        folder = resolve_model(name, model.get("cache_dir"))
    except ModelError as e:
        return None, f"not readable here ({e})"
    f = folder / "chat_template.jinja"
    if f.is_file():
        return f.read_text(encoding="utf-8"), f"the model's own ({name})"
    try:
        text = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")
    except (OSError, ValueError):
        text = None
    return (text, f"the model's own ({name})") if isinstance(text, str) else (None, f"none ({name} has none)")
