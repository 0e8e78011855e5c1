"""A small LaTeX / plain-text math parser producing immutable tuple ASTs.

Contract: ``parse(s)`` returns an AST or raises ``ParseError`` (including
``GuardError`` for inputs over the size/depth limits).  Nothing is evaluated
here and nothing is handed to ``eval``/``sympify``: the tokenizer accepts a
whitelist of characters and LaTeX commands and everything else is an error.
Time is linear in the input; nesting deeper than ``MAX_DEPTH`` is refused
before Python's recursion limit could be reached.

Node shapes (first element is the tag)::

    ('n', Fraction, is_decimal)   ('s', name)   ('c', 'pi'|'e'|'i'|'oo')
    ('+', terms)  ('*', factors)  ('neg', a)  ('/', a, b)  ('^', a, b)
    ('sqrt', a, index|None)  ('f', name, arg)  ('log', base|None, arg)
    ('!', a)  ('abs', a)  ('binom', n, k)  ('pm', a, b)       # a ± b
    ('pair', a, b)          # "(a, b)": ordered pair or open interval
    ('interval', left_closed, a, b, right_closed)
    ('tuple', items)  ('set', items)  ('list', items)  ('matrix', rows)
    ('union', items)  ('or', items)  ('rel', ops, terms)  ('reals',)  ('empty',)
"""
from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

__all__ = ["parse", "ParseError", "GuardError", "MAX_DEPTH", "MAX_TOKENS"]

MAX_DEPTH = 60
MAX_TOKENS = 1500
MAX_NUMBER_DIGITS = 300


class ParseError(ValueError):
    pass


class GuardError(ParseError):
    """Input is over a safety limit (too long, too deep, too large)."""


FUNCS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
    "sinh", "cosh", "tanh", "exp", "ln", "floor", "ceil",
}
_PLAIN_FUNCS = FUNCS | {"log", "sqrt", "abs", "asin", "acos", "atan"}
_ALIASES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "dfrac": "frac", "tfrac": "frac",
            "cfrac": "frac", "dbinom": "binom", "tbinom": "binom", "lg": "log"}
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
    "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}
_REL = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "le": "<=", "leq": "<=",
        "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=", "lt": "<", "gt": ">",
        "ne": "!=", "neq": "!=", "in": "in"}
_MUL = {"*", "cdot", "times", "ast"}
_DIV = {"/", "div"}
_IGNORED_CMDS = {"left", "right", "displaystyle", "mathrm", "text", "big", "Big", "bigl", "bigr",
                 "Bigl", "Bigr", "limits", "nolimits"}
_WORDS = {"pi": ("c", "pi"), "inf": ("c", "oo"), "infty": ("c", "oo"), "infinity": ("c", "oo"),
          "oo": ("c", "oo")}
_OPEN = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "langle": "rangle", "lbrace": "rbrace"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"}

