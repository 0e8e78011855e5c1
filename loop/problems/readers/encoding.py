"""Reading a data file's bytes, bounded, and decoding them with a detected encoding.

Bounds: a path must be a regular file (a FIFO or /dev/zero is refused before a byte is
read) of at most `max_file_bytes`; one line or field longer than `max_field_bytes` is
refused by the readers with its file:line.

Encoding rule (never a silent guess; the name used is returned and recorded per row):
1. `encoding` given (the source's `encoding:`): that codec, strictly; else
2. a BOM decides: UTF-8 BOM -> utf-8-sig, UTF-16 LE/BE BOM -> utf-16;
3. strict UTF-8; a file that fails UTF-8 but has lines that are valid non-ASCII UTF-8
   next to lines that are not is refused as mixed encodings (both line numbers named);
4. strict GB18030 (a superset of GB2312 and GBK) -- accepted unless its CJK characters
   are mostly (more than 10 %) outside GB2312 while the bytes also decode as Big5: Big5
   text read as GB18030 lands in GBK's rare extension characters, real GBK text almost
   never does;
5. strict Big5.
A file no candidate decodes is refused naming, per codec, the byte offset of its first
bad sequence.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

from loop.problems import ProposeError

MAX_FILE_BYTES = 1 << 30
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# share of CJK characters outside GB2312 above which a GB18030 reading is doubted (step 4)
GB_RARE_SHARE = 0.10


def read_bytes(path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_file_bytes` (ProposeError otherwise)."""
    if not path.exists():
        raise ProposeError(f"{path}: seed file not found")
    if not path.is_file():
        raise ProposeError(f"{path}: not a regular file (a data file, or a folder the reader takes)")
    size = path.stat().st_size
    if size > max_file_bytes:
        raise ProposeError(f"{path}: {size} bytes, over the limit of {max_file_bytes} (max_file_bytes)")
    try:
        with path.open("rb") as f:
            return f.read(max_file_bytes + 1)[:max_file_bytes]
    except OSError as e:
        raise ProposeError(f"{path}: cannot read seed file: {e.strerror or e}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, path: Path, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding name) by the module's rule; ProposeError naming file and byte offset."""
    if encoding:
        return _strict(data, path, encoding), encoding
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data, path, "utf-8-sig"), "utf-8-sig"
    if data.startswith(UTF16_BOMS):
        return _strict(data, path, "utf-16"), "utf-16"
    failures: list[str] = []
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        _refuse_mixed(data, path, e)
        failures.append(_where("utf-8", data, e))
    try:
        text = data.decode("gb18030")
        if not _doubt_gb(text, data):
            return text, "gb18030"
        failures.append("gb18030 (decodes, but mostly as rare GBK characters: Big5 fits better)")
    except UnicodeDecodeError as e:
        failures.append(_where("gb18030", data, e))
    try:
        return data.decode("big5"), "big5"
    except UnicodeDecodeError as e:
        failures.append(_where("big5", data, e))
    raise ProposeError(
        f"{path}: cannot decode: not " + "; not ".join(failures) + ". Set the source's `encoding:` if you know it"
    )


def _strict(data: bytes, path: Path, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError:
        raise ProposeError(f"{path}: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        raise ProposeError(f"{path}: cannot decode as {_where(encoding, data, e)}") from None


def _where(codec: str, data: bytes, e: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, e.start) + 1
    bad = data[e.start : e.start + 4].hex(" ")
    return f"{codec} (byte offset {e.start}, line {line}: {bad})"


def _refuse_mixed(data: bytes, path: Path, e: UnicodeDecodeError) -> None:
    """A file with valid non-ASCII UTF-8 lines and lines that are not UTF-8 mixes encodings."""
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if line.isascii():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if sum(not c.isascii() for c in decoded) < 3:  # a short GBK run can be valid UTF-8 by chance
            continue
        bad = data.count(b"\n", 0, e.start) + 1
        raise ProposeError(
            f"{path}: mixed encodings: line {lineno} is UTF-8 but line {bad} is not "
            f"(byte offset {e.start}); convert the file to one encoding"
        )


def _doubt_gb(text: str, data: bytes) -> bool:
    """True when a GB18030 reading is mostly rare characters and Big5 also decodes (step 4)."""
    cjk = [c for c in text[:200_000] if "\u3400" <= c <= "\u9fff"]
    if not cjk:
        return False
    rare = sum(1 for c in cjk if not _in_gb2312(c))
    if rare / len(cjk) <= GB_RARE_SHARE:
        return False
    try:
        data.decode("big5")
    except UnicodeDecodeError:
        return False
    return True


def _in_gb2312(c: str) -> bool:
    try:
        c.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True
