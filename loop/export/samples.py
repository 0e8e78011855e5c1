"""`loop inspect export`: a run's samples with their problem, rewards and provenance.

Formats, written into a new directory DIR (refused if it exists and is not empty):
- `jsonl`: DIR/samples.jsonl, one JSON object per sample (rewards/sampling nested);
- `parquet`: DIR/samples.parquet;
- `hf`: a Hugging Face dataset folder: `datasets.load_from_disk(DIR)`.
Every format also gets DIR/export.json (run, filters, row count, schema version).
Contract: the export reads the store read-only, streams in Arrow batches, and is
atomic: it is built in a sibling temporary directory renamed to DIR when complete.
`rewards` becomes a struct with one float field per reward name (null = cannot
judge) and `sampling` a struct of the sampler parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import duckdb

from loop.inspection import InspectError, open_store, resolve_run
from store import queries
from store.db import SCHEMA_VERSION

FORMATS = ("jsonl", "parquet", "hf")
BATCH_ROWS = 50_000


def _struct_types(reward_names: list[str]):
    import pyarrow as pa

    rewards = pa.struct([(n, pa.float64()) for n in reward_names])
    sampling = pa.struct(
        [
            ("n", pa.int64()),
            ("temperature", pa.float64()),
            ("top_p", pa.float64()),
            ("max_new_tokens", pa.int64()),
            ("seed", pa.int64()),
            ("stop", pa.list_(pa.string())),
        ]
    )
    return {"rewards": rewards, "sampling": sampling}


def _restructure(batch, types: dict):
    """JSON text columns -> typed structs (fixed schema for every batch)."""
    import pyarrow as pa

    cols, names = [], []
    for name, col in zip(batch.schema.names, batch.columns):
        if name in types:
            col = pa.array(
                [_pick(json.loads(v), types[name]) if v is not None else None for v in col.to_pylist()],
                type=types[name],
            )
        cols.append(col)
        names.append(name)
    return pa.Table.from_arrays(cols, names=names)


def _pick(obj: dict, struct) -> dict:
    return {struct.field(i).name: obj.get(struct.field(i).name) for i in range(struct.num_fields)}


def _batches(st, run_id: str, verified_only: bool):
    names = queries.export_reward_names(st, run_id, verified_only)
    types = _struct_types(names)
    reader = st.con.sql(queries.EXPORT_SQL, params={"run": run_id, "verified_only": verified_only}).to_arrow_reader(
        BATCH_ROWS
    )
    for batch in reader:
        if batch.num_rows:
            yield _restructure(batch, types)


def _write(tables, fmt: str, tmp: Path) -> int:
    import pyarrow as pa

    n = 0
    if fmt == "jsonl":
        with open(tmp / "samples.jsonl", "w", encoding="utf-8") as f:
            for t in tables:
                for row in t.to_pylist():
                    f.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
                n += t.num_rows
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        writer = None
        for t in tables:
            writer = writer or pq.ParquetWriter(tmp / "samples.parquet", t.schema)
            writer.write_table(t)
            n += t.num_rows
        if writer:
            writer.close()
    else:
        import datasets

        parts = list(tables)
        table = pa.concat_tables(parts) if parts else pa.table({})
        datasets.Dataset(table).save_to_disk(str(tmp))
        n = table.num_rows
    return n


def export(path, out: str | Path, fmt: str = "jsonl", verified_only: bool = False, run_id: str | None = None) -> dict:
    """Export the run's samples (only verified ones with `verified_only`); returns the manifest."""
    if fmt not in FORMATS:
        raise InspectError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "hf":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise InspectError("--format hf needs the `datasets` package (pip install datasets)") from None
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InspectError(f"--out {out}: exists and is not an empty directory; choose a new one")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with open_store(path) as st:
            rid = resolve_run(st, run_id)
            if rid is None:
                raise InspectError(f"{path}: no runs to export")
            try:
                n = _write(_batches(st, rid, verified_only), fmt, tmp)
            except duckdb.Error as e:
                raise InspectError(f"{path}: export failed reading the store: {e}") from e
        manifest = {
            "run_id": rid,
            "format": fmt,
            "verified_only": verified_only,
            "rows": n,
            "store": str(path),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest["schema_version"] = SCHEMA_VERSION
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "out": str(out)}
