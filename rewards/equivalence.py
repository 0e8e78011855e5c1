"""Structured equivalence of a gold answer and a prediction.

Contract: ``compare(g, p, gn, pn, timeout_s) -> Verdict`` for *normalized*
strings that the numeric fast path could not settle.  Both are parsed with our
own parser (``rewards.parse``); values are checked with exact rationals and
40-digit numerics in-process (``rewards.evaluate``, bounded by guards and a
cooperative deadline); sympy runs only in the bounded worker pool
(``rewards.pool``) for the few cases below marked [sympy].

Gold vs prediction rules (the check is asymmetric where that blocks hacks):

* Values: the scalar rules of ``rewards.verifier`` (rules 2-7) as
  implemented in ``rewards.scalar``: exact rationals exactly; a bare decimal
  approximates a non-rational value only to its stated precision; variables
  at random rational points of both signs (so ``\\sqrt{x^2} != x``), exactly
  where possible, then [sympy]; a numeric gold never equals an expression in
  a variable.
* Text answers (``\\text{Tuesday}``, choice letters ``(B)``) compare
  case-insensitively; a choice letter matches with or without parentheses.
* ``a \\pm b`` is the set ``{a+b, a-b}``.
* Order rules: ``\\{...\\}`` sets and bare comma lists (``2, 5``) are
  unordered and ignore duplicates; a one-element set/list equals its element.
  Parenthesized tuples ``(1, 2, 3)``, ``\\langle..\\rangle`` vectors and
  matrices are ordered; a row/column vector equals a tuple of the same
  entries.  A set never equals a tuple.
* ``(a, b)`` is both an ordered pair and an open interval; ``[a, b)`` etc.
  are intervals; ``\\cup`` / ``U`` unions and ``\\mathbb{R}`` are sets of reals.
  Unions are sorted and touching pieces merged before comparing; infinite
  endpoints ignore bracket type.
* Equations: an assignment ``x = 3`` equals the value ``3`` either way round;
  two assignments must name the same variable; ``x = 2 \\text{ or } x = 3``
  is the set ``{2, 3}``.  Equations in several variables (``y = 2x + 3``)
  match equations whose ``lhs - rhs`` is a nonzero constant multiple.
* Inequalities: a *gold* inequality in any form is turned into intervals
  (solved forms directly, others by [sympy]); a *prediction* must be an
  interval, a union, or an inequality already solved for the variable
  (``x > 3``, ``-1 \\le x < 2``, ``x < 0 \\text{ or } x > 1``).  Echoing an
  unsolved inequality from the problem (``x^2 - 4 < 0``) is wrong, not
  equivalent.
* Numbers: a plain-number gold (``94``, ``5/4``) needs a number, not the
  arithmetic that gives it: ``12 + 82``, ``3 \\cdot 4``, ``2^{5} \\cdot 2^{5}`` are wrong
  (``unevaluated``), as echoing the question would otherwise be a reward a
  policy learns; a fraction ``188/2``, a power ``2^{10}`` and a sign are numbers.
"""

from __future__ import annotations

import re

from . import pool
from .errors import GuardError, ParseError
from .evaluate import Budget, free_symbols
from .intervals import Unsolved, compare_intervals, relation_intervals, to_intervals
from .parse import parse
from .scalar import proportional, scalar_eq
from .verdict import Verdict

SCALAR = {"n", "s", "c", "+", "*", "neg", "/", "^", "sqrt", "f", "log", "!", "abs", "binom", "pm"}
SETS = {"interval", "union", "reals", "empty"}
MAX_ITEMS = 64

_CHOICE = re.compile(r"\(?([A-Ea-e])\)?")
_MATH_WORDS = {
    "pi",
    "sqrt",
    "inf",
    "infty",
    "oo",
    "or",
    "and",
    "sin",
    "cos",
    "tan",
    "log",
    "ln",
    "exp",
    "abs",
    "cot",
    "sec",
    "csc",
    "U",
}
_TEXTY = re.compile(r"[A-Za-z][A-Za-z\s'\-]*")


