"""``verify(gold, prediction) -> Verdict``: the public equivalence check.

Contract
--------
* ``Verdict.equal`` is ``True``, ``False`` or ``None`` (cannot judge).  ``None``
  is returned only when the *gold* cannot be read (malformed, undefined, or
  over the parser's/evaluator's safety limits: ``rewards.lexer`` token and
  digit caps, ``rewards.evaluate.MAX_BITS`` for exact values, ``MAX_GOLD_CHARS``),
  or when the check ran out of time; it is never a reward.  A prediction that
  cannot be read (or is over a limit) is ``False``.  The number of variables is
  not a limit.
* Never raises for ``str`` inputs.  Inputs are capped (``MAX_GOLD_CHARS``,
  ``MAX_PRED_CHARS``); longer golds give ``None``, longer predictions ``False``.
* Verdicts are cached by ``(gold, prediction)`` (timeouts are not cached).

Stages: normalize (pure Python) -> textual match -> exact numbers -> the
structured comparison in ``equivalence`` (own parser; sympy only in the
bounded worker pool).

Rules a policy cannot game (each has rows in ``tests/test_verify_table.py``)
---------------------------------------------------------------------------
1. Unicode confusables mean what they mean or are refused, never other digits
   (``rewards.normalize``): ``10²`` is ``10^{2}`` = 100 (not 102), ``x₁`` is
   ``x_{1}``, ``1½`` is 3/2 (not 11/2), ``º`` is a degree mark; circled,
   parenthesized and Roman numerals (``①``, ``⑴``, ``Ⅻ``) are unreadable.
2. Exact numbers are compared exactly as rationals: ``0.5 == 1/2``,
   ``72 != 72.0000001``, ``0.50 == 0.5``; ``50\\%`` is the number 50.
3. Tolerance exists only where one side is not an exact rational (``1/3``,
   ``\\sqrt2``, ``\\pi``), the other is a bare decimal, and only to the
   precision that decimal states: within one unit of its last digit, with at
   least ``MIN_SIG_DIGITS`` (6) significant digits, so the tolerance is relative
   and never absolute near zero (``0.0`` is not 1/3000000; ``333333000000.0``
   is not 10^12/3; ``0.333333`` is 1/3).  Decimals inside larger expressions are
   exact rationals (``0.5x == x/2``, ``0.333333x != x/3``).
4. A prediction using a variable the gold does not use is not equal; a
   numeric gold never equals an expression with free variables (``5`` vs
   ``5 + 0.0000001x``, ``1`` vs ``\\sin^2 x + \\cos^2 x``).
5. Symbolic equivalence is never decided by a fixed point set: expressions
   are compared at random rational points drawn per call (a generator seeded
   by a hash of both parsed answers: reproducible, not targetable), exactly
   where both sides are rational functions (Schwartz-Zippel), else to 25
   digits at 40-digit precision, and then by exact sympy where it finishes
   within the bound (its answer wins).  An expression that only agrees at some
   points is not equal.
6. Non-rational constants agree to 25 significant digits relative to their
   size; sympy decides a rational against an irrational-looking value, a
   near-zero match, and matches that depend on terms beyond ``1e15``/below
   ``1e-15`` or literals ``>= 1e12``; when it cannot tell, a match through tiny
   terms is not equal (``\\sqrt2`` vs ``\\sqrt2 + e^{-100}``).
7. Exact values up to ``MAX_BITS`` bits are computed (``2^{65536}`` is judged);
   beyond that the gold is over the safety limit (``None``), the prediction
   ``False``.

Details of sets, tuples, intervals and equations: ``rewards.equivalence``;
of the scalar comparison: ``rewards.scalar``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from . import equivalence
from .normalize import canon_text, normalize, parse_number
from .verdict import REL_TOL, Verdict, compare_numbers, has_finite_decimal

# Verdict, REL_TOL and compare_numbers live in rewards.verdict (below
# equivalence/scalar, which need them) and are re-exported from here, their old home.
__all__ = ["Verdict", "verify", "VERIFIER_VERSION", "REL_TOL", "clear_cache", "compare_numbers", "has_finite_decimal"]

# 2: unicode confusables, random points, stated-precision tolerance; 2.1: unevaluated arithmetic is wrong
VERIFIER_VERSION = "2.1.0"
MAX_GOLD_CHARS = 2000
MAX_PRED_CHARS = 2000
DEFAULT_TIMEOUT_S = 2.0


class _Cache:
    """Small thread-safe LRU keyed by (gold, prediction)."""

    def __init__(self, size: int = 65536):
        self._data: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_CACHE = _Cache()


def clear_cache() -> None:
    _CACHE.clear()


def _verify_uncached(gold: str, pred: str, timeout_s: float) -> Verdict:
    if len(gold) > MAX_GOLD_CHARS:
        return Verdict(None, "gold too long", "guard")
    if len(pred) > MAX_PRED_CHARS:
        return Verdict(False, "prediction too long", "guard")
    g, p = normalize(gold), normalize(pred)
    if not g:
        return Verdict(None, "empty gold", "guard")
    if not p:  # still "cannot judge" when the gold itself is unreadable
        problem = equivalence.gold_problem(g)
        return problem if problem is not None else Verdict(False, "empty prediction", "unreadable")
    if canon_text(g) == canon_text(p):
        return Verdict(True, "same normalized text", "string")
    gn, pn = parse_number(g), parse_number(p)
    if gn is not None and pn is not None:
        return compare_numbers(gn, pn)
    return equivalence.compare(g, p, gn, pn, timeout_s)


def verify(gold: str, prediction: str, *, timeout_s: float | None = None) -> Verdict:
    """Is ``prediction`` mathematically the same answer as ``gold``?"""
    if not isinstance(gold, str):
        gold = "" if gold is None else str(gold)
    if not isinstance(prediction, str):
        prediction = "" if prediction is None else str(prediction)
    key = (gold, prediction)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    try:
        verdict = _verify_uncached(gold, prediction, timeout_s or DEFAULT_TIMEOUT_S)
    except RecursionError:
        verdict = Verdict(None, "input too deeply nested", "guard")
    if verdict.reason != "timeout":
        _CACHE.put(key, verdict)
    return verdict
