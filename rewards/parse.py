"""A small LaTeX / plain-text math parser producing immutable tuple ASTs.

Contract: ``parse(s)`` returns an AST or raises ``ParseError`` (including
``GuardError`` for inputs over the size/depth limits).  Nothing is evaluated
here and nothing is handed to ``eval``/``sympify``: the tokenizer
(``rewards.lexer``) accepts a whitelist of characters and LaTeX commands and
everything else is an error.
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

Layers (each imports only those before it): ``errors`` -> ``lexer`` (tokens,
tables, limits) -> ``_primary`` (numbers, names, commands, brackets, sets,
matrices) -> this module (operators, relations, the cached entry point).
``_primary`` calls back into the grammar only through the parser object it is
given, so it never imports this module.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from ._primary import primary as _primary
from .errors import GuardError, ParseError
from .lexer import DIV, FUNCS, MAX_DEPTH, MAX_NUMBER_DIGITS, MAX_TOKENS, MUL, REL, tokenize

# FUNCS, tokenize and the limits are re-exported: they were defined here before the split.
__all__ = ["parse", "ParseError", "GuardError", "MAX_DEPTH", "MAX_TOKENS", "MAX_NUMBER_DIGITS", "FUNCS", "tokenize"]


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
        while self.peek()[0] in ("op", "cmd") and self.peek()[1] in REL:
            ops.append(REL[self.take()[1]])
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
            if kind != "num" and text in MUL:
                self.take()
                factors.append(self.unary())
            elif kind != "num" and text in DIV:
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
            return (
                text not in REL
                and text not in MUL
                and text not in DIV
                and text not in ("pm", "mp", "cup", "end", "rangle", "rbrace", "rfloor", "rceil", "rvert")
            )
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
        return _primary(self)  # numbers, names, commands, brackets: rewards._primary


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
