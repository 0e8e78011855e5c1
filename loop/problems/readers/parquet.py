"""Parquet reader (pyarrow): the columns as they are; rows record their index + 1 as line."""

from __future__ import annotations

from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import FileInfo, ReadOptions, Row, Table, check_field
from loop.problems.readers.encoding import read_bytes, sha256


def read_parquet(path: Path, opt: ReadOptions) -> Table:
    import pyarrow.parquet as pq

    data = read_bytes(path)
    try:
        t = pq.read_table(path)
    except Exception as e:  # pyarrow.ArrowInvalid and friends
        raise ProposeError(f"{path}: not a readable Parquet file: {e}") from None
    return records(path, t.column_names, t.to_pylist(), opt, FileInfo(str(path), sha256(data), "parquet", t.num_rows))


def records(path: Path, columns: list[str], items: list[dict], opt: ReadOptions, info: FileInfo) -> Table:
    """A Table of already-parsed records (Parquet, Hugging Face datasets)."""
    rows = []
    for i, rec in enumerate(items, 1):
        for k, v in rec.items():
            check_field(f"{path}:{i}", k, v, opt.max_field_bytes)
        rows.append(Row(str(path), i, rec))
    return Table(rows, list(columns), [info])