def is_text(s: str) -> bool:
    if _CHOICE.fullmatch(s) and (s.startswith("(") or s.isupper()):
        return True
    if not _TEXTY.fullmatch(s):
        return False
    words = s.split()
    return (
        any(len(w) >= 3 and w not in _MATH_WORDS for w in words) or len(words) > 1 and all(len(w) >= 2 for w in words)
    )


def _text_key(s: str) -> str:
    m = _CHOICE.fullmatch(s)
    if m:
        return m.group(1).lower()
    return re.sub(r"[^a-z0-9]", "", s.lower())


def gold_problem(g: str) -> Verdict | None:
    """A None-verdict if the gold cannot be read at all, else None."""
    if is_text(g):
        return None
    try:
        parse(g)
    except GuardError as exc:
        return Verdict(None, f"gold over safety limits: {exc}", "guard")
    except ParseError as exc:
        return Verdict(None, f"gold unreadable: {exc}", "unsupported")
    return None


def compare(g: str, p: str, gn, pn, timeout_s: float) -> Verdict:
    if is_text(g):
        same = _text_key(g) == _text_key(p)
        return Verdict(same, "same text answer" if same else "different text answer", "text")
    try:
        gast = parse(g)
    except GuardError as exc:
        return Verdict(None, f"gold over safety limits: {exc}", "guard")
    except ParseError as exc:
        return Verdict(None, f"gold unreadable: {exc}", "unsupported")
    try:
        past = parse(p)
    except GuardError as exc:
        return Verdict(False, f"prediction over safety limits: {exc}", "guard")
    except ParseError as exc:
        return Verdict(False, f"prediction unreadable: {exc}", "unreadable")
    if gn is not None and unevaluated(past):
        return Verdict(False, "an arithmetic expression, not its value", "unevaluated")
    budget = Budget(timeout_s)
    try:
        equal, reason = match(gast, past, budget)
    except TimeoutError:
        return Verdict(None, "timeout", "timeout")
    except RecursionError:
        return Verdict(None, "input too deeply nested", "guard")
    return Verdict(equal, reason, "structural")


ARITHMETIC = {"n", "+", "*", "neg", "/", "^"}


def _literal(node) -> bool:
    """A number as written: ``94``, ``-94``, ``188/2``, ``\\frac{-3}{4}``, ``10^{2}``."""
    if node[0] == "neg":
        return _literal(node[1])
    return node[0] == "n" or (node[0] in "/^" and _signed(node[1]) and _signed(node[2]))


def _signed(node) -> bool:
    return node[0] == "n" or (node[0] == "neg" and _signed(node[1]))


def unevaluated(node) -> bool:
    """Arithmetic of number literals only (no variables, constants or functions) that is not
    itself a literal: what a policy writes when it restates ``12 + 82`` instead of computing it."""

    def pure(n) -> bool:
        return n[0] in ARITHMETIC and (n[0] == "n" or all(pure(k) for k in _kids(n)))

    return not _literal(node) and pure(node)


# ------------------------------------------------------------------ dispatch
def match(g, p, budget: Budget) -> tuple[bool | None, str]:
    g, p = _pm_to_set(g), _pm_to_set(p)
    gk, pk = g[0], p[0]
    if gk in SCALAR:
        return _match_scalar(g, p, budget)
    if gk in ("rel", "or"):
        return _match_relation(g, p, budget)
    if gk in SETS or gk == "pair" and (pk in SETS or pk in ("rel", "or", "interval")):
        return _match_sets_of_reals(g, p, budget)
    if gk in ("pair", "tuple"):
        return _ordered(_items(g), _vector_items(p), budget, "tuple")
    if gk in ("set", "list"):
        return _match_collection(g, p, budget)
    if gk == "matrix":
        return _match_matrix(g, p, budget)
    return None, f"unsupported gold kind {gk}"


def _items(node) -> tuple:
    return (node[1], node[2]) if node[0] == "pair" else node[1]


