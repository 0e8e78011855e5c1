"""Vision row formats (`VISION_FORMATS`): rows whose user turns show images, for `loop sft`.

- `vision`: the course's sheet layout (Excel, CSV, JSON...): columns `id`, `prompt`,
  `image` (a path relative to the sheet's folder, or absolute), `response`;
  `question_field` / `answer_field` / `image_field` rename prompt / response / image.
- `vision_messages`: a `messages` list ([{role, content}], ShareGPT keys too) whose text
  holds `<image>` placeholders, and an `images` list of paths, one per placeholder in order
  (LLaMA-Factory's `mllm_demo.json` layout).

Each row becomes {"messages": [{role, content: [{"type": "image"} | {"type": "text",
"text": ...}]}], "images": [resolved paths], "max_side", "meta": provenance}, the
structured form TRL's vision collator fills with the images in order. Every image is opened
here (loop.problems.readers.images), so a missing, unreadable or non-image file fails when
the sources are validated, before training, naming the row and the path; its sha256 goes
into the row's provenance (`meta.images`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loop.problems import ProposeError
from loop.problems.formats import ROLES, provenance, require_columns, text_field
from loop.problems.readers.base import Row, Table
from loop.problems.readers.images import check_image

PLACEHOLDER = "<image>"
Block = dict[str, str]
Turn = dict[str, Any]


def _sheet(row: Row, src) -> tuple[list[Turn], list[Any]]:
    prompt = text_field(row, src.question_field or "prompt")
    image = row.data.get(src.image_field or "image")
    user: list[Block] = [{"type": "image"}, {"type": "text", "text": prompt}]
    answer = text_field(row, src.answer_field or "response")
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": _text(answer)}]
    return _system(text_field(row, "system", required=False) or src.system) + turns, [image]


def _messages(row: Row, src) -> tuple[list[Turn], list[Any]]:
    key = "messages" if "messages" in row.data else "conversations"
    turns, images = row.data.get(key), row.data.get("images")
    if not isinstance(turns, list) or not turns:
        raise ProposeError(f"{row.where}: field 'messages' missing or not a list; this row has: {', '.join(row.data)}")
    if not isinstance(images, list):
        raise ProposeError(f"{row.where}: field 'images' missing or not a list of image paths")
    out: list[Turn] = []
    for i, t in enumerate(turns):
        role = ROLES.get(str(t.get("role", t.get("from", ""))).lower()) if isinstance(t, dict) else None
        content = t.get("content", t.get("value")) if isinstance(t, dict) else None
        if role is None or not isinstance(content, str):
            raise ProposeError(f"{row.where}: {key}[{i}] needs a role and text content, got {t!r:.80}")
        out.append({"role": role, "content": split_placeholders(content)})
    shown = sum(b["type"] == "image" for t in out for b in t["content"])
    if shown != len(images):
        raise ProposeError(
            f"{row.where}: {shown} {PLACEHOLDER} placeholder(s) in the messages but {len(images)} image(s) in 'images'"
        )
    if out[-1]["role"] != "assistant":
        raise ProposeError(f"{row.where}: {key} must end with an assistant turn (the completion trained on)")
    return (out if out[0]["role"] == "system" else _system(src.system) + out), images


def split_placeholders(text: str) -> list[Block]:
    """'<image>Who?' -> [image, text 'Who?']: one image block per placeholder, in place."""
    out: list[Block] = []
    for k, part in enumerate(text.split(PLACEHOLDER)):
        if k:
            out.append({"type": "image"})
        if part.strip():
            out.append({"type": "text", "text": part})
    return out


def _text(s: str) -> list[Block]:
    return [{"type": "text", "text": s}]


def _system(text: str | None) -> list[Turn]:
    return [{"role": "system", "content": _text(text)}] if text else []


VISION_FORMATS: dict[str, Callable[[Row, Any], tuple[list[Turn], list[Any]]]] = {
    "vision": _sheet,
    "vision_messages": _messages,
}
VISION_COLUMNS = {"vision": ("prompt", "image", "response"), "vision_messages": ()}


def vision_conversations(table: Table, src) -> list[dict[str, Any]]:
    """Every row as {"messages", "images", "max_side", "meta"}; every image checked and hashed."""
    if src.format not in VISION_FORMATS:
        raise ProposeError(f"{src.path}: unknown vision format {src.format!r}; valid: {', '.join(VISION_FORMATS)}")
    renamed = {"prompt": src.question_field, "response": src.answer_field, "image": src.image_field}
    require_columns(table, str(src.path), [renamed.get(c) or c for c in VISION_COLUMNS[src.format]])
    out = []
    for row in table.rows:
        messages, refs = VISION_FORMATS[src.format](row, src)
        base = Path(row.file).parent
        infos = [check_image(row.where, base, ref, src.image_max_side) for ref in refs]
        meta = {**provenance(row, table), "images": infos}
        if row.data.get("id") not in (None, ""):
            meta["id"] = str(row.data["id"])
        out.append(
            {"messages": messages, "images": [i["path"] for i in infos], "max_side": src.image_max_side, "meta": meta}
        )
    return out
