"""Property test of ``verify``: random expressions equal by construction are equal;
random perturbations of them are not (seeded, so every run checks the same cases).

Each case is a random expression tree (integers, x, y, + - * /, small powers,
sin/cos, square roots, pi) rendered once plainly and once through random
value-preserving rewrites (commuting, distributing nothing away, 2a/2, a*b^-1,
powers as products, sin a = cos(pi/2 - a), n/sqrt n, ...).  A perturbation adds
a nonzero term (a tiny constant or a tiny multiple of a variable the gold uses)
or adds (E^2 + 1) / 10^k: never equal, however small.
"""
from __future__ import annotations

import random

import pytest

from rewards import verify

SEED = 21
CASES = 60


def _tree(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([("num", rng.randint(1, 9)), ("var", rng.choice("xy")), ("var", "x"),
                           ("sqrt", rng.choice([2, 3, 5, 7])), ("pi",)])
    op = rng.choice(["add", "sub", "mul", "mul", "div", "pow", "sin", "cos"])
    if op in ("sin", "cos"):
        return (op, _tree(rng, depth - 1))
    if op == "pow":
        return ("pow", _tree(rng, depth - 1), rng.randint(2, 3))
    if op == "div":  # a denominator that is never zero at any real point
        return ("div", _tree(rng, depth - 1), ("add", ("pow", ("var", "x"), 2), ("num", rng.randint(1, 5))))
    return (op, _tree(rng, depth - 1), _tree(rng, depth - 1))


def plain(t) -> str:
    tag = t[0]
    if tag == "num":
        return str(t[1])
    if tag == "var":
        return t[1]
    if tag == "pi":
        return "\\pi"
    if tag == "sqrt":
        return f"\\sqrt{{{t[1]}}}"
    if tag in ("sin", "cos"):
        return f"\\{tag}({plain(t[1])})"
    if tag == "pow":
        return f"({plain(t[1])})^{{{t[2]}}}"
    if tag == "div":
        return f"\\frac{{{plain(t[1])}}}{{{plain(t[2])}}}"
    sym = {"add": "+", "sub": "-", "mul": "\\cdot"}[tag]
    return f"({plain(t[1])} {sym} {plain(t[2])})"


def rewritten(t, rng: random.Random) -> str:
    """An equal expression, by a random value-preserving rewrite at every node."""
    tag, r = t[0], (lambda u: rewritten(u, rng))
    pick = rng.randrange(3)
    if tag == "num":
        return [str(t[1]), f"\\frac{{{2 * t[1]}}}{{2}}", f"\\sqrt{{{t[1] ** 2}}}"][pick]
    if tag == "var":
        return [t[1], f"\\frac{{2{t[1]}}}{{2}}", f"(1 \\cdot {t[1]})"][pick]
    if tag == "pi":
        return ["\\pi", "\\frac{2\\pi}{2}", "(\\pi \\cdot 1)"][pick]
    if tag == "sqrt":
        return [f"\\sqrt{{{t[1]}}}", f"\\frac{{{t[1]}}}{{\\sqrt{{{t[1]}}}}}", f"({t[1]})^{{1/2}}"][pick]
    if tag == "sin":
        return [f"\\sin({r(t[1])})", f"\\cos(\\frac{{\\pi}}{{2}} - ({r(t[1])}))", f"(-\\sin(-({r(t[1])})))"][pick]
    if tag == "cos":
        return [f"\\cos({r(t[1])})", f"\\sin(\\frac{{\\pi}}{{2}} + ({r(t[1])}))", f"\\cos(-({r(t[1])}))"][pick]
    if tag == "pow":
        copies = " \\cdot ".join(f"({r(t[1])})" for _ in range(t[2]))
        if pick == 2 and not _nonzero(t[1]):
            pick = 1
        return [f"({r(t[1])})^{{{t[2]}}}", f"({copies})",
                f"(({r(t[1])})^{{{t[2] + 1}}} \\cdot ({r(t[1])})^{{-1}})"][pick]
    if tag == "div":
        return [f"\\frac{{{r(t[1])}}}{{{r(t[2])}}}", f"(({r(t[1])}) \\cdot ({r(t[2])})^{{-1}})",
                f"\\frac{{2({r(t[1])})}}{{2({r(t[2])})}}"][pick]
    a, b = r(t[1]), r(t[2])
    if tag == "add":
        return [f"({a} + {b})", f"({b} + {a})", f"({a} - (-{b}))"][pick]
    if tag == "sub":
        return [f"({a} - {b})", f"(-({b} - {a}))", f"({a} + (-1) \\cdot {b})"][pick]
    return [f"({a} \\cdot {b})", f"({b} \\cdot {a})", f"({a})({b})"][pick]


def _nonzero(t) -> bool:
    return t[0] in ("num", "pi", "sqrt")


def _variables(t) -> set[str]:
    if t[0] == "var":
        return {t[1]}
    return set().union(*(_variables(k) for k in t[1:] if isinstance(k, tuple)))


def perturbed(t, rng: random.Random) -> str:
    """A never-equal neighbour: plus a nonzero (often tiny) term."""
    k = rng.choice([1, 3, 8, 20, 40])
    names = sorted(_variables(t))
    kind = rng.randrange(3)
    if kind == 0 or not names:
        return f"{rewritten(t, rng)} + 10^{{-{k}}}"
    if kind == 1:
        return f"{rewritten(t, rng)} + \\frac{{{rng.choice(names)}^{{{rng.randint(1, 3)}}}}}{{10^{{{k}}}}}"
    return f"({rewritten(t, rng)}) + \\frac{{({plain(t)})^{{2}} + 1}}{{10^{{{k}}}}}"  # E^2 + 1 > 0


def _cases():
    rng = random.Random(SEED)
    out = []
    for i in range(CASES):
        t = _tree(rng, 3)
        out.append(pytest.param(plain(t), rewritten(t, rng), True, id=f"equal-{i}"))
        out.append(pytest.param(plain(t), perturbed(t, rng), False, id=f"perturbed-{i}"))
    return out


@pytest.mark.parametrize("gold,prediction,expected", _cases())
def test_equal_by_construction_and_perturbations(gold, prediction, expected):
    verdict = verify(gold, prediction, timeout_s=5.0)
    assert verdict.equal is expected, (verdict.reason, gold, prediction)
