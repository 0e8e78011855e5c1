"""Procedural code-reasoning tasks: small deterministic Python functions from templates.

`programs(n, seed, levels=...)` draws `n` distinct functions `def f(x): ...` (list, string and
integer transforms with random constants), each with MIN_INPUTS..MAX_INPUTS random inputs. Level 1
is one step on small values (`x * 3 + 2`, `len(x) + 4`); level 2 the multi-step templates (loops,
filters, slices). A source's `levels` picks from them; a level-2-only draw is the same as before
levels existed.
`tasks_for(program, inputs, outputs, kinds)` turns one program into Problems of the three
kinds (deduction, abduction, induction; see rewards.codetask for how each is checked): the
question shows the program (or, for induction, some input/output pairs) and says where the
answer goes; the gold answer is `rewards.codetask.spec(...)`. `code_tasks(count, kinds, seed)`
is the `kind: code` source and the held-out code set (a disjoint seed).

The seed programs are this module's own templates, so their outputs are computed here by
running them (`outputs_of`); model-written programs only ever run in loop.sandbox
(loop.proposer.programs). Everything is deterministic in the seed; a program whose text is in
`exclude` (the held-out set's programs, `meta.expression`) is never drawn.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from functools import partial
from typing import Any

from loop.problems import Problem, ProposeError
from rewards.codetask import spec

KINDS = ("deduction", "abduction", "induction")
MIN_INPUTS, MAX_INPUTS = 4, 5
MIN_DISTINCT = 3  # distinct outputs a procedural program needs: `return 0` must not pass induction
SHOWN = 3  # induction: pairs shown; the rest are held back for checking
LETTERS = "abcdefgh"

_LIST = [  # bodies over a list of ints `x`; {a} {b} {k} are small constants
    "return [v * {a} + {b} for v in x]",
    "return [v for v in x if v % {a} == {r}]",
    "return sorted(x, reverse=True)[:{k}]",
    "total = 0\n    out = []\n    for v in x:\n        total += v\n        out.append(total)\n    return out",
    "return x[{k}:] + x[:{k}]",
    "return sum(v for v in x if v > {b})",
    "return max(x) - min(x) + {a}",
    "return [x[i] + x[i + 1] for i in range(len(x) - 1)]",
    "return len([v for v in x if v % 2 == {p}]) * {a}",
]
_STR = [  # bodies over a lowercase string `x`
    'return x[::-1] + "{c}"',
    "return x.upper()[:{k}]",
    'return x.replace("{c}", "{d}")',
    'return "".join(chr((ord(ch) - 97 + {a}) % 26 + 97) for ch in x)',
    "return x[::2]",
    'return x.count("{c}") * {a}',
    'return "{c}".join(sorted(x))',
]
_INT = [  # bodies over an int `x`
    "return x * {a} + {b}",
    "return (x + {a}) * (x - {b})",
    "return sum(range(x % {a} + {b}))",
    "return x // {a} + x % {a}",
    "return sum(int(d) for d in str(x * {a}))",
    "n = x + {a}\n    steps = 0\n    while n != 1 and steps < 50:\n"
    "        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps",
]


_LIST1 = [  # level 1: one step over a short list of small ints
    "return len(x) + {b}",
    "return x[0] + {b}",
    "return [v + {b} for v in x]",
    "return sum(x)",
    "return max(x) * {a}",
]
_STR1 = [  # level 1: one step over a short string
    'return x + "{c}"',
    "return len(x) * {a}",
    "return x[::-1]",
    "return x[0] * {a}",
]
_INT1 = [  # level 1: one arithmetic step or two on a small int
    "return x + {b}",
    "return x * {a}",
    "return x - {b}",
    "return x * {a} + {b}",
    "return {b} * 10 - x",
]


def _list_input(r: random.Random, top: int = 20, lengths: tuple[int, int] = (3, 6)) -> list[int]:
    return [r.randint(0, top) for _ in range(r.randint(*lengths))]


def _str_input(r: random.Random, lengths: tuple[int, int] = (3, 7)) -> str:
    return "".join(r.choice(LETTERS) for _ in range(r.randint(*lengths)))


def _int_input(r: random.Random, top: int = 50) -> int:
    return r.randint(0, top)


Family = dict[str, tuple[list[str], Callable[[random.Random], Any]]]
FAMILIES: Family = {  # level 2
    "list": (_LIST, _list_input),
    "str": (_STR, _str_input),
    "int": (_INT, _int_input),
}
LEVELS: dict[int, Family] = {
    1: {  # shorter, smaller inputs
        "list": (_LIST1, partial(_list_input, top=9, lengths=(2, 6))),
        "str": (_STR1, partial(_str_input, lengths=(2, 6))),
        "int": (_INT1, partial(_int_input, top=20)),
    },
    2: FAMILIES,
}


def _constants(r: random.Random) -> dict[str, Any]:
    a = r.randint(2, 5)
    return {
        "a": a,
        "b": r.randint(1, 9),
        "r": r.randint(0, a - 1),
        "k": r.randint(1, 3),
        "p": r.randint(0, 1),
        "c": r.choice(LETTERS),
        "d": r.choice(string.ascii_lowercase),
    }


def outputs_of(program: str, inputs: list[Any]) -> list[str]:
    """`repr(f(x))` per input for one of THIS module's template programs (trusted code only;
    model-written programs go through rewards.codetask.run_on, i.e. the sandbox)."""
    namespace: dict[str, Any] = {}
    exec(program, namespace)  # noqa: S102 - our own template text, never model output
    return [repr(namespace["f"](v)) for v in inputs]


def draw_program(r: random.Random, levels: tuple[int, ...] = (2,)) -> tuple[str, list[Any], int]:
    """One template program of one of `levels`, with its distinct inputs and its level."""
    level = levels[0] if len(levels) == 1 else r.choice(levels)  # one level: the draws as before levels
    families = LEVELS[level]
    family = r.choice(sorted(families))
    bodies, make_input = families[family]
    program = "def f(x):\n    " + r.choice(bodies).format(**_constants(r))
    inputs: list[Any] = []
    for _ in range(50):
        if len(inputs) == MAX_INPUTS:
            break
        v = make_input(r)
        if v not in inputs:
            inputs.append(v)
    return program, inputs, level


Drawn = tuple[str, list[Any], list[str], int]


def programs(n: int, seed: int, exclude: AbstractSet[str] = frozenset(), levels=(2,)) -> list[Drawn]:
    """`n` distinct (program, inputs, outputs, level) with at least MIN_DISTINCT distinct outputs."""
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise ProposeError(f"code: unknown level {bad[0] if bad else None!r}; valid: {', '.join(map(str, LEVELS))}")
    r = random.Random(seed)
    out: dict[str, Drawn] = {}
    for _ in range(n * 100):
        if len(out) == n:
            return list(out.values())
        program, inputs, level = draw_program(r, levels)
        if program in out or program in exclude or len(inputs) < MIN_INPUTS:
            continue
        outputs = outputs_of(program, inputs)
        if len(set(outputs)) >= MIN_DISTINCT:
            out[program] = (program, inputs, outputs, level)
    raise ProposeError(f"code: cannot draw {n} distinct programs (seed {seed}, levels {list(levels)})")


# --- tasks --------------------------------------------------------------------------
def _show(program: str) -> str:
    return f"```python\n{program}\n```"


def question(kind: str, program: str, inp: str, out: str, shown: list[tuple[str, str]]) -> str:
    """The task text the solver sees (it names the answer format)."""
    if kind == "deduction":
        return (
            f"Here is a Python function:\n{_show(program)}\nWhat does f({inp}) return? "
            "Give the exact Python value inside \\boxed{}."
        )
    if kind == "abduction":
        return (
            f"Here is a Python function:\n{_show(program)}\nFind an input x such that f(x) returns {out}. "
            "Give x as a Python literal inside \\boxed{}."
        )
    pairs = "\n".join(f"f({i}) = {o}" for i, o in shown)
    return (
        f"A Python function f(x) gives these results:\n{pairs}\n"
        "Write the function f. Give it in a ```python code block that starts with `def f(x):`."
    )


def tasks_for(
    program: str, inputs: list[Any], outputs: list[str], kinds, source: str, meta: dict | None = None, level: int = 1
) -> list[Problem]:
    """One Problem per kind in `kinds` for one program (inputs/outputs aligned; reprs as text)."""
    ins = [repr(v) for v in inputs]
    shown, hidden = list(zip(ins, outputs))[:SHOWN], list(zip(ins, outputs))[SHOWN:]
    out = []
    for j, kind in enumerate(kinds):
        pick = j % len(ins)  # deduction and abduction ask about different inputs
        if kind == "induction":
            if not hidden:
                continue
            gold = spec(kind, program, shown=[list(p) for p in shown], hidden=[list(p) for p in hidden])
        else:
            gold = spec(kind, program, input=ins[pick], output=outputs[pick])
        out.append(
            Problem(
                question=question(kind, program, ins[pick], outputs[pick], shown),
                answer=gold,
                source=source,
                kind=f"code_{kind}",
                level=level,
                meta={"task": kind, "code": program, "expression": program, **(meta or {})},
            )
        )
    return out


def code_tasks(count: int, kinds, seed: int, exclude: AbstractSet[str] = frozenset(), levels=(2,)) -> list[Problem]:
    """`count` tasks, kinds in turn, each from its own program of one of `levels` (the `kind: code` source)."""
    kinds = list(kinds) or list(KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ProposeError(f"code: unknown task kind {bad[0]!r}; valid: {', '.join(KINDS)}")
    drawn = programs(count, seed, exclude, levels)
    return [
        tasks_for(p, ins, outs, [kinds[i % len(kinds)]], "code", {"seed": seed}, level)[0]
        for i, (p, ins, outs, level) in enumerate(drawn)
    ]
