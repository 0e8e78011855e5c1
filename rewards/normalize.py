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

Unicode confusables are folded by meaning *before* NFKC (which would read
``10²`` as ``102`` and ``1½`` as ``11/2``): superscripts become ``^{..}``
(``10²`` is ``10^{2}``), subscripts ``_{..}``, vulgar fractions ``\\frac{a}{b}``
(``1½`` is the mixed number ``1\\frac{1}{2}``), ``º`` a degree mark.  Other
characters whose compatibility form holds a digit but is not one (``①``,
``⒈``, ``⑴``) and letter-numbers (``Ⅻ``, ``ⅰ``) are refused: they are kept
as they are, which the parser rejects, so they are never read as other digits.

``parse_number(s)`` reads an already-normalized plain number (integer,
decimal, ``a/b``, ``\\frac{a}{b}``, mixed number ``2\\frac{1}{2}``, scientific
``1.5\\times10^{3}`` / ``1.5e3``) into an exact ``Fraction`` plus a flag
saying whether it was written with a decimal point (an approximation).
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

__all__ = ["normalize", "parse_number", "Num", "canon_text", "fold_unicode", "decimal_unit"]

# Unicode look-alikes folded to ASCII before anything else.
_TRANSLATE = str.maketrans(
    {
        "−": "-",
        "–": "-",
        "—": "-",
        "‐": "-",
        "﹣": "-",
        "－": "-",
        "×": "\\times ",
        "·": "\\cdot ",
        "÷": "/",
        "⁄": "/",
        "π": "\\pi ",
        "√": "\\sqrt ",
        "∞": "\\infty ",
        "≤": "\\le ",
        "≥": "\\ge ",
        "≠": "\\ne ",
        "∪": "\\cup ",
        "∩": "\\cap ",
        "°": "^\\circ ",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u200b": "",
        "（": "(",
        "）": ")",
        "，": ",",
        "．": ".",
        "€": "",
        "£": "",
        "¥": "",
    }
)

_WRAPPERS = re.compile(
    r"\\(?:text|textrm|textbf|textit|texttt|mathrm|mathbf|mathit|mathsf|mbox|"
    r"operatorname|boldsymbol|bm|hbox)\s*\{([^{}]*)\}"
)
_TEXT_UNIT = re.compile(
    r"^([-+]?\s*\d+(?:\.\d+)?)\s*\\(?:text|mbox)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}"
    r"(?:\s*\^\s*\{?[23]\}?)?$"
)
_SPACING = re.compile(
    r"(?<!\\)\\(?:[,;:! ]|quad|qquad|displaystyle|textstyle|left|right|big|Big|bigg|Bigg)"
    r"(?![a-zA-Z])"
)
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


def _tag(ch: str) -> str:
    dec = unicodedata.decomposition(ch)
    return dec.split(" ", 1)[0] if dec.startswith("<") else ""


def _refused(ch: str) -> bool:
    """A numeral that is not a plain digit (circled, parenthesized, Roman): never guessed."""
    if unicodedata.category(ch) == "Nl":
        return True
    return unicodedata.category(ch) != "Nd" and any(c.isdigit() for c in unicodedata.normalize("NFKC", ch))


def fold_unicode(s: str) -> str:
    """Map super/subscripts and vulgar fractions to what they mean, then NFKC the rest."""
    if s.isascii():
        return s
    out: list[str] = []
    run: list[str] = []  # characters NFKC may fold
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        tag = "" if ch.isascii() else _tag(ch)
        if ch == "º":  # masculine ordinal, used as a degree sign
            run.append("°")
        elif tag in ("<super>", "<sub>"):
            j = i
            while j < n and not s[j].isascii() and _tag(s[j]) == tag and s[j] != "º":
                j += 1
            body = unicodedata.normalize("NFKC", s[i:j])
            run.append(("^{" if tag == "<super>" else "_{") + body + "}")
            i = j
            continue
        elif tag == "<fraction>":
            num, _, den = unicodedata.normalize("NFKC", ch).partition("\u2044")
            run.append(f"\\frac{{{num}}}{{{den}}}" if num and den else ch)
        elif not ch.isascii() and _refused(ch):
            out.append(unicodedata.normalize("NFKC", "".join(run)))
            out.append(ch)  # kept as is: the tokenizer refuses it
            run = []
        else:
            run.append(ch)
        i += 1
    out.append(unicodedata.normalize("NFKC", "".join(run)))
    return "".join(out)


def normalize(s: str) -> str:
    """Presentation-free form of an answer string (see module docstring)."""
    s = fold_unicode(s).translate(_TRANSLATE).strip()
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
    """An exact rational with a flag (was it written as a decimal?) and, for a
    decimal, ``unit``: the place value of its last written digit (``0.50`` -> 1/100)."""

    __slots__ = ("value", "decimal", "unit")

    def __init__(self, value: Fraction, decimal: bool, unit: Fraction | None = None):
        self.value, self.decimal, self.unit = value, bool(decimal), unit

    def __repr__(self) -> str:
        return f"Num({self.value}, decimal={self.decimal}, unit={self.unit})"


def decimal_unit(body: str, exp: int = 0) -> Fraction:
    """Place value of the last written digit of ``body`` (``"3.140"`` -> 1/1000), times 10**exp."""
    decimals = len(body) - body.index(".") - 1 if "." in body else 0
    return Fraction(10) ** (exp - decimals)


_INT = r"\d+"
_DEC = r"(?:\d+\.\d*|\.\d+|\d+)"
_PLAIN = re.compile(
    rf"^([-+]?)\s*({_DEC})"
    r"(?:\s*(?:e|E|\\times\s*10\s*\^|\*\s*10\s*\*\*|\\cdot\s*10\s*\^)\s*\{?\s*([-+]?\d{1,3})\s*\}?)?$"
)
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
        is_dec = "." in body or (exp is not None and int(exp) < 0)
        unit = decimal_unit(body, int(exp) if exp is not None else 0) if is_dec else None
        return Num(-value if sign == "-" else value, is_dec, unit)
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
