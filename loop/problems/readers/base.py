"""The types every reader returns (`Table` of `Row`s with per-file provenance) and the field bound."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.problems import ProposeError

MAX_FIELD_BYTES = 1_000_000


@dataclass
class Row:
    file: str
    line: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class FileInfo:
    path: str
    sha256: str
    encoding: str
    rows: int


@dataclass
class Table:
    rows: list[Row]
    columns: list[str]
    files: list[FileInfo] = field(default_factory=list)
    reader: str = ""


@dataclass(frozen=True)
class ReadOptions:
    encoding: str | None = None
    max_field_bytes: int = MAX_FIELD_BYTES
    sheet: str | None = None
    split: str = "train"  # hf/hub: the split read
    subset: str | None = None  # hub: the dataset's config name


Reader = Callable[[Path, ReadOptions], Table]


def check_field(where: str, key: str, value: Any, limit: int) -> None:
    """A string field longer than `limit` bytes is refused (bounded reading)."""
    if isinstance(value, str) and len(value) > limit // 4 and len(value.encode()) > limit:
        raise ProposeError(
            f"{where}: field {key!r} is {len(value.encode())} bytes, over the limit of {limit} (max_field_bytes)"
        )
