"""Equality of two scalar expressions (see ``rewards.equivalence`` for rules).

Contract: ``scalar_eq(gold, pred, budget) -> (equal, reason)``; ``equal`` is
None only when the *gold* cannot be evaluated or sympy confirmation timed out.
Pure Python except the [sympy] confirmation, which goes through the pool.
"""
from __future__ import annotations

from . import pool
from .evaluate import Budget, EvalError, TooLarge, children, ctx, exact, free_symbols, has_decimal, numeric
from .normalize import Num
from .verdict import REL_TOL, compare_numbers

EXACT_TOL_DIGITS = 25
MAX_SYMBOLS = 8
BIG_LITERAL = 10**12
RISKY_LOG10 = 15.0

# Fixed, irregular sample points (real, both signs): deterministic verdicts.
_POINTS = (
    ("0.5772156649015329", "1.3247179572447460", "-0.6931471805599453", "2.2360679774997897",
     "-1.4142135623730950", "0.3183098861837907", "1.6180339887498948", "-2.7182818284590452"),
    ("-1.2020569031595942", "0.7390851332151607", "2.6854520010653064", "-0.5671432904097838",
     "1.4655712318767680", "-0.9159655941772190", "0.2614972128476428", "3.3598856662431776"),
    ("1.9021605831040000", "-0.3678794411714423", "0.8862269254527580", "-1.7320508075688772",
     "2.5029078750958928", "0.6243299885435508", "-0.1234567891011121", "1.0986122886681098"),
)


def _envs(symbols: list[str]):
    c = ctx()
    if not symbols:
        return [{}]
    return [{s: c.mpf(row[i]) for i, s in enumerate(symbols)} for row in _POINTS]


def _close(c, a, b, approx: bool) -> bool:
    if c.isinf(a) or c.isinf(b):
        return a == b
    scale = max(c.mpf(1), abs(a)) if approx else max(c.mpf(1), abs(a), abs(b))
    tol = c.mpf(REL_TOL.numerator) / REL_TOL.denominator if approx else c.mpf(10) ** -EXACT_TOL_DIGITS
    return abs(a - b) <= tol * scale


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
        v = compare_numbers(Num(ge, has_decimal(g)), Num(pe, has_decimal(p)))
        return v.equal, v.reason
    symbols = sorted(free_symbols(g) | free_symbols(p))
    if len(symbols) > MAX_SYMBOLS:
        return None, "too many variables"
    approx = has_decimal(g) or has_decimal(p)
    c = ctx()
    checked = 0
    for env in _envs(symbols):
        try:
            gv = numeric(g, env, budget)
        except TooLarge as exc:
            return None, f"gold too large to evaluate: {exc}"
        except EvalError:
            continue  # gold undefined at this point: try the next one
        try:
            pv = numeric(p, env, budget)
        except (TooLarge, EvalError) as exc:
            return False, f"prediction not evaluable where gold is: {exc}"
        if not _close(c, gv, pv, approx):
            return False, "different values" if not symbols else "different at a sample point"
        checked += 1
    if not checked:
        return None, "gold cannot be evaluated"
    if not approx and _risky(g, p, ge, pe, budget, bool(symbols)):
        confirmed = pool.confirm_equal(g, p, budget)  # [sympy]; raises SympyTimeout -> verdict None
        if confirmed is None:
            return True, "equal to 25 digits (sympy undecided)"
        return confirmed, "sympy confirms" if confirmed else "sympy refutes a numeric match"
    how = "within 1e-6 (decimal)" if approx else f"to {EXACT_TOL_DIGITS} digits"
    return True, ("equal " + how) if not symbols else f"equal at sample points {how}"


def _risky(g, p, ge, pe, budget: Budget, has_symbols: bool) -> bool:
    """Could 25 matching digits be a coincidence or a forged approximation?"""
    if not has_symbols and (ge is None) != (pe is None):
        return True  # rational vs irrational-looking constant: only sympy can tell
    return budget.max_log10 > RISKY_LOG10 or _max_literal(g) >= BIG_LITERAL or _max_literal(p) >= BIG_LITERAL


def _max_literal(node) -> int:
    if node[0] == "n":
        return max(abs(node[1].numerator), node[1].denominator)
    return max((_max_literal(k) for k in children(node)), default=0)


def proportional(dg, dp, budget: Budget) -> tuple[bool | None, str]:
    """Is ``dp`` a nonzero constant multiple of ``dg`` (same equation)?"""
    symbols = sorted(free_symbols(dg) | free_symbols(dp))
    if free_symbols(dg) != free_symbols(dp):
        return False, "equations in different variables"
    if len(symbols) > MAX_SYMBOLS:
        return None, "too many variables"
    c = ctx()
    ratio = None
    for env in _envs(symbols):
        try:
            gv = numeric(dg, env, budget)
        except (TooLarge, EvalError):
            continue
        try:
            pv = numeric(dp, env, budget)
        except (TooLarge, EvalError) as exc:
            return False, f"prediction not evaluable: {exc}"
        if not gv or not pv:
            if _close(c, gv, pv, False):
                continue
            return False, "different equations"
        r = pv / gv
        if ratio is None:
            ratio = r
        elif not _close(c, ratio, r, has_decimal(dg) or has_decimal(dp)):
            return False, "different equations"
    if ratio is None:
        return None, "gold equation cannot be evaluated"
    return True, "equivalent equations"
