"""Guarded evaluation of parser ASTs: exact rationals and 40-digit numerics.

Contract: pure Python (``fractions`` + ``mpmath``), no sympy, no ``eval``.
Every operation is bounded *before* it runs: integer powers are refused when
the result would exceed ``MAX_BITS``, numeric magnitudes beyond
``10**MAX_LOG10`` raise ``TooLarge`` (so ``9^{9^{9^9}}`` and ``10**10**10``
cost microseconds), factorials are capped, trig arguments are capped, and a
cooperative deadline is checked at every node, so a call is bounded in time in
any thread or process without signals.

``exact(node)``   -> ``Fraction`` or ``None`` (not a rational we can compute exactly)
``numeric(node, env, budget)`` -> ``mpmath`` number (``mpf``/``mpc``)
Both raise ``EvalError`` for undefined values (division by zero, unknown
function) and ``TooLarge`` for guarded inputs.
"""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from typing import TYPE_CHECKING, cast

from .errors import GuardError

if TYPE_CHECKING:
    from mpmath.ctx_mp import MPContext

__all__ = [
    "EvalError",
    "TooLarge",
    "Budget",
    "exact",
    "numeric",
    "free_symbols",
    "has_decimal",
    "literal_unit",
    "DPS",
    "MAX_LOG10",
    "ctx",
    "children",
]

DPS = 40
MAX_BITS = 1 << 18  # exact results larger than ~79000 digits are refused (2^65536 is fine)
MAX_LOG10 = 1000.0  # numeric magnitudes up to 1e1000
MAX_FACTORIAL_EXACT = 2000
MAX_TRIG_ARG = 1e6
_LOG2_10 = math.log2(10)


class EvalError(ArithmeticError):
    pass


class TooLarge(GuardError):
    pass


class Budget:
    """A cooperative deadline, checked at every evaluated node."""

    __slots__ = ("deadline", "max_log10", "min_log10")

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        # magnitudes of the largest and the smallest nonzero value seen (literals included):
        # a match that depends on terms beyond 1e15 or below 1e-15 needs sympy's word
        self.max_log10 = 0.0
        self.min_log10 = 0.0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("evaluation over its time budget")


_local = threading.local()


def ctx() -> MPContext:
    """A per-thread mpmath context (the global ``mpmath.mp`` is shared state)."""
    c = getattr(_local, "ctx", None)
    if c is None:
        # Deferred (once per thread): `import rewards` and the pure-Python fast
        # path of verify() must not pay for mpmath's import.
        from mpmath.ctx_mp import MPContext

        c = _local.ctx = MPContext()
        c.dps = DPS
    return c


# ---------------------------------------------------------------- helpers
def free_symbols(node) -> frozenset:
    tag = node[0]
    if tag == "s":
        return frozenset((node[1],))
    if tag in ("n", "c"):
        return frozenset()
    out: frozenset[str] = frozenset()
    for child in children(node):
        out |= free_symbols(child)
    return out


def has_decimal(node) -> bool:
    if node[0] == "n":
        return bool(node[2])
    return any(has_decimal(c) for c in children(node))


def literal_unit(node) -> Fraction | None:
    """Place value of the last digit of a bare decimal (``-0.50``, ``1.5\\times10^{-3}``), else None."""
    tag = node[0]
    if tag == "n":
        return node[2] if isinstance(node[2], Fraction) else None
    if tag == "neg":
        return literal_unit(node[1])
    if tag == "*" and len(node[1]) == 2 and node[1][1][0] == "^" and node[1][1][1][:2] == ("n", Fraction(10)):
        unit, e = literal_unit(node[1][0]), exact(node[1][1][2])
        if unit is not None and e is not None and e.denominator == 1 and abs(e) <= 400:
            return unit * Fraction(10) ** int(e)
    return None


def children(node):
    tag = node[0]
    if tag in ("+", "*", "tuple", "set", "list", "union", "or"):
        return node[1]
    if tag == "rel":
        return node[2]
    if tag == "matrix":
        return tuple(x for row in node[1] for x in row)
    if tag == "interval":
        return (node[2], node[3])
    if tag in ("f",):
        return (node[2],)
    return tuple(x for x in node[1:] if isinstance(x, tuple))


