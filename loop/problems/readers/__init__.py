"""Readers of data files, one module per format, and their registry (`READERS`).

A reader turns a path into a `Table`: rows (each a dict with the file and line it came
from), the columns seen, and per file its sha256, encoding and row count (the provenance
a source records). Readers check bounds (loop.problems.readers.encoding: regular files,
`max_field_bytes` per line or field) and raise ProposeError naming file, line and column.
`reader: auto` picks by suffix (`.json`, `.jsonl`, `.csv`, `.tsv`, `.xlsx`, `.parquet`) or,
for a folder, a Hugging Face `save_to_disk` folder (`dataset_info.json` or `state.json`)
or else the department-folder layout (`medical`). `reader: hub` reads a hub dataset name
(`path: openai/gsm8k`, with `subset`/`split`) from the local datasets cache, never downloading.
"""

from __future__ import annotations

from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers import csvfile, hfdisk, jsonfile, medical, parquet, xlsx
from loop.problems.readers.base import Reader, ReadOptions, Table

READERS: dict[str, Reader] = {
    "json": jsonfile.read_json,
    "jsonl": jsonfile.read_jsonl,
    "csv": csvfile.read_csv,
    "tsv": csvfile.read_tsv,
    "xlsx": xlsx.read_xlsx,
    "parquet": parquet.read_parquet,
    "hf": hfdisk.read_hf,
    "hub": hfdisk.read_hub,
    "medical": medical.read_medical,
}
SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
}


def pick_reader(path: Path, reader: str = "auto") -> str:
    """The reader name for `path`: `reader` itself unless auto; errors list the valid names."""
    if reader != "auto":
        if reader not in READERS:
            raise ProposeError(f"{path}: unknown reader {reader!r}; valid: auto, {', '.join(sorted(READERS))}")
        return reader
    if path.is_dir():
        return "hf" if hfdisk.is_hf_folder(path) else "medical"
    name = SUFFIXES.get(path.suffix.lower())
    if name is None:
        raise ProposeError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; set `reader:` "
            f"(one of {', '.join(sorted(READERS))})"
        )
    return name


def read_table(path: str | Path, reader: str = "auto", options: ReadOptions | None = None) -> Table:
    """Read every row of a data file or folder (bounded; errors name file, line, column)."""
    p = Path(path)
    if reader != "hub" and not p.exists():
        hint = "; a Hugging Face hub name? set `reader: hub`" if _hub_like(str(path)) else ""
        raise ProposeError(f"{p}: seed file not found{hint}")
    name = pick_reader(p, reader)
    table = READERS[name](p, options or ReadOptions())
    table.reader = name
    if not table.rows:
        raise ProposeError(f"{p}: seed file has no problems (no rows: an empty file or sheet)")
    return table


def _hub_like(name: str) -> bool:
    """`owner/name` with no suffix: what a hub dataset id looks like (only for the hint)."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).suffix
