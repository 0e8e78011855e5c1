"""String normalization and the pure-Python numeric fast path.

Contract: every function here is pure Python, never raises on any ``str``
input, and runs in time roughly linear in the input (callers cap lengths).

``normalize(s)`` removes presentation that never changes a value:
math delimiters (``$``, ``\\(``, ``\\[``), ``\\boxed``, ``\\left``/``\\right``,
spacing macros, ``\\displaystyle``, ``\\text{}``-style wrappers (content kept),
currency (``$``, ``\\$``, ``USD``, ``dollars``, ``€``, ``£``), percent signs
(``50\\%`` is the number 50, *not* 0.5), degree marks (``30^\\circ`` is 30),
thousands separators (``1,234,567`` / ``1{,}234`` / ``1\\,234``: only when the
whole token has 3-digit groups, otherwise commas separate list items), and a
trailing unit after a plain number (``72 clips``, ``5\\text{ cm}^2``,
``10\\,\\text{m}``; a bare single letter as in ``10m`` stays a variable).

``parse_number(s)`` reads an already-normalized plain number (integer,
decimal, ``a/b``, ``\\frac{a}{b}``, mixed number ``2\\frac{1}{2}``, scientific
``1.5\\times10^{3}`` / ``1.5e3``) into an exact ``Fraction`` plus a flag
saying whether it was written with a decimal point (an approximation).
"""
from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

__all__ = ["normalize", "parse_number", "Num", "canon_text"]

# Unicode look-alikes folded to ASCII before anything else.
_TRANSLATE = str.maketrans({
    "−": "-", "–": "-", "—": "-", "‐": "-", "﹣": "-", "－": "-",
    "×": "\\times ", "·": "\\cdot ", "÷": "/", "⁄": "/",
    "π": "\\pi ", "√": "\\sqrt ", "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ",
    "≠": "\\ne ", "∪": "\\cup ", "∩": "\\cap ", "°": "^\\circ ",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
    "（": "(", "）": ")", "，": ",", "．": ".",
    "€": "", "£": "", "¥": "",
})

_WRAPPERS = re.compile(
    r"\\(?:text|textrm|textbf|textit|texttt|mathrm|mathbf|mathit|mathsf|mbox|"
    r"operatorname|boldsymbol|bm|hbox)\s*\{([^{}]*)\}"
)
_TEXT_UNIT = re.compile(r"^([-+]?\s*\d+(?:\.\d+)?)\s*\\(?:text|mbox)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}"
                        r"(?:\s*\^\s*\{?[23]\}?)?$")
_SPACING = re.compile(r"(?<!\\)\\(?:[,;:! ]|quad|qquad|displaystyle|textstyle|left|right|big|Big|bigg|Bigg)"
                      r"(?![a-zA-Z])")
_DEGREE = re.compile(r"\bdegrees?\b|\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|\^\s*\{\s*\\text\{o\}\s*\}")
_PERCENT = re.compile(r"\\?%|\bpercent\b")
_CURRENCY = re.compile(r"\\\$|\$|\bUSD\b|\bdollars?\b|\bcents?\b|\\euro|\\pounds", re.I)
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:(?:\{,\}|,)\d{3})+)(?![\d,]|\{,\})")
_MATH_WORD = r"(?:pi|sqrt|inf|infty|infinity|oo|or|and|sin|cos|tan|cot|sec|csc|log|ln|exp|abs)\b"
_NUMBER_THEN_UNIT = re.compile(
    r"^([-+]?\s*(?:\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*\d+)?)\s*"
    rf"(?!{_MATH_WORD})(?:[a-zA-Z]{{2,}}\s*\^\s*\{{?[23]\}}?|[a-zA-Z]{{2,}}\.?)"
    rf"(?:\s+(?!{_MATH_WORD})[a-zA-Z]+\.?)*$"
)
_DELIMS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def _unwrap_delimiters(s: str) -> str:
    for left, right in _DELIMS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def _unwrap_macro(s: str, macro: str) -> str:
    """``\\macro{X}`` -> ``X`` when the macro wraps the whole string."""
    if s.startswith(macro):
        rest = s[len(macro) :].lstrip()
        if rest.startswith("{") and rest.endswith("}") and _balanced_inner(rest):
            return rest[1:-1].strip()
    return s


