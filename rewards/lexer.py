"""Tokenizer, word tables and size limits of the answer parser.

Contract: ``tokenize(s)`` turns a normalized answer string into a list of
``(kind, text)`` tokens, kind in ``num``/``cmd``/``word``/``op``, or raises
``ParseError`` (``GuardError`` past ``MAX_TOKENS``).  Only whitelisted
characters and LaTeX commands get through; time is linear in the input.
``literal(text)`` turns a ``num`` token into a ``('n', Fraction, unit)``
node (``unit`` is False for an integer, else the place value of the last
written digit: ``0.50`` -> 1/100; truthy, so it still reads as "decimal").
The tables here are shared by the operator grammar (``rewards.parse``)
and the primary expressions (``rewards._primary``), which is why they sit
below both.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import cast

from .errors import GuardError, ParseError
from .normalize import decimal_unit

__all__ = [
    "tokenize",
    "literal",
    "FUNCS",
    "GREEK",
    "WORDS",
    "MATRIX_ENVS",
    "REL",
    "MUL",
    "DIV",
    "MAX_DEPTH",
    "MAX_TOKENS",
    "MAX_NUMBER_DIGITS",
]

MAX_DEPTH = 60
MAX_TOKENS = 1500
MAX_NUMBER_DIGITS = 300

FUNCS = {
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "exp",
    "ln",
    "floor",
    "ceil",
}
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
REL = {
    "=": "=",
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
    "!=": "!=",
    "le": "<=",
    "leq": "<=",
    "leqslant": "<=",
    "ge": ">=",
    "geq": ">=",
    "geqslant": ">=",
    "lt": "<",
    "gt": ">",
    "ne": "!=",
    "neq": "!=",
    "in": "in",
}
MUL = {"*", "cdot", "times", "ast"}
DIV = {"/", "div"}
WORDS = {"pi": ("c", "pi"), "inf": ("c", "oo"), "infty": ("c", "oo"), "infinity": ("c", "oo"), "oo": ("c", "oo")}
MATRIX_ENVS = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"}

_PLAIN_FUNCS = FUNCS | {"log", "sqrt", "abs", "asin", "acos", "atan"}
_ALIASES = {
    "asin": "arcsin",
    "acos": "arccos",
    "atan": "arctan",
    "dfrac": "frac",
    "tfrac": "frac",
    "cfrac": "frac",
    "dbinom": "binom",
    "tbinom": "binom",
    "lg": "log",
}
_IGNORED_CMDS = {
    "left",
    "right",
    "displaystyle",
    "mathrm",
    "text",
    "big",
    "Big",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "limits",
    "nolimits",
}
_KEEP_WORDS = _PLAIN_FUNCS | set(WORDS) | MATRIX_ENVS | {"or", "and", "U"}
_ARRAY_SPEC = re.compile(r"[lcr]+")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|,;!: ])|(?P<word>[a-zA-Z]+)"
    r"|(?P<op><=|>=|!=|\*\*|\\\\|[-+*/^_=<>()\[\]{},;|!&']))"
)


def tokenize(s: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, n = 0, len(s)
    while pos < n:
        m = _TOKEN.match(s, pos)
        if m is None or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        kind = cast(str, m.lastgroup)  # every alternative of _TOKEN is a named group
        text = m.group(kind)
        if kind == "cmd":
            text = text[1:]
            if text in (",", ";", "!", ":", " ") or text in _IGNORED_CMDS:
                continue
            text = _ALIASES.get(text, text)
            if text in ("{", "}", "|"):
                kind, text = "op", "\\" + text
        elif kind == "word" and text not in _KEEP_WORDS:
            # prose ("She sold 72 clips") is not a product of letters
            if len(text) > 2 and not _ARRAY_SPEC.fullmatch(text):
                raise ParseError(f"unknown word {text!r}")
            out.extend(("word", ch) for ch in text)  # "xy" is x*y
            continue
        out.append((kind, text))
        if len(out) > MAX_TOKENS:
            raise GuardError("too many tokens")
    return out


def literal(text: str) -> tuple:
    """A ``num`` token as ``('n', Fraction, is_decimal)``; overlong literals are refused."""
    digits = text.replace(".", "")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise GuardError("number literal too long")
    # a decimal carries the place value of its last written digit (its stated precision)
    return ("n", Fraction(text.rstrip(".") or "0"), decimal_unit(text) if "." in text else False)
