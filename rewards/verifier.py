"""``verify(gold, prediction) -> Verdict``: the public equivalence check.

Contract
--------
* ``Verdict.equal`` is ``True``, ``False`` or ``None`` (cannot judge).  ``None``
  is returned when the *gold* cannot be read, or when the check ran out of
  time; it is never a reward.  A prediction that cannot be read is ``False``.
* Never raises for ``str`` inputs.  Inputs are capped (``MAX_GOLD_CHARS``,
  ``MAX_PRED_CHARS``); longer golds give ``None``, longer predictions ``False``.
* Verdicts are cached by ``(gold, prediction)`` (timeouts are not cached).

Stages: normalize (pure Python) -> textual match -> exact numbers -> the
structured comparison in ``equivalence`` (own parser; sympy only in the
bounded worker pool).

Numeric tolerance rules
-----------------------
(The first two are ``rewards.verdict.compare_numbers``; the rest live in
``rewards.scalar``.)

* Integers, fractions and decimals are compared *exactly* as rationals:
  ``0.5 == 1/2``, ``72 != 72.0000001``, ``0.50 == 0.5``.
* A decimal is accepted as an approximation only of a value that has no finite
  decimal form (``1/3``, ``\\sqrt2``, ``\\pi``): it must satisfy
  ``|pred - gold| <= 1e-6 * max(1, |gold|)``.  Two decimals, or a decimal and
  an exact value with a finite decimal form, are compared exactly.
* ``50\\%`` is the number 50 (the sign is presentation); it equals ``50``, not
  ``0.5``.
* Exact values that are not rational (surds, ``\\pi``, logs, complex numbers)
  must agree to 25 significant digits, evaluated at 40 digits; expressions with
  variables must agree so at three fixed sample points.  sympy (in the worker
  pool) has the last word when one side is rational and the other is not, or
  when literals/magnitudes are large enough (>= 1e12 / > 1e15) that 25 digits
  could be forged.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from . import equivalence
from .normalize import canon_text, normalize, parse_number
from .verdict import REL_TOL, Verdict, compare_numbers, has_finite_decimal

# Verdict, REL_TOL and compare_numbers live in rewards.verdict (below
# equivalence/scalar, which need them) and are re-exported from here, their old home.
__all__ = ["Verdict", "verify", "VERIFIER_VERSION", "REL_TOL", "clear_cache", "compare_numbers",
           "has_finite_decimal"]

VERIFIER_VERSION = "1.0.0"
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
