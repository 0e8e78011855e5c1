"""Seed files as sources: read (loop.problems.readers), mapped (loop.problems.formats), cached.

`kind: jsonl` is a GSM8K-format JSONL file (`question`, `answer` ending in `#### N`), as
before; `kind: file` is any reader and format. Errors name the file and line
(ProposeError); an empty file is an error. A file is read once per process as long as its
size and mtime stay the same (validation at run open, then every round's proposal).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from loop.problems import Problem
from loop.problems.formats import conversations, problems
from loop.problems.readers import read_table
from loop.problems.readers.base import ReadOptions, Table
from loop.problems.vision import VISION_FORMATS, vision_conversations

_CACHE: dict[tuple, Table] = {}


def source_table(src) -> Table:
    """The source's rows (read once per process while the file is unchanged)."""
    p = Path(src.path)
    reader = "jsonl" if src.kind == "jsonl" else src.reader
    opt = ReadOptions(
        encoding=src.encoding, max_field_bytes=src.max_field_bytes, sheet=src.sheet, split=src.split, subset=src.subset
    )
    st = p.stat() if p.exists() and reader != "hub" else None
    key = (str(p.resolve()), reader, opt, st.st_size if st else None, st.st_mtime_ns if st else None)
    if key not in _CACHE or (st is None and reader != "hub"):  # a cached hub dataset does not change
        _CACHE[key] = read_table(p, reader, opt)
    return _CACHE[key]


def source_problems(src) -> list[Problem]:
    """Every row of a file source as a Problem (format gsm8k for `kind: jsonl`)."""
    label = f"{'jsonl' if src.kind == 'jsonl' else src.format}:{Path(src.path).name}"
    return problems(source_table(src), src, label)


def source_conversations(src) -> list[dict[str, Any]]:
    """Every row of a file source as {"messages", "meta"} (instruction SFT); a vision format's
    rows also carry their checked images (loop.problems.vision)."""
    if is_vision(src):
        return vision_conversations(source_table(src), src)
    return conversations(source_table(src), src)


def is_vision(src) -> bool:
    return getattr(src, "format", None) in VISION_FORMATS


def load_jsonl(path: str | Path) -> list[Problem]:
    """A GSM8K-format JSONL file: every line a JSON object with `question` and `answer` (`... #### N`)."""
    return source_problems(_JsonlSource(str(path)))


class _JsonlSource:
    """The settings `load_jsonl` reads with (a `kind: jsonl` source's defaults)."""

    kind, reader, format, encoding, sheet = "jsonl", "jsonl", "gsm8k", None, None
    question_field = answer_field = answer_format = system = subset = image_field = None
    split = "train"
    image_max_side = 512
    max_field_bytes = 1_000_000

    def __init__(self, path: str) -> None:
        self.path = path


def sample_jsonl(problems: list[Problem], count: int, seed: int) -> list[Problem]:
    r = random.Random(seed)
    return r.sample(problems, min(count, len(problems)))
