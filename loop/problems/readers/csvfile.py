"""CSV and TSV readers: a header row, then one row per record (quoted fields may span lines).

Every record must have the header's number of fields: one that does not is refused with
its line and the header; an unterminated quote is refused with the line it started on.
Empty rows are skipped; a field over `max_field_bytes` is refused. Rows record the line
their record starts on (1 = the header).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import FileInfo, ReadOptions, Row, Table, check_field
from loop.problems.readers.encoding import decode, read_bytes, sha256


def read_csv(path: Path, opt: ReadOptions) -> Table:
    return _read(path, opt, ",")


def read_tsv(path: Path, opt: ReadOptions) -> Table:
    return _read(path, opt, "\t")


def _read(path: Path, opt: ReadOptions, delimiter: str) -> Table:
    data = read_bytes(path)
    text, enc = decode(data, path, opt.encoding)
    csv.field_size_limit(min(sys.maxsize, max(opt.max_field_bytes, 1 << 20) * 4))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[Row] = []
    start = 1
    try:
        for rec in reader:
            if not any(x.strip() for x in rec):
                start = reader.line_num + 1
                continue
            if header is None:
                header = [h.strip() for h in rec]
                _check_header(path, start, header)
            else:
                rows.append(_row(path, start, header, rec, opt))
            start = reader.line_num + 1
    except csv.Error as e:
        if str(e).startswith("field larger than field limit"):  # the limit is in characters, 4 per byte
            raise ProposeError(
                f"{path}:{start}: a field is over the limit of {opt.max_field_bytes} bytes (max_field_bytes)"
            ) from None
        raise ProposeError(f"{path}:{start}: malformed CSV: {e} (the record starting on line {start})") from None
    return Table(rows, header or [], [FileInfo(str(path), sha256(data), enc, len(rows))])


def _check_header(path: Path, line: int, header: list[str]) -> None:
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise ProposeError(
            f"{path}:{line}: header has an empty column name at column {empty[0]}: "
            f"{','.join(header)} (the first row must name the columns)"
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ProposeError(f"{path}:{line}: header names column {dup[0]!r} twice")


def _row(path: Path, line: int, header: list[str], rec: list[str], opt: ReadOptions) -> Row:
    where = f"{path}:{line}"
    if len(rec) != len(header):
        raise ProposeError(
            f"{where}: {len(rec)} fields, the header has {len(header)} "
            f"({','.join(header)}); a stray delimiter or quote in this record?"
        )
    for k, v in zip(header, rec):
        check_field(where, k, v, opt.max_field_bytes)
    return Row(str(path), line, dict(zip(header, rec)))