def _balanced_inner(s: str) -> bool:
    depth = 0
    for i, ch in enumerate(s):
        depth += (ch == "{") - (ch == "}")
        if depth == 0 and i != len(s) - 1:
            return False
    return depth == 0


def normalize(s: str) -> str:
    """Presentation-free form of an answer string (see module docstring)."""
    s = unicodedata.normalize("NFKC", s).translate(_TRANSLATE).strip()
    s = s.rstrip(".").strip()
    s = _unwrap_delimiters(s)
    for macro in ("\\boxed", "\\fbox"):
        s = _unwrap_macro(s, macro)
    s = _SPACING.sub(" ", s)
    s = _TEXT_UNIT.sub(r"\1", s)  # "10\,\text{m}": a \text unit after a number
    for _ in range(4):  # nested \text{\textbf{..}} unwraps a few levels deep
        new = _WRAPPERS.sub(r" \1 ", s)
        if new == s:
            break
        s = new
    s = _DEGREE.sub(" ", s)
    s = _PERCENT.sub(" ", s)
    s = _CURRENCY.sub(" ", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\{,\}|,", "", m.group(2)), s)
    s = " ".join(s.split()).rstrip(".").strip()
    s = _unwrap_delimiters(s)
    m = _NUMBER_THEN_UNIT.match(s)
    if m:
        s = m.group(1).replace(" ", "")
    return s


def canon_text(s: str) -> str:
    """Textual key: no whitespace, no outer braces (case kept: \\Delta != \\delta)."""
    s = s.replace(" ", "")
    s = re.sub(r"^\{(.*)\}$", r"\1", s)
    return s


class Num:
    """An exact rational with a flag: was it written as a decimal?"""

    __slots__ = ("value", "decimal")

    def __init__(self, value: Fraction, decimal: bool):
        self.value, self.decimal = value, decimal

    def __repr__(self) -> str:
        return f"Num({self.value}, decimal={self.decimal})"


_INT = r"\d+"
_DEC = r"(?:\d+\.\d*|\.\d+|\d+)"
_PLAIN = re.compile(rf"^([-+]?)\s*({_DEC})"
                    r"(?:\s*(?:e|E|\\times\s*10\s*\^|\*\s*10\s*\*\*|\\cdot\s*10\s*\^)\s*\{?\s*([-+]?\d{1,3})\s*\}?)?$")
_SLASH = re.compile(rf"^([-+]?)\s*({_INT})\s*/\s*({_INT})$")
_FRAC = re.compile(r"^([-+]?)\s*(\d+)?\s*\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))$")
_MAX_DIGITS = 400  # beyond this, numbers go to the guarded slow path


def parse_number(s: str) -> Num | None:
    """Parse a normalized plain number exactly; None if it is not one."""
    if len(s) > _MAX_DIGITS + 40:
        return None
    m = _PLAIN.match(s)
    if m:
        sign, body, exp = m.groups()
        value = Fraction(body if not body.endswith(".") else body[:-1])
        if exp is not None:
            value *= Fraction(10) ** int(exp)
        return Num(-value if sign == "-" else value, "." in body or (exp is not None and int(exp) < 0))
    m = _SLASH.match(s)
    if m:
        sign, num, den = m.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return Num(-value if sign == "-" else value, False)
    m = _FRAC.match(s)
    if m:
        sign, whole, n1, n2, d1, d2 = m.groups()
        num, den = int(n1 or n2), int(d1 or d2)
        if den == 0:
            return None
        value = Fraction(num, den) + (int(whole) if whole else 0)
        return Num(-value if sign == "-" else value, False)
    return None
