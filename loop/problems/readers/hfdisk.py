"""Hugging Face datasets readers.

- `hf`: a `Dataset.save_to_disk` folder (`datasets.load_from_disk`), or a `DatasetDict`
  folder (its `split`, default `train`).
- `hub`: a hub name (`openai/gsm8k`, `path:` holds the name) already in the local datasets
  cache (`$HF_DATASETS_CACHE`, default `$HF_HOME/datasets`), read with `datasets.load_dataset`
  in offline mode whatever the environment says: nothing is ever downloaded. A dataset not
  in the cache is an error naming it, its subset and split, and the cache folder searched.

Rows record their index + 1 as line; the provenance hash is of the dataset's Arrow files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
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
        if opt.split not in ds:
            raise ProposeError(f"{path}: a DatasetDict without a {opt.split!r} split; splits: {', '.join(ds)}")
        ds = ds[opt.split]
    return _table(path, ds, opt, sorted(path.rglob("*.arrow")))


def datasets_cache() -> Path:
    """The datasets cache folder as `datasets` resolves it (read at call time, not at import)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "datasets"


def read_hub(path: Path, opt: ReadOptions) -> Table:
    """A hub dataset from the local cache only (datasets' offline mode, forced for this call)."""
    import datasets

    name, cache = str(path), datasets_cache()
    what = f"Hugging Face dataset {name!r} (subset {opt.subset or 'default'}, split {opt.split})"
    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True  # the module-level flag load_dataset consults; env was read at import
    try:
        ds = datasets.load_dataset(name, opt.subset, split=opt.split, cache_dir=str(cache))
    except Exception as e:  # ConnectionError (not cached), ValueError (config/split), FileNotFoundError
        raise ProposeError(
            f"{what} is not in the local datasets cache {cache} (this machine never downloads; "
            f"load it once where the hub is reachable, or set HF_DATASETS_CACHE): {type(e).__name__}: {e}"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = saved
    return _table(path, ds, opt, [Path(f["filename"]) for f in ds.cache_files])


def _table(path: Path, ds, opt: ReadOptions, arrow_files: Iterable[Path]) -> Table:
    h = hashlib.sha256()
    for f in arrow_files:
        h.update(f.read_bytes())
    return records(path, ds.column_names, ds.to_list(), opt, FileInfo(str(path), h.hexdigest(), "arrow", len(ds)))
