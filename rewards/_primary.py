"""Primary expressions for ``rewards.parse`` (numbers, symbols, commands,
brackets, intervals, sets, matrices).

Contract: same as ``parse``: builds tuple ASTs, raises ``ParseError``,
evaluates nothing.  Every function takes the parser object ``p`` (a
``rewards.parse._Parser``) and recurses into the operator grammar only through
its methods (``p.expr()``, ``p.seq()``, ``p.group()``, ...), so this module
depends on the lexer's tables, never on ``rewards.parse`` itself.
"""

from __future__ import annotations

from .errors import GuardError, ParseError
from .lexer import FUNCS, GREEK, MATRIX_ENVS, WORDS, literal

_SINGLE = {"e": ("c", "e"), "i": ("c", "i")}
_CLOSE_CMD = {"langle": "rangle", "lfloor": "rfloor", "lceil": "rceil", "lvert": "rvert", "vert": "vert"}


def primary(p):
    kind, text = p.peek()
    if kind == "num":
        return _number(p)
    if kind == "word":
        return _word(p)
    if kind == "cmd":
        return _command(p)
    if kind == "op":
        if text in ("(", "["):
            return _bracket(p)
        if text == "{":
            return _brace(p)
        if text == "\\{":
            p.take()
            if p.at("\\}"):
                p.take()
                return ("empty",)
            items = _items(p.seq(("\\}",)))
            p.expect("\\}")
            return ("set", items)
        if text in ("|", "\\|"):
            p.take()
            node = p.expr()
            p.expect(text)
            return ("abs", node)
    raise ParseError(f"unexpected {text or 'end of input'!r}")


def _items(node) -> tuple:
    return node[1] if node[0] == "list" else (node,)


def _number(p):
    _, text = p.take()
    node = literal(text)
    # "2\frac{1}{2}" is the mixed number 2 1/2 (integer glued to a numeric \frac)
    if p.peek() == ("cmd", "frac") and "." not in text:
        save = p.i
        p.take()
        num, den = _arg(p), _arg(p)
        if num[0] == "n" and den[0] == "n" and not num[2] and not den[2] and den[1] != 0:
            return ("n", node[1] + num[1] / den[1], False)
        p.i = save
    return node


def _split_num(p):
    """``\\frac12``: an unbraced argument is a single digit."""
    kind, text = p.take()
    if len(text) > 1:
        p.toks[p.i - 1 : p.i] = [("num", text[0]), ("num", text[1:])]
    return literal(text[0])


def _arg(p):
    """One macro argument: {group}, a single digit, a letter or a command."""
    kind, text = p.peek()
    if kind == "op" and text == "{":
        return p.group()
    if kind == "num":
        return _split_num(p)
    if kind == "word" and len(text) == 1:
        p.take()
        return _SINGLE.get(text, ("s", text))
    if kind == "cmd":
        return primary(p)
    raise ParseError(f"bad macro argument {text!r}")


def _subscript(p, name: str) -> str:
    if not p.at("_"):
        return name
    p.take()
    kind, text = p.peek()
    if kind == "op" and text == "{":
        sub = p.group()
        return f"{name}_{_flat(sub)}"
    p.take()
    return f"{name}_{text}"


def _flat(node) -> str:
    if node[0] == "n":
        return str(node[1])
    if node[0] in ("s", "c"):
        return node[1]
    return repr(node)


def _word(p):
    _, text = p.take()
    if text in WORDS:
        return WORDS[text]
    if text in ("sqrt", "abs"):
        arg = _func_arg(p)
        return ("sqrt", arg, None) if text == "sqrt" else ("abs", arg)
    if text == "log":
        return ("log", None, _func_arg(p))
    if text in FUNCS or text in ("asin", "acos", "atan"):
        name = {"asin": "arcsin", "acos": "arccos", "atan": "arctan"}.get(text, text)
        return ("f", name, _func_arg(p))
    if len(text) != 1:
        raise ParseError(f"unknown word {text!r}")
    name = _subscript(p, text)
    return _SINGLE.get(name, ("s", name))


