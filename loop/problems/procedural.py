"""Procedural arithmetic: seeded problems whose answers sympy computes exactly.

Levels 1-4 (add/sub, mul, parentheses, fractions); answers are integers or rationals,
never floats. Every problem carries a one-line sympy answer program in `meta.program`
(`answer = Integer(47) + 38`), the self-proposer's few-shot format. The held-out set is
the same generator under a seed no training round uses, and training proposals exclude
its expressions (`heldout_keys`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Set as AbstractSet

import sympy

from loop.problems import Problem, ProposeError


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


def arithmetic(count: int, levels: list[int], seed: int, exclude: AbstractSet[str] = frozenset()) -> list[Problem]:
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
        out[q] = Problem(
            question=q,
            answer=str(value),
            source="arithmetic",
            kind=kind,
            level=level,
            meta={"expression": expr, "seed": seed, "program": answer_program(expr)},
        )
    return list(out.values())


def heldout(n: int, levels: list[int], seed: int) -> list[Problem]:
    """The fixed evaluation set: same generator, a seed no training round uses."""
    return arithmetic(n, levels, seed)


def heldout_keys(problems: list[Problem]) -> set[str]:
    """What training proposals must avoid: held-out expressions and questions; for dashboards
    (one prompt for every image) the readings themselves."""
    keys = {p.meta.get("expression", p.question) for p in problems} | {p.question for p in problems}
    return keys | {p.answer for p in problems if p.kind == "dashboard"}
