"""Code-reasoning tasks checked by execution (Absolute Zero's deduction, abduction, induction).

A code task's gold `answer` is a JSON spec (`spec(...)` writes it, `read_spec` reads it)::

    {"code_task": "deduction", "program": "def f(x): ...", "input": "[3, 1]", "output": "[1, 3]"}
    {"code_task": "abduction", ...same keys...}
    {"code_task": "induction", "program": ..., "shown": [[in, out], ...], "hidden": [[in, out], ...]}

Inputs and outputs are Python literals (`repr` of the value). Programs define `f(x)`.

Checking one completion (`judge(gold, text) -> 1.0 | 0.0 | None`):
  deduction  the answer (last `\\boxed{...}`, else the `<answer>` tag) read as a Python literal
             equals the output (`repr` equality, so `1 != True != 1.0`); a bare word equals a
             string output too (`abc` for `'abc'`). No program runs.
  abduction  the answer is a Python literal x (at most MAX_LITERAL_CHARS; never code: it is read
             with `ast.literal_eval` and written back with `repr`); `f(x)` is run in
             `loop.sandbox` and must give the output.
  induction  the last fenced code block (else the `<answer>` tag) defining `f` is run in
             `loop.sandbox` (twice: it must be deterministic) on the hidden inputs and must
             give every hidden output.
None: the gold is not a code spec (of this reward's kind), or no answer can be read from the
completion (no box/tag/block, not a literal, no `def f`). 0.0: an answer was read and is wrong,
including a program the sandbox refuses or stops (imports, loops, memory, huge output).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from loop import sandbox

TASKS = ("deduction", "abduction", "induction")
MAX_LITERAL_CHARS = 500
MAX_PROGRAM_CHARS = 2000
CHECK_TIMEOUT_S = 2.0
CHECK_MEMORY_MB = 256
_BOXED = re.compile(r"\\boxed\s*\{")
_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.S | re.I)


def spec(task: str, program: str, **fields: Any) -> str:
    """The gold answer text of one code task."""
    if task not in TASKS:
        raise ValueError(f"unknown code task {task!r}; valid: {', '.join(TASKS)}")
    return json.dumps({"code_task": task, "program": program, **fields}, sort_keys=True)


def read_spec(gold: Any) -> dict | None:
    """The spec dict of a code task's gold answer, or None when `gold` is not one."""
    if not isinstance(gold, str) or not gold.lstrip().startswith("{"):
        return None
    try:
        d = json.loads(gold)
    except ValueError:
        return None
    ok = isinstance(d, dict) and d.get("code_task") in TASKS and isinstance(d.get("program"), str)
    return d if ok else None


def literal(text: str) -> tuple[bool, Any]:
    """(True, value) when `text` is a Python literal within MAX_LITERAL_CHARS, else (False, None)."""
    if len(text) > MAX_LITERAL_CHARS:
        return False, None
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


# --- reading the completion ---------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (braces balanced), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = start = starts[-1]
    depth = 1
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i].strip()
        i += 1
    return None


def answer_text(text: str) -> str | None:
    """The deduction/abduction answer: last box, else the last `<answer>` tag's content."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    tags = _TAG.findall(text)
    if tags and tags[-1].strip():
        inner = tags[-1].strip()
        return last_boxed(inner) or inner
    return None


def program_text(text: str) -> str | None:
    """The induction answer: the last fenced block (else the answer tag) that defines `f`."""
    blocks = _FENCE.findall(text) + _TAG.findall(text)
    for block in reversed(blocks):
        block = _FENCE.sub(lambda m: m.group(1), block).strip()
        if re.search(r"^def\s+f\s*\(", block, re.M) and len(block) <= MAX_PROGRAM_CHARS:
            return block
    return None


# --- running ------------------------------------------------------------------------
def harness(program: str, inputs: list[Any]) -> str:
    """The sandbox program: `program`, then `answer` = f of each input (inputs written by repr)."""
    return f"{program}\n\nanswer = [f(v) for v in [{', '.join(repr(v) for v in inputs)}]]\n"


def run_on(program: str, inputs: list[Any], runs: int = 1, max_output: int = 4096) -> sandbox.SandboxResult:
    """`f` of each input in the sandbox; the output is `str([f(x1), f(x2), ...])`."""
    return sandbox.run(
        harness(program, inputs),
        timeout_s=CHECK_TIMEOUT_S,
        memory_mb=CHECK_MEMORY_MB,
        runs=runs,
        max_output=max_output,
    )


def _expect(outputs: list[str]) -> str:
    return str([ast.literal_eval(o) for o in outputs])


def _same(answer: str, output: str) -> bool:
    ok, value = literal(answer)
    gold = ast.literal_eval(output)
    if ok:
        return repr(value) == repr(gold)
    return isinstance(gold, str) and answer.strip() == gold  # an unquoted string answer


def _check_deduction(d: dict, text: str) -> float | None:
    answer = answer_text(text)
    return None if answer is None else float(_same(answer, d["output"]))


def _check_abduction(d: dict, text: str) -> float | None:
    answer = answer_text(text)
    ok, value = literal(answer) if answer is not None else (False, None)
    if not ok:
        return None
    expected = _expect([d["output"]])
    res = run_on(d["program"], [value], runs=1, max_output=len(expected) + 64)
    return float(res.ok and res.output == expected)


def _check_induction(d: dict, text: str) -> float | None:
    program = program_text(text)
    if program is None:
        return None
    hidden = d.get("hidden") or []
    expected = _expect([o for _, o in hidden])
    res = run_on(program, [ast.literal_eval(i) for i, _ in hidden], runs=2, max_output=len(expected) + 64)
    return float(res.ok and res.output == expected)


CHECKS = {"deduction": _check_deduction, "abduction": _check_abduction, "induction": _check_induction}


def judge(gold: Any, text: str, task: str | None = None) -> float | None:
    """1.0 / 0.0 / None for one completion (see the module docstring); `task` restricts the kind."""
    d = read_spec(gold)
    if d is None or (task is not None and d["code_task"] != task):
        return None
    try:
        return CHECKS[d["code_task"]](d, text)
    except (KeyError, TypeError, ValueError, SyntaxError):  # a malformed spec: cannot judge
        return None