def _func_arg(p):
    """Argument of sin/log/...: (..), {..}, or an implicit product like ``2x``."""
    if p.at("("):
        p.take()
        node = p.seq((")",))
        p.expect(")")
        return node
    if p.at("{"):
        return p.group()
    node = p.power()
    factors = [node]
    while p.peek()[0] in ("num", "word") and len(p.peek()[1]) == 1 or p.peek()[0] == "num":
        factors.append(p.power())
    return node if len(factors) == 1 else ("*", tuple(factors))


def _command(p):
    _, name = p.take()
    if name == "frac":
        return ("/", _arg(p), _arg(p))
    if name == "binom":
        return ("binom", _arg(p), _arg(p))
    if name == "sqrt":
        index = None
        if p.at("["):
            p.take()
            index = p.expr()
            p.expect("]")
        return ("sqrt", _arg(p), index)
    if name in ("pi", "infty", "infin"):
        return ("c", "pi") if name == "pi" else ("c", "oo")
    if name in ("imath", "jmath"):
        return ("c", "i")
    if name in GREEK:
        return ("s", _subscript(p, name))
    if name in FUNCS or name == "log":
        return _function(p, name)
    if name == "mathbb":
        inner = _arg(p)
        if inner == ("s", "R"):
            return ("reals",)
        raise ParseError("unsupported \\mathbb")
    if name in ("emptyset", "varnothing"):
        return ("empty",)
    if name == "lbrace":
        items = _items(p.seq(("rbrace",)))
        p.expect("rbrace")
        return ("set", items)
    if name in _CLOSE_CMD:
        node = p.seq((_CLOSE_CMD[name],))
        p.expect(_CLOSE_CMD[name])
        if name == "langle":
            return ("tuple", _items(node))
        return ("f", name[1:], node) if name in ("lfloor", "lceil") else ("abs", node)
    if name == "begin":
        return _matrix(p)
    raise ParseError(f"unsupported command \\{name}")


def _function(p, name: str):
    base = power = None
    if name == "log" and p.at("_"):
        p.take()
        base = _arg(p)
    if p.at("^"):  # \sin^2 x == (\sin x)^2
        p.take()
        power = p.exponent()
    arg = _func_arg(p)
    node = ("log", base, arg) if name == "log" else ("f", name, arg)
    return node if power is None else ("^", node, power)


def _bracket(p):
    _, opener = p.take()
    p.enter()
    items = _items(p.seq((")", "]")))
    kind, closer = p.take()
    p.depth -= 1
    if kind != "op" or closer not in (")", "]"):
        raise ParseError("unclosed bracket")
    if len(items) == 1:
        if opener + closer in ("()", "[]"):
            return items[0]
        raise ParseError("mismatched brackets")
    if len(items) == 2:
        if opener + closer == "()":
            return ("pair", items[0], items[1])
        return ("interval", opener == "[", items[0], items[1], closer == "]")
    if opener + closer not in ("()", "[]"):
        raise ParseError("mismatched brackets")
    return ("tuple", items)


def _brace(p):
    """Plain braces group; with commas inside they are a set (``{1, 2}``)."""
    node = p.group()
    return ("set", node[1]) if node[0] == "list" else node


def _matrix(p):
    p.expect("{")
    env = ""
    while p.peek()[0] == "word":
        env += p.take()[1]
    p.expect("}")
    if env not in MATRIX_ENVS:
        raise ParseError(f"unsupported environment {env!r}")
    if env == "array" and p.at("{"):
        while not p.at("}"):
            if p.take()[0] == "eof":
                raise ParseError("unclosed array spec")
        p.take()
    rows, row = [], [p.expr()]
    while True:
        if p.at("&"):
            p.take()
            row.append(p.expr())
        elif p.at("\\\\"):
            p.take()
            rows.append(tuple(row))
            if p.at("end"):
                row = []
                break
            row = [p.expr()]
        elif p.at("end"):
            break
        else:
            raise ParseError("bad matrix")
    if row:
        rows.append(tuple(row))
    p.take()
    p.expect("{")
    while p.peek()[0] == "word":
        p.take()
    p.expect("}")
    if len({len(r) for r in rows}) != 1 or len(rows) * len(rows[0]) > 400:
        raise GuardError("ragged or oversized matrix") if rows else ParseError("empty matrix")
    return ("matrix", tuple(rows))