_KEEP_WORDS = _PLAIN_FUNCS | set(_WORDS) | _MATRIX_ENVS | {"or", "and", "U"}
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
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "cmd":
            text = text[1:]
            if text in (",", ";", "!", ":", " ") or text in _IGNORED_CMDS:
                continue
            text = _ALIASES.get(text, text)
            if text in ("{", "}", "|"):
                kind, text = "op", "\\" + text
        elif kind == "word" and text not in _KEEP_WORDS:
            if len(text) > 2 and not _ARRAY_SPEC.fullmatch(text):  # prose ("She sold 72 clips") is not a product of letters
                raise ParseError(f"unknown word {text!r}")
            out.extend(("word", ch) for ch in text)  # "xy" is x*y
            continue
        out.append((kind, text))
        if len(out) > MAX_TOKENS:
            raise GuardError("too many tokens")
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------
    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        kind, text = self.peek()
        return kind != "eof" and text in texts and kind != "num"

    def expect(self, text: str) -> None:
        kind, got = self.take()
        if got != text or kind == "num":
            raise ParseError(f"expected {text!r}, got {got!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GuardError("nesting too deep")

    # -- grammar ---------------------------------------------------------
    def top(self):
        node = self.seq(("eof",))
        if self.peek()[0] != "eof":
            raise ParseError(f"trailing input at {self.peek()[1]!r}")
        return node

    def seq(self, closers):
        items = [self.union()]
        while self.at(",", ";"):
            self.take()
            items.append(self.union())
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def union(self):
        items = [self.relation()]
        kind = None
        while self.at("cup", "U", "or", "and"):
            word = self.take()[1]
            this = "union" if word in ("cup", "U") else ("or" if word == "or" else "and")
            if kind is not None and this != kind:
                raise ParseError("mixed connectives")
            kind = this
            items.append(self.relation())
        if kind is None:
            return items[0]
        if kind == "and":
            raise ParseError("'and' connective not supported")
        return (kind, tuple(items))

    def relation(self):
        terms = [self.expr()]
        ops = []
        while self.peek()[0] in ("op", "cmd") and self.peek()[1] in _REL:
            ops.append(_REL[self.take()[1]])
            terms.append(self.expr())
        if not ops:
            return terms[0]
        return ("rel", tuple(ops), tuple(terms))

    def expr(self):
        self.enter()
        pm = None
        if self.at("pm", "mp"):  # "\pm 2" is the pair {2, -2}
            self.take()
            terms, pm = [("n", Fraction(0), False)], self.term()
        else:
            terms = [self.term()]
        while self.at("+", "-", "pm", "mp"):
            op = self.take()[1]
            t = self.term()
            if op in ("pm", "mp"):
                if pm is not None:
                    raise ParseError("several \\pm")
                pm = t
                continue
            terms.append(("neg", t) if op == "-" else t)
        self.depth -= 1
        base = terms[0] if len(terms) == 1 else ("+", tuple(terms))
        return base if pm is None else ("pm", base, pm)

    def term(self):
        factors = [self.unary()]
        while True:
            kind, text = self.peek()
            if kind != "num" and text in _MUL:
                self.take()
                factors.append(self.unary())
            elif kind != "num" and text in _DIV:
                self.take()
                den = self.unary()
                factors.append(("/", factors.pop(), den))
            elif self.starts_factor():
                factors.append(self.power())
            else:
                break
        return factors[0] if len(factors) == 1 else ("*", tuple(factors))

    def starts_factor(self) -> bool:
        kind, text = self.peek()
        if kind in ("num", "word") and text not in ("or", "and", "U"):
            return True
        if kind == "cmd":
            return text not in _REL and text not in _MUL and text not in _DIV and text not in (
                "pm", "mp", "cup", "end", "rangle", "rbrace", "rfloor", "rceil", "rvert")
        return kind == "op" and text in ("(", "\\{", "[") and text != "["

    def unary(self):
        signs = 0
        while self.at("-", "+"):  # iterative: "- - - ... 1" must not recurse
            signs += self.take()[1] == "-"
        node = self.power()
        return ("neg", node) if signs % 2 else node

    def power(self):
        self.enter()
        base = self.postfix()
        if self.at("^", "**"):
            self.take()
            exp = self.exponent()
            base = ("^", base, exp)
        self.depth -= 1
        return base

    def exponent(self):
        if self.at("{"):
            return self.group()
        if self.at("-"):
            self.take()
            return ("neg", self.power())
        return self.power()

    def postfix(self):
        node = self.primary()
        while self.at("!"):
            self.take()
            node = ("!", node)
        return node

    def group(self):
        self.expect("{")
        node = self.seq(("}",))
        self.expect("}")
        return node

    def primary(self):
        from ._primary import primary  # split for file size; see _primary.py

        return primary(self)


def _literal(text: str) -> tuple:
    digits = text.replace(".", "")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise GuardError("number literal too long")
    return ("n", Fraction(text.rstrip(".") or "0"), "." in text)


@lru_cache(maxsize=16384)
def _parse_cached(s: str):
    try:
        return _Parser(tokenize(s)).top(), None
    except ParseError as exc:
        return None, exc
    except RecursionError:
        return None, GuardError("nesting too deep")


def parse(s: str):
    """Parse a normalized answer string into an AST (cached; ASTs are immutable)."""
    if len(s) > 4 * MAX_TOKENS:
        raise GuardError("input too long")
    node, err = _parse_cached(s)
    if err is not None:
        raise err
    return node
