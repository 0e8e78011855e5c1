"""The config tree described: every leaf key with its resolved value and its field's description.

`rows(cfg)` walks the typed tree (loop.config) and yields (dotted key, value, description)
for every leaf, lists of sections by index (`propose.sources.0.count`); `schema()` is the
JSON schema, descriptions included. Behind `loop config show` and `loop config schema`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from loop.config import Config


def rows(node: BaseModel, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, description) for every leaf under `node`, in field order."""
    out: list[tuple[str, Any, str]] = []
    for name, field in type(node).model_fields.items():
        key, value = f"{prefix}{name}", getattr(node, name)
        if isinstance(value, BaseModel):
            out += rows(value, key + ".")
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            for i, item in enumerate(value):
                out += rows(item, f"{key}.{i}.")
        else:
            out.append((key, value, field.description or ""))
    return out


def schema() -> dict[str, Any]:
    return Config.model_json_schema()
