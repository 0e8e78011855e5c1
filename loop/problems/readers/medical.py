"""The department-folder layout (the Chinese medical dialogue data): a folder of department
folders (`Data_数据/<Dept>_<科>/`), each with CSV files (`department,title,ask,answer`,
usually GBK), read as one source. Each file is decoded on its own (loop.problems.readers.
encoding), every row keeps its file and line, and `dept_folder` (the folder's name) is
added as a column. A folder holding CSV files directly is read the same way.
"""

from __future__ import annotations

from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import ReadOptions, Table
from loop.problems.readers.csvfile import read_csv


def read_medical(path: Path, opt: ReadOptions) -> Table:
    if not path.is_dir():
        raise ProposeError(f"{path}: the department layout needs a folder of department folders")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        listed = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        raise ProposeError(f"{path}: no data files (*.csv) in this folder or its subfolders; it holds: {listed}")
    out = Table([], [])
    for f in files:
        t = read_csv(f, opt)
        if out.columns and t.columns != out.columns[: len(t.columns)]:
            raise ProposeError(
                f"{f}:1: columns {','.join(t.columns)} differ from {files[0]}'s ({','.join(out.columns[:-1])})"
            )
        for row in t.rows:
            row.data["dept_folder"] = f.parent.name
        out.rows += t.rows
        out.files += t.files
        out.columns = out.columns or [*t.columns, "dept_folder"]
    return out