def _vector_items(node):
    if node[0] in ("pair", "tuple"):
        return _items(node)
    if node[0] == "matrix" and (len(node[1]) == 1 or all(len(r) == 1 for r in node[1])):
        return tuple(x for row in node[1] for x in row)
    return None


def _match_scalar(g, p, budget):
    pk = p[0]
    if pk in SCALAR:
        return scalar_eq(g, p, budget)
    if pk == "rel":
        value = _assignment(p)
        if value is None:
            return False, "prediction is an unsolved relation"
        return scalar_eq(g, value[1], budget)
    if pk in ("set", "list") and len(p[1]) == 1:
        return match(g, p[1][0], budget)
    return False, f"gold is a value, prediction is a {pk}"


def _assignment(node):
    """``x = expr`` (or ``expr = x``) with x not in expr -> (name, expr)."""
    if node[0] != "rel" or node[1] != ("=",):
        return None
    lhs, rhs = node[2]
    for var, val in ((lhs, rhs), (rhs, lhs)):
        if var[0] == "s" and var[1] not in free_symbols(val):
            return var[1], val
    return None


def _assignments(node):
    """Values of ``x = a or x = b`` / ``x = a, x = b`` for one variable, else None."""
    items = node[1] if node[0] in ("or", "list", "set") else (node,)
    pairs = [_assignment(i) for i in items]
    if not pairs or any(a is None for a in pairs) or len({a[0] for a in pairs}) != 1:
        return None
    values = []
    for _, value in pairs:  # x = 2 \pm \sqrt{3} is two values
        expanded = _pm_to_set(value)
        values.extend(expanded[1] if expanded is not value else (value,))
    return pairs[0][0], tuple(values)


def _match_relation(g, p, budget):
    assigned = _assignments(g)
    if assigned is not None:
        var, values = assigned
        if len(values) == 1 and free_symbols(values[0]) and p[0] == "rel" and _assignment(p) is None:
            return _equation_eq(g, p, budget)  # y = 2x + 3 vs 2x - y + 3 = 0
        if len(values) == 1 and p[0] in SCALAR:
            return match(values[0], p, budget)
        pa = _assignments(p)
        if pa is not None:
            if pa[0] != var:
                return False, f"variable {pa[0]} instead of {var}"
            return _unordered(values, pa[1], budget)
        if p[0] in ("set", "list"):
            return _unordered(values, p[1], budget)
        if p[0] in SCALAR:
            return _unordered(values, (p,), budget)
        return False, "prediction is not a value for the assigned variable"
    if g[0] == "rel" and all(op == "=" for op in g[1]) and len(g[2]) == 2:
        if p[0] == "rel" and p[1] == ("=",):
            return _equation_eq(g, p, budget)
        return False, "gold is an equation, prediction is not"
    return _match_sets_of_reals(g, p, budget)


def _equation_eq(g, p, budget):
    dg = ("+", (g[2][0], ("neg", g[2][1])))
    dp = ("+", (p[2][0], ("neg", p[2][1])))
    return proportional(dg, dp, budget)


def _match_sets_of_reals(g, p, budget):
    try:
        g_var, g_iv = _as_intervals(g, gold=True, budget=budget)
    except Unsolved as exc:
        return None, f"gold set not understood: {exc}"
    try:
        p_var, p_iv = _as_intervals(p, gold=False, budget=budget)
    except Unsolved as exc:
        return False, f"prediction is not an interval or a solved inequality: {exc}"
    if g_var and p_var and g_var != p_var:
        return False, f"variable {p_var} instead of {g_var}"
    return compare_intervals(g_iv, p_iv, budget)


def _as_intervals(node, gold: bool, budget: Budget):
    if node[0] in ("rel", "or"):
        try:
            return relation_intervals(node)
        except Unsolved:
            if not gold:
                raise
            solved = pool.solve_relation(node, budget)  # [sympy]: gold inequalities in any form
            if solved is None:
                raise
            return solved
    if node[0] == "set" and len(node[1]) == 1 and node[1][0][0] in ("rel", "or"):
        return _as_intervals(node[1][0], gold, budget)
    return None, to_intervals(node)


