"""Sets of real numbers: intervals, unions, solved inequalities.

Contract: ``to_intervals(node)`` and ``relation_intervals(node)`` turn ASTs
into lists of ``(lo, lo_closed, hi, hi_closed)`` (endpoints stay ASTs) or
raise ``Unsolved``; ``compare_intervals(gold, pred, budget)`` compares two
such lists after sorting and merging touching pieces.  A relation counts as
solved only when one side of every comparison is the bare variable and the
other sides are constants (``x > 3``, ``-1 <= x < 2``, ``x != 0``,
``x \\in [0, 1)``, and ``or`` of these).  Pure Python, no sympy.
"""

from __future__ import annotations

from .evaluate import Budget, EvalError, TooLarge, ctx, free_symbols, numeric
from .scalar import scalar_eq

NEG_INF = ("neg", ("c", "oo"))
POS_INF = ("c", "oo")
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


class Unsolved(ValueError):
    pass


def to_intervals(node) -> list[tuple]:
    tag = node[0]
    if tag == "interval":
        return [(node[2], node[1], node[3], node[4])]
    if tag == "pair":
        return [(node[1], False, node[2], False)]
    if tag == "reals":
        return [(NEG_INF, False, POS_INF, False)]
    if tag == "empty":
        return []
    if tag == "union":
        out: list[tuple] = []
        for item in node[1]:
            out.extend(to_intervals(item))
        return out
    if tag == "set" and all(not free_symbols(i) and i[0] not in ("pair", "interval", "set") for i in node[1]):
        return [(i, True, i, True) for i in node[1]]  # finite set of points
    raise Unsolved(f"{tag} is not a set of reals")


def _bound(op: str, b) -> list[tuple]:
    if op == "<":
        return [(NEG_INF, False, b, False)]
    if op == "<=":
        return [(NEG_INF, False, b, True)]
    if op == ">":
        return [(b, False, POS_INF, False)]
    if op == ">=":
        return [(b, True, POS_INF, False)]
    if op == "=":
        return [(b, True, b, True)]
    if op == "!=":
        return [(NEG_INF, False, b, False), (b, False, POS_INF, False)]
    raise Unsolved(f"operator {op}")


def _single(rel) -> tuple[str, list[tuple]]:
    ops, terms = rel[1], rel[2]
    if ops == ("in",):
        if terms[0][0] != "s":
            raise Unsolved("membership of a non-variable")
        return terms[0][1], to_intervals(terms[1])
    if len(terms) == 2:
        for var, other, op in ((terms[0], terms[1], ops[0]), (terms[1], terms[0], _FLIP.get(ops[0]))):
            if var[0] == "s" and not free_symbols(other) and op:
                return var[1], _bound(op, other)
        raise Unsolved("not solved for a variable")
    if len(terms) == 3 and terms[1][0] == "s" and not free_symbols(terms[0]) and not free_symbols(terms[2]):
        lo_op, hi_op = ops
        if lo_op in ("<", "<=") and hi_op in ("<", "<="):
            return terms[1][1], [(terms[0], lo_op == "<=", terms[2], hi_op == "<=")]
        if lo_op in (">", ">=") and hi_op in (">", ">="):
            return terms[1][1], [(terms[2], hi_op == ">=", terms[0], lo_op == ">=")]
    raise Unsolved("not a solved inequality")


def relation_intervals(node) -> tuple[str | None, list[tuple]]:
    rels = node[1] if node[0] == "or" else (node,)
    var, out = None, []
    for rel in rels:
        if rel[0] != "rel":
            raise Unsolved("'or' of non-relations")
        v, iv = _single(rel)
        if var is not None and v != var:
            raise Unsolved("several variables")
        var = v
        out.extend(iv)
    return var, out


# ------------------------------------------------------------------ compare
def _value(node, budget: Budget):
    c = ctx()
    v = numeric(node, {}, budget)
    if c.im(v) != 0:
        raise EvalError("complex endpoint")
    return c.re(v)


def _canonical(ivs, budget: Budget) -> list[list]:
    """Sort by numeric endpoints and merge overlapping/touching pieces."""
    rows = []
    for lo, lc, hi, rc in ivs:
        lv, hv = _value(lo, budget), _value(hi, budget)
        lc = lc and not ctx().isinf(lv)
        rc = rc and not ctx().isinf(hv)
        if lv > hv or (lv == hv and not (lc and rc)):
            continue  # empty piece
        rows.append([lv, lc, hv, rc, lo, hi])
    rows.sort(key=lambda r: (r[0], not r[1]))
    merged: list[list] = []
    for r in rows:
        if merged:
            m = merged[-1]
            if r[0] < m[2] or (r[0] == m[2] and (m[3] or r[1])):
                if r[2] > m[2] or (r[2] == m[2] and r[3]):
                    m[2], m[3], m[5] = r[2], r[3] or (r[2] == m[2] and m[3]), r[5]
                continue
        merged.append(r)
    return merged


def compare_intervals(gold: list[tuple], pred: list[tuple], budget: Budget) -> tuple[bool | None, str]:
    try:
        g = _canonical(gold, budget)
    except (EvalError, TooLarge) as exc:
        return None, f"gold endpoints not evaluable: {exc}"
    try:
        p = _canonical(pred, budget)
    except (EvalError, TooLarge) as exc:
        return False, f"prediction endpoints not evaluable: {exc}"
    if len(g) != len(p):
        return False, f"{len(p)} pieces instead of {len(g)}"
    c = ctx()
    for a, b in zip(g, p, strict=True):  # lengths checked above
        if (a[1], a[3]) != (b[1], b[3]):
            return False, "different open/closed ends"
        for ga, pa, gv in ((a[4], b[4], a[0]), (a[5], b[5], a[2])):
            if c.isinf(gv):
                if not (c.isinf(pa_v := _value(pa, budget)) and pa_v == gv):
                    return False, "different endpoints"
                continue
            eq, reason = scalar_eq(ga, pa, budget)
            if not eq:
                return eq, f"endpoint: {reason}"
    return True, "same set of reals"