def _iroot(n: int, k: int) -> int | None:
    """Exact integer k-th root of n >= 0, or None."""
    if n < 2:
        return n
    r = int(round(n ** (1.0 / k))) if n.bit_length() < 1000 else None
    if r is None:
        lo, hi = 0, 1 << (n.bit_length() // k + 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid**k <= n:
                lo = mid
            else:
                hi = mid - 1
        r = lo
    for cand in (r - 1, r, r + 1):
        if cand >= 0 and cand**k == n:
            return cand
    return None


def _qroot(q: Fraction, k: int) -> Fraction | None:
    if k < 1 or k > 64:
        return None
    if q < 0:
        if k % 2 == 0:
            return None
        r = _qroot(-q, k)
        return None if r is None else -r
    num, den = _iroot(q.numerator, k), _iroot(q.denominator, k)
    return None if num is None or den is None else Fraction(num, den)


def _bits(q: Fraction) -> int:
    return max(q.numerator.bit_length(), q.denominator.bit_length(), 1)


# ---------------------------------------------------------------- exact
def exact(node, budget: Budget | None = None, env: dict | None = None) -> Fraction | None:
    """Exact rational value of a constant expression (or of one with its symbols
    bound to ``Fraction`` values in ``env``), or None."""
    if budget is not None:
        budget.tick()
    tag = node[0]
    if tag == "n":
        return node[1]
    if tag == "s":
        return env.get(node[1]) if env else None
    if tag == "c":
        return None
    if tag == "neg":
        v = exact(node[1], budget, env)
        return None if v is None else -v
    if tag in ("+", "*"):
        maybe = [exact(c, budget, env) for c in node[1]]
        if any(v is None for v in maybe):
            return None
        vals = cast("list[Fraction]", maybe)
        out = vals[0]
        for v in vals[1:]:
            out = _bounded(out + v if tag == "+" else out * v)
        return out
    if tag == "/":
        a, b = exact(node[1], budget, env), exact(node[2], budget, env)
        if b == 0:
            raise EvalError("division by zero")
        return None if a is None or b is None else _bounded(a / b)
    if tag == "^":
        return _exact_pow(exact(node[1], budget, env), exact(node[2], budget, env))
    if tag == "sqrt":
        v = exact(node[1], budget, env)
        k = exact(node[2], budget, env) if node[2] is not None else Fraction(2)
        if v is None or k is None or k.denominator != 1:
            return None
        return _qroot(v, int(k))
    if tag == "abs":
        v = exact(node[1], budget, env)
        return None if v is None else abs(v)
    if tag == "!":
        return _exact_factorial(exact(node[1], budget, env))
    if tag == "binom":
        n, k = exact(node[1], budget, env), exact(node[2], budget, env)
        if n is None or k is None or n.denominator != 1 or k.denominator != 1 or n < 0:
            return None
        if n > 5000:
            raise TooLarge("binomial too large")
        return Fraction(math.comb(int(n), int(k))) if 0 <= k else Fraction(0)
    if tag == "f" and node[1] in ("floor", "ceil"):
        v = exact(node[2], budget, env)
        if v is None:
            return None
        return Fraction(math.floor(v) if node[1] == "floor" else math.ceil(v))
    return None


def _bounded(q: Fraction) -> Fraction:
    # sums and products of in-bound powers could still grow without limit
    if _bits(q) > MAX_BITS:
        raise TooLarge("exact value too large")
    return q


def _exact_pow(base: Fraction | None, exp: Fraction | None) -> Fraction | None:
    if base is None or exp is None:
        return None
    if exp.denominator != 1:
        root = _qroot(base, exp.denominator) if exp.denominator <= 64 else None
        if root is None:
            return None
        base, exp = root, Fraction(exp.numerator)
    e = int(exp)
    if base == 0:
        if e < 0:
            raise EvalError("zero to a negative power")
        return Fraction(1) if e == 0 else Fraction(0)
    if base in (1, -1):
        return base**e
    if abs(e) * _bits(base) > MAX_BITS:
        raise TooLarge("power too large")
    return base**e


def _exact_factorial(v: Fraction | None) -> Fraction | None:
    if v is None or v.denominator != 1:
        return None
    if v < 0:
        raise EvalError("factorial of a negative integer")
    if v > MAX_FACTORIAL_EXACT:
        raise TooLarge("factorial too large")
    return Fraction(math.factorial(int(v)))


# ---------------------------------------------------------------- numeric
_FUNCS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "exp": "exp",
    "ln": "ln",
    "floor": "floor",
    "ceil": "ceil",
}


def _log10_abs(c, v) -> float:
    if not v:
        return -math.inf
    return float(c.log10(abs(v))) if c.isfinite(v) else math.inf


def _check(c, v, budget: Budget):
    if c.isnan(v):
        raise EvalError("undefined value")
    mag = _log10_abs(c, v)
    if mag > MAX_LOG10 and mag != math.inf:
        raise TooLarge("value too large")
    if mag > budget.max_log10 and mag != math.inf:
        budget.max_log10 = mag
    if mag < budget.min_log10 and mag != -math.inf:
        budget.min_log10 = mag
    return v


