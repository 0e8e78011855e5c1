"""Equality of two scalar expressions (see ``rewards.verifier`` for the rules).

Contract: ``scalar_eq(gold, pred, budget) -> (equal, reason)``; ``equal`` is
None only when the *gold* cannot be evaluated (over a safety limit, undefined)
or a [sympy] confirmation of a constant timed out.  Pure Python except the
[sympy] confirmation, which goes through the bounded pool.

* Exact rationals are compared exactly (``rewards.verdict.compare_numbers``).
* A prediction that uses a variable the gold does not use is not equal (a
  numeric gold never equals an expression with variables).
* Expressions with variables are evaluated at ``N_POINTS`` random points
  drawn per call from a generator seeded by a hash of both ASTs (so verdicts
  are reproducible, yet no fixed point set exists to target).  Points are
  rationals of both signs; where both sides are rational functions the values
  are compared *exactly* (a difference is never hidden by rounding), else at 40
  digits to 25 significant digits.  A numeric-only match then goes to sympy,
  whose exact answer wins when it finishes within the bound.
* Constants that are not rational agree to 25 significant digits relative to
  their size; a match that needs terms below ``10**-RISKY_LOG10`` or above
  ``10**RISKY_LOG10`` (or literals over ``BIG_LITERAL``), a near-zero match,
  or a rational vs an irrational-looking value, is decided by sympy; when
  sympy cannot tell, a match through tiny terms is *not* equal.
* A bare decimal approximates a non-rational value only to the precision it
  states (``rewards.verdict.approximates``).
"""

from __future__ import annotations

import hashlib
import random
from fractions import Fraction

from . import pool
from .evaluate import (
    Budget,
    EvalError,
    TooLarge,
    children,
    ctx,
    exact,
    free_symbols,
    has_decimal,
    literal_unit,
    numeric,
)
from .normalize import Num
from .verdict import approximates, compare_numbers

EXACT_TOL_DIGITS = 25
BIG_LITERAL = 10**12
RISKY_LOG10 = 15.0
N_POINTS = 5
_POINT_DEN = 1 << 30  # points are k / 2^30 with 1/8 <= |point| <= 7/2


