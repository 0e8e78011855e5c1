"""Named row formats: how a reader's rows become problems (verifiable answers) or
conversations (instruction data), one registry each.

Problem formats (`FORMATS`, for `propose.sources` and evaluation): `gsm8k` (question,
answer ending `#### N`), `math` (problem, solution with a final `\\boxed{...}`), `plain`
(question_field/answer_field as they are). `question_field`, `answer_field` and
`answer_format` (gsm8k | boxed | plain) override a format's defaults.
Conversation formats (`CHAT_FORMATS`, for `loop sft`): `alpaca` (instruction, input,
output; optional system, history as [[user, assistant], ...]), `messages` (OpenAI
`messages` [{role, content}] or ShareGPT `conversations` [{from, value}]), `medical`
(department, title, ask, answer); a problem format also gives a conversation (question ->
the whole answer text). Every result carries its provenance (file, line, encoding).
Errors name file:line and the field, and for a missing column the columns present.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loop.problems import Problem, ProposeError
from loop.problems.readers.base import Row, Table


@dataclass(frozen=True)
class Mapping:
    question: str
    answer: str
    answer_format: str  # gsm8k | boxed | plain


FORMATS: dict[str, Mapping] = {
    "gsm8k": Mapping("question", "answer", "gsm8k"),
    "math": Mapping("problem", "solution", "boxed"),
    "plain": Mapping("question", "answer", "plain"),
}
ANSWER_FORMATS = ("gsm8k", "boxed", "plain")
ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
}


def mapping(src) -> Mapping:
    """The source's field mapping: its format's defaults, overridden by its settings."""
    if src.format not in FORMATS:
        raise ProposeError(
            f"{src.path}: format {src.format!r} has no verifiable answer; valid for problems: "
            f"{', '.join(sorted(FORMATS))} (instruction formats go to `instruct.sources`)"
        )
    m = FORMATS[src.format]
    return Mapping(src.question_field or m.question, src.answer_field or m.answer, src.answer_format or m.answer_format)


def require_columns(table: Table, path: str, needed: list[str]) -> None:
    """Tabular sources name a missing column once, with the columns present (JSON rows, whose
    keys vary, are checked row by row: `text_field`)."""
    if table.reader in ("json", "jsonl"):
        return
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ProposeError(f"{path}: column {missing[0]!r} missing; columns present: {', '.join(table.columns)}")


def text_field(row: Row, key: str, required: bool = True) -> str:
    v = row.data.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            have = ", ".join(k for k, x in row.data.items() if x not in (None, ""))
            raise ProposeError(f"{row.where}: field {key!r} missing or empty; this row has: {have}")
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ProposeError(f"{row.where}: field {key!r} must be text, got {type(v).__name__}")
    return str(v).strip()


def final_answer(row: Row, key: str, text: str, fmt: str) -> tuple[str, str]:
    """(answer, solution) from the answer field by answer format."""
    if fmt == "gsm8k":
        solution, sep, final = text.rpartition("####")
        if not sep or not final.strip():
            raise ProposeError(f"{row.where}: field {key!r} has no final answer after '####'")
        return final.strip().replace(",", ""), solution.strip()
    if fmt == "boxed":
        boxed = last_boxed(text)
        if boxed is None:
            raise ProposeError(f"{row.where}: field {key!r} has no \\boxed{{...}} answer")
        return boxed, text
    return text, ""


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (braces balanced), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip() or None
    return None


def provenance(row: Row, table: Table) -> dict[str, Any]:
    info = next((f for f in table.files if f.path == row.file or f.path.startswith(row.file + "#")), None)
    return {
        "file": row.file,
        "line": row.line,
        "encoding": info.encoding if info else None,
        "sha256": info.sha256[:16] if info else None,
    }


def problems(table: Table, src, label: str) -> list[Problem]:
    """Every row as a Problem (meta: solution and provenance)."""
    m = mapping(src)
    require_columns(table, str(src.path), [m.question, m.answer])
    out = []
    for row in table.rows:
        q = text_field(row, m.question)
        answer, solution = final_answer(row, m.answer, text_field(row, m.answer), m.answer_format)
        out.append(
            Problem(
                question=q,
                answer=answer,
                source=label,
                kind=src.format,
                meta={"solution": solution, **provenance(row, table)},
            )
        )
    return out


# --- conversations -----------------------------------------------------------------
def _alpaca(row: Row, src) -> list[dict[str, str]]:
    instruction = text_field(row, src.question_field or "instruction")
    extra = text_field(row, "input", required=False)
    out = _system(text_field(row, "system", required=False) or src.system)
    history = row.data.get("history") or []
    if not isinstance(history, list) or any(not isinstance(h, (list, tuple)) or len(h) != 2 for h in history):
        raise ProposeError(f"{row.where}: field 'history' must be a list of [user, assistant] pairs")
    for user, assistant in history:
        out += [{"role": "user", "content": str(user)}, {"role": "assistant", "content": str(assistant)}]
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return out + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": text_field(row, src.answer_field or "output")},
    ]


def _messages(row: Row, src) -> list[dict[str, str]]:
    key = "messages" if "messages" in row.data else "conversations"
    turns = row.data.get(key)
    if not isinstance(turns, list) or not turns:
        raise ProposeError(
            f"{row.where}: field 'messages' (or 'conversations') missing or not a list; "
            f"this row has: {', '.join(row.data)}"
        )
    out = []
    for i, t in enumerate(turns):
        role = ROLES.get(str(t.get("role", t.get("from", ""))).lower()) if isinstance(t, dict) else None
        content = t.get("content", t.get("value")) if isinstance(t, dict) else None
        if role is None or not isinstance(content, str):
            raise ProposeError(
                f"{row.where}: {key}[{i}] needs a role (system/user/assistant or "
                f"human/gpt) and text content, got {t!r:.80}"
            )
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise ProposeError(f"{row.where}: {key} must end with an assistant turn (the completion trained on)")
    return out if out[0]["role"] == "system" else _system(src.system) + out


def _medical(row: Row, src) -> list[dict[str, str]]:
    ask = text_field(row, src.question_field or "ask", required=False) or text_field(row, "title")
    return _system(src.system) + [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": text_field(row, src.answer_field or "answer")},
    ]


def _system(text: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": text}] if text else []


CHAT_FORMATS: dict[str, Callable[[Row, Any], list[dict[str, str]]]] = {
    "alpaca": _alpaca,
    "messages": _messages,
    "medical": _medical,
}
CHAT_COLUMNS = {"alpaca": ["instruction", "output"], "medical": ["answer"], "messages": []}


def conversations(table: Table, src) -> list[dict[str, Any]]:
    """Every row as {"messages": [...], "meta": provenance} (plus the medical department)."""
    if src.format in CHAT_FORMATS:
        fields = {"instruction": src.question_field, "output": src.answer_field, "answer": src.answer_field}
        require_columns(table, str(src.path), [fields.get(c) or c for c in CHAT_COLUMNS[src.format]])
        fn = CHAT_FORMATS[src.format]
        out = []
        for row in table.rows:
            meta = provenance(row, table)
            for k in ("department", "dept_folder"):
                if k in row.data:
                    meta[k] = row.data[k]
            out.append({"messages": fn(row, src), "meta": meta})
        return out
    if src.format not in FORMATS:
        raise ProposeError(
            f"{src.path}: unknown format {src.format!r}; valid: {', '.join(sorted([*FORMATS, *CHAT_FORMATS]))}"
        )
    return [
        {
            "messages": _system(src.system)
            + [{"role": "user", "content": p.question}, {"role": "assistant", "content": _full_answer(p)}],
            "meta": {k: v for k, v in p.meta.items() if k != "solution"},
        }
        for p in problems(table, src, "")
    ]


def _full_answer(p: Problem) -> str:
    sol = p.meta.get("solution") or ""
    return sol if p.kind == "math" else (f"{sol}\n#### {p.answer}" if sol else p.answer)
