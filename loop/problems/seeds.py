"""GSM8K-format seed files: one JSON object per line, `question` and `answer` ending in `#### N`.

Errors name the file and line (ProposeError); an empty file is an error.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from loop.problems import Problem, ProposeError


def load_jsonl(path: str | Path) -> list[Problem]:
    """Every line must be a JSON object with string `question` and `answer` (`... #### N`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProposeError(f"{p}: seed file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProposeError(f"{p}: cannot read seed file: {e}") from None
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            problems.append(_parse_line(p, lineno, line))
    if not problems:
        raise ProposeError(f"{p}: seed file has no problems")
    return problems


def _parse_line(p: Path, lineno: int, line: str) -> Problem:
    where = f"{p}:{lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProposeError(f"{where}: malformed JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise ProposeError(f"{where}: expected a JSON object")
    for key in ("question", "answer"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ProposeError(f"{where}: field {key!r} missing or not a non-empty string")
    solution, sep, final = obj["answer"].rpartition("####")
    if not sep or not final.strip():
        raise ProposeError(f"{where}: field 'answer' has no final answer after '####'")
    return Problem(question=obj["question"].strip(), answer=final.strip().replace(",", ""),
                   source=f"jsonl:{p.name}", kind="gsm8k", meta={"solution": solution.strip(), "line": lineno})


def sample_jsonl(problems: list[Problem], count: int, seed: int) -> list[Problem]:
    r = random.Random(seed)
    return r.sample(problems, min(count, len(problems)))