def numeric(node, env: dict, budget: Budget):
    """Evaluate at 40 digits; ``env`` maps symbol names to numbers."""
    budget.tick()
    c = ctx()
    tag = node[0]
    if tag == "n":
        return _check(c, c.mpf(node[1].numerator) / node[1].denominator, budget)
    if tag == "s":
        if node[1] not in env:
            raise EvalError(f"free symbol {node[1]}")
        return env[node[1]]
    if tag == "c":
        return {"pi": c.pi, "e": c.e, "i": c.mpc(0, 1), "oo": c.inf}[node[1]]
    if tag == "neg":
        return -numeric(node[1], env, budget)
    if tag == "+":
        return _check(c, c.fsum(numeric(t, env, budget) for t in node[1]), budget)
    if tag == "*":
        out = c.mpf(1)
        for f in node[1]:
            out = _check(c, out * numeric(f, env, budget), budget)
        return out
    if tag == "/":
        a, b = numeric(node[1], env, budget), numeric(node[2], env, budget)
        if not b:
            raise EvalError("division by zero")
        return _check(c, a / b, budget)
    if tag == "^":
        return _power(c, numeric(node[1], env, budget), numeric(node[2], env, budget), budget)
    if tag == "sqrt":
        return _root(c, node, env, budget)
    if tag == "abs":
        return abs(numeric(node[1], env, budget))
    if tag == "!":
        return _factorial(c, numeric(node[1], env, budget), budget)
    if tag == "binom":
        n, k = numeric(node[1], env, budget), numeric(node[2], env, budget)
        return _check(c, _factorial(c, n, budget) / (_factorial(c, k, budget) * _factorial(c, n - k, budget)), budget)
    if tag == "log":
        arg = numeric(node[2], env, budget)
        if not arg:
            raise EvalError("log of zero")
        if node[1] is None:
            return c.ln(arg)
        base = numeric(node[1], env, budget)
        if not base or base == 1:
            raise EvalError("bad log base")
        return c.ln(arg) / c.ln(base)
    if tag == "f":
        return _func(c, node[1], numeric(node[2], env, budget), budget)
    raise EvalError(f"cannot evaluate {tag!r}")


def _power(c, base, exp, budget: Budget):
    if not base:
        if c.re(exp) > 0:
            return c.mpf(0)
        raise EvalError("zero to a non-positive power")
    if c.isinf(base) or c.isinf(exp):
        return _check(c, c.power(base, exp), budget)
    # magnitude of base**exp is exp(Re(exp*log(base))): refuse before computing
    log_mag = c.re(exp * c.ln(base))
    if abs(log_mag) > MAX_LOG10 * 2.303 or abs(c.im(exp * c.ln(base))) > MAX_TRIG_ARG:
        raise TooLarge("power too large")
    if c.im(base) == 0 and c.im(exp) == 0 and base < 0 and c.isint(exp):
        return _check(c, c.power(base, int(exp)), budget)
    return _check(c, c.power(base, exp), budget)


def _root(c, node, env, budget):
    v = numeric(node[1], env, budget)
    if node[2] is None:
        return _check(c, c.sqrt(v), budget)
    k = numeric(node[2], env, budget)
    if not k:
        raise EvalError("zeroth root")
    if c.im(v) == 0 and v < 0 and c.isint(k) and int(k) % 2 == 1:
        return -c.root(-v, int(k))  # real odd root, as \\sqrt[3]{-8} = -2 is meant
    return _power(c, v, 1 / k, budget)


def _factorial(c, v, budget):
    if c.im(v) != 0:
        raise EvalError("factorial of a complex number")
    if c.isint(v) and v < 0:
        raise EvalError("factorial of a negative integer")
    if v > 1e5 or c.loggamma(v + 1) > MAX_LOG10 * 2.303:
        raise TooLarge("factorial too large")
    return _check(c, c.gamma(v + 1), budget)


def _func(c, name: str, x, budget):
    if name not in _FUNCS:
        raise EvalError(f"unknown function {name}")
    if name in ("sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh", "exp"):
        if abs(x) > MAX_TRIG_ARG:
            raise TooLarge("function argument too large")
    if name == "ln" and not x:
        raise EvalError("log of zero")
    try:
        return _check(c, getattr(c, _FUNCS[name])(x), budget)
    except ZeroDivisionError as exc:
        raise EvalError(str(exc)) from exc
