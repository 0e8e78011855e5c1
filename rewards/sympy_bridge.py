"""sympy tasks run by ``rewards.pool`` (in a worker process, or in-process).

Contract: converts our ASTs to sympy objects with constructors only (never
``sympify``/``parse_expr`` on text) and back.  Powers whose exponent is a
constant are refused above ``MAX_EXP`` before sympy could evaluate them.
Tasks: ``equal(a, b) -> bool``, ``solve(relation) -> (var, intervals) | None``,
``ping() -> True`` (plus underscored test hooks).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import sympy as sp

from .errors import GuardError
from .evaluate import exact, free_symbols

MAX_EXP = 1000
_FUNCS = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "cot": sp.cot,
    "sec": sp.sec,
    "csc": sp.csc,
    "arcsin": sp.asin,
    "arccos": sp.acos,
    "arctan": sp.atan,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "exp": sp.exp,
    "ln": sp.log,
    "floor": sp.floor,
    "ceil": sp.ceiling,
}
_REL = {
    "<": sp.StrictLessThan,
    "<=": sp.LessThan,
    ">": sp.StrictGreaterThan,
    ">=": sp.GreaterThan,
    "=": sp.Eq,
    "!=": sp.Ne,
}


def to_sympy(node):
    tag = node[0]
    if tag == "n":
        q = node[1]
        return sp.Rational(q.numerator, q.denominator)
    if tag == "s":
        return sp.Symbol(node[1], real=True)
    if tag == "c":
        return {"pi": sp.pi, "e": sp.E, "i": sp.I, "oo": sp.oo}[node[1]]
    if tag == "neg":
        return -to_sympy(node[1])
    if tag == "+":
        return sp.Add(*[to_sympy(t) for t in node[1]])
    if tag == "*":
        return sp.Mul(*[to_sympy(t) for t in node[1]])
    if tag == "/":
        return to_sympy(node[1]) / to_sympy(node[2])
    if tag == "^":
        if not free_symbols(node[2]):
            e = exact(node[2])  # raises TooLarge on towers
            if e is not None and abs(e) > MAX_EXP:
                raise GuardError("exponent too large for sympy")
        return sp.Pow(to_sympy(node[1]), to_sympy(node[2]))
    if tag == "sqrt":
        arg = to_sympy(node[1])
        return sp.sqrt(arg) if node[2] is None else sp.real_root(arg, to_sympy(node[2]))
    if tag == "abs":
        return sp.Abs(to_sympy(node[1]))
    if tag == "!":
        return sp.factorial(to_sympy(node[1]))
    if tag == "binom":
        return sp.binomial(to_sympy(node[1]), to_sympy(node[2]))
    if tag == "log":
        arg = to_sympy(node[2])
        return sp.log(arg) if node[1] is None else sp.log(arg, to_sympy(node[1]))
    if tag == "f":
        return _FUNCS[node[1]](to_sympy(node[2]))
    raise ValueError(f"no sympy form for {tag}")


def from_sympy(e):
    if e is sp.oo:
        return ("c", "oo")
    if e is sp.S.NegativeInfinity:
        return ("neg", ("c", "oo"))
    if e.is_Rational:
        return ("n", Fraction(int(e.p), int(e.q)), False)
    if e.is_Float:
        return ("n", Fraction(str(e)), True)
    if e is sp.pi:
        return ("c", "pi")
    if e is sp.E:
        return ("c", "e")
    if e is sp.I:
        return ("c", "i")
    if e.is_Symbol:
        return ("s", e.name)
    if e.is_Add:
        return ("+", tuple(from_sympy(a) for a in e.args))
    if e.is_Mul:
        return ("*", tuple(from_sympy(a) for a in e.args))
    if e.is_Pow:
        return ("^", from_sympy(e.base), from_sympy(e.exp))
    if isinstance(e, sp.Abs):
        return ("abs", from_sympy(e.args[0]))
    if isinstance(e, sp.log):
        return ("log", None, from_sympy(e.args[0]))
    for name, fn in _FUNCS.items():
        if isinstance(e, fn) and name != "ln":
            return ("f", name, from_sympy(e.args[0]))
    raise ValueError(f"cannot convert {type(e).__name__}")


def equal(a, b) -> bool | None:
    diff = to_sympy(a) - to_sympy(b)
    if diff == 0:
        return True
    zero = diff.is_zero  # assumptions only: cheap, often decisive
    if zero is not None:
        return zero
    simplified = sp.simplify(diff)
    if simplified == 0:
        return True
    zero = simplified.is_zero
    if zero is None:
        zero = sp.nsimplify(simplified) == 0 or None
    return zero


def _rel_to_sympy(node):
    if node[0] == "or":
        return sp.Or(*[_rel_to_sympy(r) for r in node[1]])
    ops, terms = node[1], [to_sympy(t) for t in node[2]]
    if "in" in ops:
        raise ValueError("membership")
    parts = [_REL[op](terms[i], terms[i + 1]) for i, op in enumerate(ops)]
    return sp.And(*parts) if len(parts) > 1 else parts[0]


def _set_to_intervals(s) -> list[tuple]:
    if isinstance(s, sp.Union):
        out = []
        for part in s.args:
            out.extend(_set_to_intervals(part))
        return out
    if isinstance(s, sp.Interval):
        return [
            (
                from_sympy(s.start),
                not s.left_open and s.start.is_finite,
                from_sympy(s.end),
                not s.right_open and s.end.is_finite,
            )
        ]
    if isinstance(s, sp.FiniteSet):
        return [(from_sympy(x), True, from_sympy(x), True) for x in s.args]
    if s is sp.S.Reals:
        return [(("neg", ("c", "oo")), False, ("c", "oo"), False)]
    if s is sp.S.EmptySet:
        return []
    raise ValueError(f"cannot convert set {type(s).__name__}")


def solve(node):
    rel = _rel_to_sympy(node)
    symbols = sorted(rel.free_symbols, key=lambda x: x.name)
    if len(symbols) != 1:
        return None
    (x,) = symbols
    solution = sp.solveset(rel, x, domain=sp.S.Reals) if not isinstance(rel, (sp.And, sp.Or)) else rel.as_set()
    return x.name, _set_to_intervals(solution)


def _ping() -> bool:
    return True


def _stuck(seconds: float) -> None:
    """Test hook: a task that ignores the worker's own alarm (must be killed)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


# Underscored tasks exist for the test-suite (hung/slow workers).
TASKS: dict[str, Callable[..., Any]] = {
    "equal": equal,
    "solve": solve,
    "ping": _ping,
    "_sleep": time.sleep,
    "_stuck": _stuck,
}
