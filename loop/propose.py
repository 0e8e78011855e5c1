"""Propose stage: problems with exact answers.

Sources (one registry, `SOURCES`):
- `arithmetic`: procedural, seeded, difficulty levels 1-4; answers computed with
  sympy exact arithmetic (integers and rationals), never floats.
- `jsonl`: GSM8K-format seed files (`question`, `answer` ending in `#### N`).
- `self`: the current model writes problems with answer programs (loop/proposer.py).
Every arithmetic problem carries a one-line sympy answer program in `meta.program`
(`answer = Integer(47) + 38`), the proposer's few-shot format.
With `propose.curriculum.resample_max > 0` (or a `self` source) the stage also
re-adds earlier problems whose pass rate lies in the band and records retirements.
A problem's id is the hash of its normalized question and answer, so the same
problem proposed twice is stored once.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import sympy


class ProposeError(ValueError):
    """A seed source is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str
    source: str
    kind: str
    level: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def problem_id(self) -> str:
        key = " ".join(self.question.split()).lower() + "\x00" + self.answer.strip()
        return hashlib.sha256(key.encode()).hexdigest()[:16]


# --- procedural arithmetic --------------------------------------------------------

def _level1(r: random.Random) -> tuple[str, sympy.Expr, str]:
    a, b = r.randint(10, 99), r.randint(10, 99)
    op = r.choice("+-")
    return f"{a} {op} {b}", sympy.Integer(a) + (b if op == "+" else -b), "add_sub"


def _level2(r: random.Random) -> tuple[str, sympy.Expr, str]:
    if r.random() < 0.5:
        a, b = r.randint(10, 99), r.randint(2, 9)
        return f"{a} * {b}", sympy.Integer(a) * b, "mul"
    a, b, c = (r.randint(10, 99) for _ in range(3))
    return f"{a} + {b} - {c}", sympy.Integer(a) + b - c, "add_sub3"


def _level3(r: random.Random) -> tuple[str, sympy.Expr, str]:
    a, b, c = r.randint(10, 99), r.randint(10, 99), r.randint(2, 9)
    if r.random() < 0.5:
        return f"({a} + {b}) * {c}", (sympy.Integer(a) + b) * c, "paren"
    return f"{a} * {c} - {b}", sympy.Integer(a) * c - b, "mul_sub"


def _level4(r: random.Random) -> tuple[str, sympy.Expr, str]:
    a, b, c, d = r.randint(1, 9), r.randint(2, 9), r.randint(1, 9), r.randint(2, 9)
    return f"{a}/{b} + {c}/{d}", sympy.Rational(a, b) + sympy.Rational(c, d), "fractions"


def answer_program(expr: str) -> str:
    """A one-line sympy program that computes `expr` exactly: `answer = Integer(47) + 38`,
    fractions as `Rational(a, b)` (it runs with `from sympy import *` in front)."""
    if "/" in expr:
        return "answer = " + re.sub(r"(\d+)/(\d+)", r"Rational(\1, \2)", expr)
    return "answer = " + re.sub(r"\d+", lambda m: f"Integer({m.group()})", expr, count=1)


LEVELS = {1: _level1, 2: _level2, 3: _level3, 4: _level4}
TEMPLATES = ["What is {e}?", "Compute {e}.", "Calculate {e}.", "What is the value of {e}?"]


def arithmetic(count: int, levels: list[int], seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """`count` distinct problems, levels spread evenly, none whose expression is in `exclude`."""
    r = random.Random(seed)
    out: dict[str, Problem] = {}
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > count * 100:
            raise ProposeError(f"arithmetic: cannot draw {count} distinct problems at levels {levels}")
        level = levels[len(out) % len(levels)]
        expr, value, kind = LEVELS[level](r)
        q = r.choice(TEMPLATES).format(e=expr)
        if expr in exclude or q in out:  # held-out expressions never train
            continue
        out[q] = Problem(question=q, answer=str(value), source="arithmetic", kind=kind, level=level,
                         meta={"expression": expr, "seed": seed,
                               "program": answer_program(expr)})
    return list(out.values())


# --- GSM8K-format seed files ------------------------------------------------------
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


def propose(sources, seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """All problems for one round from the configured sources (deterministic in seed)."""
    out: list[Problem] = []
    for k, src in enumerate(sources):
        s = seed * 1000 + k
        if src.kind == "arithmetic":
            out += arithmetic(src.count, src.levels, s, exclude)
        elif src.kind == "jsonl":
            pool = [p for p in load_jsonl(src.path) if p.question not in exclude]
            out += sample_jsonl(pool, src.count, s)
    seen, unique = set(), []
    for p in out:
        if p.problem_id not in seen:
            seen.add(p.problem_id)
            unique.append(p)
    return unique


def heldout(n: int, levels: list[int], seed: int) -> list[Problem]:
    """The fixed evaluation set: same generator, a seed no training round uses."""
    return arithmetic(n, levels, seed)


def heldout_keys(problems: list[Problem]) -> set[str]:
    """What training proposals must avoid: held-out expressions and questions."""
    return {p.meta.get("expression", p.question) for p in problems} | {p.question for p in problems}


# --- the stage ------------------------------------------------------------------
def stage(ctx, r: int) -> dict:
    """Propose round r's problems; store them and the round's membership in one transaction."""
    from store import stats
    cfg = ctx.cfg
    held = heldout(cfg.evaluate.n_problems, cfg.evaluate.levels, cfg.evaluate.seed)
    exclude = heldout_keys(held)
    problems = propose(cfg.propose.sources, seed=ctx.round_seed(r, "propose"), exclude=exclude)
    plan = None
    if cfg.propose.curriculum.resample_max or any(s.kind == "self" for s in cfg.propose.sources):
        from loop.proposer import plan_round  # self-proposed problems + curriculum
        plan = plan_round(ctx, r, problems, held, exclude)
        problems += plan.problems
    rows = [{"problem_id": p.problem_id, "source": p.source, "kind": p.kind, "level": p.level,
             "question": p.question, "answer": p.answer, "meta": p.meta} for p in problems]
    ids = list(dict.fromkeys([p.problem_id for p in problems] + (plan.resample if plan else [])))
    members = [{"run_id": ctx.run_id, "round": r, "problem_id": pid} for pid in ids]
    info = {"problems": len(ids), "sources": sorted({p.source for p in problems})} | (plan.info if plan else {})
    with ctx.store.transaction():
        ctx.store.insert_rows("problems", rows)
        ctx.store.insert_rows("round_problems", members)
        for table, extra in (plan.tables if plan else {}).items():
            ctx.store.insert_rows(table, extra)
        stats.record_proposed(ctx.store, ctx.run_id, r)
        ctx.mark_done(r, "propose", info)
    return info
