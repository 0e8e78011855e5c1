"""The ``Verdict`` result type and the exact/decimal rule for two numbers.

Contract: ``compare_numbers(gold, pred) -> Verdict`` for two ``Num`` values
(never raises, pure Python):

* Integers, fractions and decimals are compared *exactly* as rationals:
  ``0.5 == 1/2``, ``72 != 72.0000001``, ``0.50 == 0.5``.
* A decimal is accepted as an approximation only of a value that has no finite
  decimal form (``1/3``), and only to the precision it states: it must be
  within one unit of its last written digit of the exact value, and that unit
  must be at most ``10**-(MIN_SIG_DIGITS-1)`` of the value's magnitude (at
  least six significant digits: ``0.333333`` is 1/3, ``0.0`` is not 1/3000000,
  ``333333000000.0`` is not 10^12/3).  The tolerance is relative, never
  absolute near zero.  Two decimals, or a decimal and an exact value with a
  finite decimal form, are compared exactly.

The full rule list (surds, constants, variables, sympy) is in
``rewards.verifier``.  This module sits at the bottom of the verifier's layers
(``verdict`` -> ``scalar``/``intervals`` -> ``equivalence`` -> ``verifier``)
so that every layer can build verdicts and apply ``REL_TOL`` without
importing the public entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .normalize import Num

__all__ = ["Verdict", "REL_TOL", "MIN_SIG_DIGITS", "compare_numbers", "has_finite_decimal", "approximates"]

REL_TOL = Fraction(1, 10**6)  # kept for importers; the rule is MIN_SIG_DIGITS
MIN_SIG_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Verdict:
    equal: bool | None
    reason: str
    method: str = ""

    def __bool__(self) -> bool:
        # Three-valued: "if verify(...)" would silently treat None as True or False.
        raise TypeError("a Verdict has no truth value; test verdict.equal is True/False/None")


def has_finite_decimal(q: Fraction) -> bool:
    den = q.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    return den == 1


def approximates(err, unit, magnitude) -> bool:
    """Is an error ``err`` within the stated precision ``unit`` of a value of size ``magnitude``?

    Works for ``Fraction`` and ``mpmath`` numbers alike (callers pass absolute values)."""
    return err <= unit and unit * 10 ** (MIN_SIG_DIGITS - 1) <= magnitude


def compare_numbers(gold: Num, pred: Num) -> Verdict:
    """Exact rational comparison plus the decimal-approximation rule."""
    if gold.value == pred.value:
        return Verdict(True, "equal numbers", "number")
    if gold.decimal != pred.decimal:
        exact = pred if gold.decimal else gold
        approx = gold if gold.decimal else pred
        if (
            approx.unit is not None
            and not has_finite_decimal(exact.value)
            and approximates(abs(exact.value - approx.value), approx.unit, abs(exact.value))
        ):
            return Verdict(True, "decimal approximation to its stated precision", "number")
    return Verdict(False, "different numbers", "number")
