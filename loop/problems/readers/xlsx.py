"""Excel reader (`.xlsx`, openpyxl, read-only): the first sheet (or `sheet:`), its first
non-empty row the header. A header with an empty or non-text cell is refused naming the
cell (e.g. `B1`): a sheet without a header row would otherwise turn its first record into
column names. Rows record their sheet row number.
"""

from __future__ import annotations

from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import FileInfo, ReadOptions, Row, Table, check_field
from loop.problems.readers.encoding import read_bytes, sha256


def read_xlsx(path: Path, opt: ReadOptions) -> Table:
    import openpyxl

    data = read_bytes(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException alike
        raise ProposeError(f"{path}: not a readable .xlsx workbook: {e}") from None
    try:
        if opt.sheet and opt.sheet not in wb.sheetnames:
            raise ProposeError(f"{path}: no sheet {opt.sheet!r}; sheets: {', '.join(wb.sheetnames)}")
        ws = wb[opt.sheet] if opt.sheet else wb.worksheets[0]
        rows, header = _rows(path, ws, opt)
    finally:
        wb.close()
    return Table(rows, header, [FileInfo(f"{path}#{ws.title}", sha256(data), "xlsx", len(rows))])


def _rows(path: Path, ws, opt: ReadOptions) -> tuple[list[Row], list[str]]:
    header: list[str] | None = None
    rows: list[Row] = []
    for n, values in enumerate(ws.iter_rows(values_only=True), 1):
        if all(v is None or str(v).strip() == "" for v in values):
            continue
        if header is None:
            header = _header(path, ws.title, n, list(values))
            continue
        cells = list(values)[: len(header)] + [None] * max(0, len(header) - len(values))
        rec = {h: ("" if v is None else v) for h, v in zip(header, cells)}
        for k, v in rec.items():
            check_field(f"{path}:{n}", k, v, opt.max_field_bytes)
        rows.append(Row(str(path), n, rec))
    return rows, header or []


def _header(path: Path, sheet: str, n: int, values: list) -> list[str]:
    while values and values[-1] is None:
        values.pop()
    for j, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            cell = f"{_column_letter(j)}{n}"
            raise ProposeError(
                f"{path}:{n}: sheet {sheet!r} has no header row: cell {cell} is {v!r}, "
                f"not a column name (the first non-empty row must name the columns)"
            )
    return [str(v).strip() for v in values]


def _column_letter(j: int) -> str:
    s = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        s = chr(65 + r) + s
    return s
