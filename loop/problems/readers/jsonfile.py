"""JSON readers: `jsonl` (one object per line) and `json` (an array of objects, or an object
holding one such array, e.g. {"data": [...]}).

Each row records its line; a JSON error names line and column; a row that is not an
object is refused (`expected a JSON object`); a JSONL line over `max_field_bytes` is refused
before it is parsed.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop.problems import ProposeError
from loop.problems.readers.base import FileInfo, ReadOptions, Row, Table, check_field
from loop.problems.readers.encoding import decode, read_bytes, sha256


def read_jsonl(path: Path, opt: ReadOptions) -> Table:
    data = read_bytes(path)
    text, enc = decode(data, path, opt.encoding)
    rows: list[Row] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        if len(line) > opt.max_field_bytes // 4 and len(line.encode()) > opt.max_field_bytes:
            raise ProposeError(
                f"{where}: line is {len(line.encode())} bytes, over the limit of "
                f"{opt.max_field_bytes} (max_field_bytes)"
            )
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ProposeError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None
        rows.append(_row(path, lineno, obj, opt))
    return _table(path, data, enc, rows)


def read_json(path: Path, opt: ReadOptions) -> Table:
    data = read_bytes(path)
    text, enc = decode(data, path, opt.encoding)
    dec = json.JSONDecoder()
    i = _skip(text, 0)
    if i < len(text) and text[i] == "{":  # an object holding the array: {"data": [...]} or similar
        obj = _decode(dec, text, i, path)[0]
        lists = [k for k, v in obj.items() if isinstance(v, list)] if isinstance(obj, dict) else []
        if len(lists) != 1:
            raise ProposeError(
                f"{path}:1: expected a JSON array of objects (or an object holding one array); "
                f"keys: {', '.join(map(str, obj))}"
            )
        text = json.dumps(obj[lists[0]])  # line numbers then count within the array only
        i = 0
    if i >= len(text) or text[i] != "[":
        raise ProposeError(f"{path}:{text.count(chr(10), 0, i) + 1}: expected a JSON array of objects")
    rows: list[Row] = []
    i = _skip(text, i + 1)
    line, seen = 1, 0  # newlines counted up to `seen`, incrementally (one pass over the text)
    while i < len(text) and text[i] != "]":
        obj, end = _decode(dec, text, i, path)
        line, seen = line + text.count("\n", seen, i), i
        rows.append(_row(path, line, obj, opt))
        i = _skip(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
        elif i < len(text) and text[i] != "]":
            raise ProposeError(f"{path}:{text.count(chr(10), 0, i) + 1}: malformed JSON: expected ',' or ']'")
    return _table(path, data, enc, rows)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _decode(dec: json.JSONDecoder, text: str, i: int, path: Path):
    try:
        return dec.raw_decode(text, i)
    except json.JSONDecodeError as e:
        raise ProposeError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None


def _row(path: Path, lineno: int, obj, opt: ReadOptions) -> Row:
    where = f"{path}:{lineno}"
    if not isinstance(obj, dict):
        raise ProposeError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for k, v in obj.items():
        check_field(where, k, v, opt.max_field_bytes)
    return Row(str(path), lineno, obj)


def _table(path: Path, data: bytes, enc: str, rows: list[Row]) -> Table:
    cols = list(dict.fromkeys(k for r in rows for k in r.data))
    return Table(rows, cols, [FileInfo(str(path), sha256(data), enc, len(rows))])