def _match_collection(g, p, budget):
    gi = g[1]
    if p[0] in ("set", "list"):
        return _unordered(gi, p[1], budget)
    if p[0] in ("or", "rel"):
        pa = _assignments(p)
        if pa is not None:
            return _unordered(gi, pa[1], budget)
    if len(gi) == 1:
        return match(gi[0], p, budget)
    if g[0] == "set" and p[0] in ("pair", "tuple"):
        return False, "a set is not a tuple"
    return False, f"gold is a collection, prediction is a {p[0]}"


def _dedupe(items, budget):
    out = []
    for it in items:
        if not any(match(it, o, budget)[0] for o in out):
            out.append(it)
    return out


def _unordered(gi, pi, budget):
    if len(gi) > MAX_ITEMS or len(pi) > MAX_ITEMS:
        return None, "too many items"
    gi, pi = _dedupe(gi, budget), _dedupe(pi, budget)
    if len(gi) != len(pi):
        return False, f"{len(pi)} distinct items instead of {len(gi)}"
    free = list(pi)
    for item in gi:
        for j, cand in enumerate(free):
            eq, reason = match(item, cand, budget)
            if eq is None and reason.startswith("gold"):
                return None, reason
            if eq:
                free.pop(j)
                break
        else:
            return False, "an item has no match"
    return True, "same items (unordered)"


def _ordered(gi, pi, budget, what):
    if pi is None:
        return False, f"prediction is not a {what}"
    if len(gi) != len(pi):
        return False, f"{len(pi)} entries instead of {len(gi)}"
    for a, b in zip(gi, pi, strict=True):  # lengths checked above
        eq, reason = match(a, b, budget)
        if not eq:
            return eq, reason
    return True, f"same {what} entries in order"


def _match_matrix(g, p, budget):
    if p[0] == "matrix":
        gs, ps = (len(g[1]), len(g[1][0])), (len(p[1]), len(p[1][0]))
        if gs != ps:
            return False, f"shape {ps} instead of {gs}"
        return _ordered(tuple(x for r in g[1] for x in r), tuple(x for r in p[1] for x in r), budget, "matrix")
    gv = _vector_items(g)
    if gv is not None and p[0] in ("pair", "tuple"):
        return _ordered(gv, _items(p), budget, "vector")
    return False, "prediction is not a matrix"


def _pm_to_set(node):
    """``a \\pm b`` anywhere in a scalar -> ('set', (a + b, a - b))."""
    if node[0] not in SCALAR or not _has_pm(node):
        return node
    out = [node]
    for _ in range(3):
        nxt = []
        for n in out:
            nxt.extend(_split_pm(n) if _has_pm(n) else [n])
        out = nxt
    if any(_has_pm(n) for n in out):
        raise GuardError("too many \\pm")
    return ("set", tuple(out))


def _has_pm(node) -> bool:
    if node[0] == "pm":
        return True
    return any(isinstance(x, tuple) and x and isinstance(x[0], str) and _has_pm(x) for x in _kids(node))


def _kids(node):
    if node[0] in ("+", "*"):
        return node[1]
    return [x for x in node[1:] if isinstance(x, tuple)]


def _split_pm(node):
    """Replace the first pm in ``node`` by + and - (two trees)."""
    if node[0] == "pm":
        a, b = node[1], node[2]
        return [("+", (a, b)), ("+", (a, ("neg", b)))]
    if node[0] in ("+", "*"):
        for i, k in enumerate(node[1]):
            if _has_pm(k):
                return [(node[0], node[1][:i] + (v,) + node[1][i + 1 :]) for v in _split_pm(k)]
    for i, k in enumerate(node):
        if i and isinstance(k, tuple) and k and isinstance(k[0], str) and _has_pm(k):
            return [node[:i] + (v,) + node[i + 1 :] for v in _split_pm(k)]
    return [node]
