"""Hugging Face datasets reader: a `Dataset.save_to_disk` folder (`datasets.load_from_disk`),
or a `DatasetDict` folder (its `train` split). Rows record their index + 1 as line; the
provenance hash is of the folder's Arrow files."""

from __future__ import annotations

import hashlib
from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import FileInfo, ReadOptions, Table
from loop.problems.readers.parquet import records


def is_hf_folder(path: Path) -> bool:
    return any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def read_hf(path: Path, opt: ReadOptions) -> Table:
    import datasets

    if not path.is_dir() or not is_hf_folder(path):
        raise ProposeError(f"{path}: not a Hugging Face datasets folder (no dataset_info.json/state.json)")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError/ValueError alike
        raise ProposeError(f"{path}: datasets.load_from_disk failed: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ProposeError(f"{path}: a DatasetDict without a 'train' split; splits: {', '.join(ds)}")
        ds = ds["train"]
    h = hashlib.sha256()
    for f in sorted(path.rglob("*.arrow")):
        h.update(f.read_bytes())
    return records(path, ds.column_names, ds.to_list(), opt, FileInfo(str(path), h.hexdigest(), "arrow", len(ds)))