def sample_points(g, p, symbols: list[str], k: int = N_POINTS) -> list[dict[str, Fraction]]:
    """``k`` random rational points, seeded by the two ASTs; the first two fix both signs."""
    rng = random.Random(hashlib.sha256(repr((g, p)).encode()).digest())
    out = []
    for i in range(k):
        point = {}
        for s in symbols:
            sign = 1 if i == 0 else -1 if i == 1 else rng.choice((-1, 1))
            point[s] = Fraction(sign * rng.randint(_POINT_DEN // 8, 7 * _POINT_DEN // 2), _POINT_DEN)
        out.append(point)
    return out


def _mp_env(point: dict[str, Fraction]) -> dict:
    c = ctx()
    return {s: c.mpf(q.numerator) / q.denominator for s, q in point.items()}


def _agree(c, a, b) -> str:
    """'same' (25 digits relative to the values), 'near' (only absolutely: near zero), 'differ'."""
    if c.isinf(a) or c.isinf(b):
        return "same" if a == b else "differ"
    tol = c.mpf(10) ** -EXACT_TOL_DIGITS
    diff = abs(a - b)
    if diff <= tol * max(abs(a), abs(b)):
        return "same"
    return "near" if diff <= tol else "differ"


def _exact_side(node, budget, side: str):
    try:
        return exact(node, budget), None
    except TooLarge as exc:
        return None, (None if side == "gold" else False, f"{side} too large to evaluate: {exc}")
    except EvalError as exc:
        return None, (None if side == "gold" else False, f"{side} undefined: {exc}")


def scalar_eq(g, p, budget: Budget) -> tuple[bool | None, str]:
    ge, err = _exact_side(g, budget, "gold")
    if err:
        return err
    pe, err = _exact_side(p, budget, "prediction")
    if err:
        return err
    if ge is not None and pe is not None:
        v = compare_numbers(Num(ge, has_decimal(g), literal_unit(g)), Num(pe, has_decimal(p), literal_unit(p)))
        return v.equal, v.reason
    gs, extra = free_symbols(g), free_symbols(p) - free_symbols(g)
    if extra:
        if not gs:
            return False, "gold is a number, prediction has variables"
        return False, f"prediction uses variables the gold does not: {', '.join(sorted(extra))}"
    if gs:
        return _symbolic_eq(g, p, sorted(gs), budget)
    return _constant_eq(g, p, ge, pe, budget)


def _tiny_or_huge(g, p, budget: Budget) -> bool:
    return (
        budget.min_log10 < -RISKY_LOG10
        or budget.max_log10 > RISKY_LOG10
        or _max_literal(g) >= BIG_LITERAL
        or _max_literal(p) >= BIG_LITERAL
    )


def _constant_eq(g, p, ge, pe, budget: Budget) -> tuple[bool | None, str]:
    c = ctx()
    try:
        gv = numeric(g, {}, budget)
    except TooLarge as exc:  # an exact gold beyond 1e1000 is readable: only an exact value can equal it
        return (
            (False, "gold is a huge exact number, prediction is not")
            if ge is not None
            else (None, f"gold too large to evaluate: {exc}")
        )
    except EvalError as exc:
        return None, f"gold undefined: {exc}"
    try:
        pv = numeric(p, {}, budget)
    except (TooLarge, EvalError) as exc:
        return False, f"prediction not evaluable: {exc}"
    for approx, other, av, ov in ((p, ge, pv, gv), (g, pe, gv, pv)):
        unit = literal_unit(approx)
        if unit is not None and other is None:  # a bare decimal vs a non-rational value
            ok = approximates(abs(av - ov), c.mpf(unit.numerator) / unit.denominator, abs(ov))
            return ok, "decimal approximation to its stated precision" if ok else "different values"
    agree = _agree(c, gv, pv)
    if agree == "differ":
        return False, "different values"
    tiny = agree == "near" or budget.min_log10 < -RISKY_LOG10
    if tiny or (ge is None) != (pe is None) or _tiny_or_huge(g, p, budget):
        confirmed = pool.confirm_equal(g, p, budget)  # [sympy]; raises SympyTimeout -> verdict None
        if confirmed is not None:
            return confirmed, "sympy confirms" if confirmed else "sympy refutes a numeric match"
        if tiny:
            return False, "equal only through tiny terms (sympy undecided)"
        return True, f"equal to {EXACT_TOL_DIGITS} digits (sympy undecided)"
    return True, f"equal to {EXACT_TOL_DIGITS} digits"


def _at_point(g, p, point, budget: Budget) -> str:
    """'exact' / 'numeric' (equal there), 'skip' (gold undefined there), or a reason they differ."""
    try:
        ge = exact(g, budget, point)
        pe = exact(p, budget, point) if ge is not None else None
    except (TooLarge, EvalError):
        ge = pe = None
    if ge is not None and pe is not None:
        return "exact" if ge == pe else "different at a random point (exact)"
    c, env = ctx(), _mp_env(point)
    try:
        gv = numeric(g, env, budget)
    except TooLarge as exc:
        raise _GoldTooLarge(str(exc)) from exc
    except EvalError:
        return "skip"
    try:
        pv = numeric(p, env, budget)
    except (TooLarge, EvalError) as exc:
        return f"prediction not evaluable where gold is: {exc}"
    agree = _agree(c, gv, pv)
    if agree == "near":
        budget.min_log10 = min(budget.min_log10, -EXACT_TOL_DIGITS)  # near zero: sympy must say
    return "numeric" if agree != "differ" else "different at a random point"


class _GoldTooLarge(TooLarge):
    pass


def _symbolic_eq(g, p, symbols: list[str], budget: Budget) -> tuple[bool | None, str]:
    kinds = set()
    for point in sample_points(g, p, symbols):
        try:
            kind = _at_point(g, p, point, budget)
        except _GoldTooLarge as exc:
            return None, f"gold too large to evaluate: {exc}"
        if kind not in ("exact", "numeric", "skip"):
            return False, kind
        kinds.add(kind)
    kinds.discard("skip")
    if not kinds:
        return None, "gold cannot be evaluated at any sample point"
    if kinds == {"exact"}:
        return True, "equal at random rational points (exact arithmetic)"
    try:
        confirmed = pool.confirm_equal(g, p, budget)  # [sympy], when it finishes within the bound
    except pool.SympyTimeout:
        confirmed = None
    if confirmed is not None:
        return confirmed, "sympy confirms" if confirmed else "sympy refutes a numeric match"
    if _tiny_or_huge(g, p, budget):
        return False, "equal at random points only through tiny or huge terms (sympy undecided)"
    return True, f"equal at random points to {EXACT_TOL_DIGITS} digits (sympy undecided)"


def _max_literal(node) -> int:
    if node[0] == "n":
        return max(abs(node[1].numerator), node[1].denominator)
    return max((_max_literal(k) for k in children(node)), default=0)


def proportional(dg, dp, budget: Budget) -> tuple[bool | None, str]:
    """Is ``dp`` a nonzero constant multiple of ``dg`` (same equation)?"""
    symbols = sorted(free_symbols(dg) | free_symbols(dp))
    if free_symbols(dg) != free_symbols(dp):
        return False, "equations in different variables"
    c = ctx()
    ratio = None
    for point in sample_points(dg, dp, symbols):
        env = _mp_env(point)
        try:
            gv = numeric(dg, env, budget)
        except (TooLarge, EvalError):
            continue
        try:
            pv = numeric(dp, env, budget)
        except (TooLarge, EvalError) as exc:
            return False, f"prediction not evaluable: {exc}"
        if not gv or not pv:
            if _agree(c, gv, pv) != "differ":
                continue
            return False, "different equations"
        r = pv / gv
        if ratio is None:
            ratio = r
        elif _agree(c, ratio, r) == "differ":
            return False, "different equations"
    if ratio is None:
        return None, "gold equation cannot be evaluated"
    return True, "equivalent equations"
