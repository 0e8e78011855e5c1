"""Answer extraction from model completions.

Contract: ``extract_answer(text) -> Extraction`` never raises and runs in time
linear in ``len(text)`` (no backtracking regexes over the whole text).  The
first extractor that finds something wins, in this order:

1. ``answer_tag``  - the last ``<answer>...</answer>`` block.  A ``\\boxed{}``
   inside it is unwrapped.  An unclosed final ``<answer>`` (truncated
   generation) is accepted but marked weak.
2. ``boxed``       - the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces
   balanced; ``\\boxed 5`` without braces also works).
3. ``gsm8k``       - the rest of the last line starting with ``####``.
4. ``last_number`` - the last number in the text's final 64 KiB (thousands separators,
   decimals, simple fractions ``a/b``, a leading sign).  Weak: ``strong=False``.
5. ``none``        - nothing found; ``value is None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Extraction", "extract_answer", "find_boxed", "answer_tag_content"]

# Extracted values longer than this are truncated away (they cannot be answers
# and would only cost time downstream).
MAX_VALUE_CHARS = 4000
_TAIL_WINDOW = 4096
_SCAN_LIMIT = 65536  # the last-number fallback only looks at the last 64 KiB


@dataclass(frozen=True, slots=True)
class Extraction:
    value: str | None
    method: str  # 'answer_tag' | 'boxed' | 'gsm8k' | 'last_number' | 'none'
    strong: bool


_NONE = Extraction(None, "none", False)

_BOX_CMDS = ("\\boxed", "\\fbox")


def _brace_group(text: str, start: int) -> tuple[str, int] | None:
    """Content of the balanced ``{...}`` starting at ``text[start] == '{'``."""
    depth, i, n = 0, start, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":  # skip the escaped char: \{ and \} are not grouping
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def find_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox`` in ``text`` (None if absent)."""
    best_pos, best_cmd = -1, ""
    for cmd in _BOX_CMDS:
        pos = text.rfind(cmd)
        while pos != -1:
            after = text[pos + len(cmd) : pos + len(cmd) + 1]
            if not after.isalpha():  # \boxedx is another macro, skip it
                break
            pos = text.rfind(cmd, 0, pos)
        if pos > best_pos:
            best_pos, best_cmd = pos, cmd
    if best_pos < 0:
        return None
    i = best_pos + len(best_cmd)
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        group = _brace_group(text, i)
        return None if group is None else group[0].strip()
    # "\boxed 5" form: one token up to whitespace or '$'
    m = re.match(r"[^\s$]+", text[i : i + 200])
    return m.group(0) if m else None


def answer_tag_content(text: str) -> tuple[str, bool] | None:
    """(content, closed) of the last <answer> block, or None."""
    close = text.rfind("</answer>")
    if close != -1:
        open_ = text.rfind("<answer>", 0, close)
        if open_ != -1:
            return text[open_ + len("<answer>") : close].strip(), True
    open_ = text.rfind("<answer>")
    if open_ != -1 and open_ > close:
        return text[open_ + len("<answer>") :].strip(), False
    return None


_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_NUMBER = re.compile(
    r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?!\.\d))?(?!\w)|"
    r"(?<![\w.])[-+−]?\.\d+"
)


def _last_number(text: str) -> str | None:
    # Scan only the tail first: the last number is almost always there.
    for chunk in (text[-_TAIL_WINDOW:], text[-_SCAN_LIMIT:]):
        last = None
        for last in _NUMBER.finditer(chunk):  # noqa: B007 (we want the final match)
            pass
        if last is not None:
            return last.group(0).replace("−", "-")
        if len(chunk) >= len(text):
            break
    return None


def _clip(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS]


def extract_answer(text: str | None) -> Extraction:
    """Extract the final answer from a completion; see the module docstring."""
    if not text or not isinstance(text, str):
        return _NONE
    tag = answer_tag_content(text)
    if tag is not None and tag[0]:
        content, closed = tag
        boxed = find_boxed(content)
        value = boxed if boxed else content
        return Extraction(_clip(value), "answer_tag", closed)
    boxed = find_boxed(text)
    if boxed:
        return Extraction(_clip(boxed), "boxed", True)
    last = None
    pos = text.rfind("####")
    if pos != -1:
        last = _GSM8K.match(text, pos)
    if last is not None and last.group(1).strip():
        return Extraction(_clip(last.group(1).strip()), "gsm8k", True)
    num = _last_number(text)
    if num is not None:
        return Extraction(num, "last_number", False)
    return _NONE


def candidates(text: str | None) -> list[Extraction]:
    """Every extractor's result, strongest first (used by fallback rewards)."""
    if not text or not isinstance(text, str):
        return []
    out: list[Extraction] = []
    tag = answer_tag_content(text)
    if tag is not None and tag[0]:
        content, closed = tag
        out.append(Extraction(_clip(find_boxed(content) or content), "answer_tag", closed))
        inner = _last_number(content)
        if inner is not None:
            out.append(Extraction(inner, "last_number", False))
    boxed = find_boxed(text)
    if boxed:
        out.append(Extraction(_clip(boxed), "boxed", True))
    pos = text.rfind("####")
    m = _GSM8K.match(text, pos) if pos != -1 else None
    if m is not None and m.group(1).strip():
        out.append(Extraction(_clip(m.group(1).strip()), "gsm8k", True))
    num = _last_number(text)
    if num is not None:
        out.append(Extraction(num, "last_number", False))
    return out
