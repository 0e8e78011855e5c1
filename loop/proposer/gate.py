"""Parsing and checking one self-proposed problem (the proposer's gate; no model, no DB).

Output format the proposer is prompted to copy (`render` writes it)::

    <problem>Tom has 12 apples and buys 7 more. How many apples does he have?</problem>
    <program>
    answer = 12 + 7
    </program>

`parse(text, finish_reason)` is tolerant of what does not change the meaning:
tag case and inner whitespace, prose before the problem, a missing opening
`<problem>` tag, a missing `</problem>` when `<program>` follows, a Markdown code
fence inside the program, anything after `</program>` (only the first problem
counts). A missing `</program>` is accepted only when generation stopped on its
own (`finish_reason == "stop"`: a backend may strip the stop string); a
truncated program (`"length"`) is rejected. Rejections are `parse:<why>`.

`Gate.check(...)` applies the checks in order; the first failure is the reason:
  duplicate        normalized-text hash equals a stored problem's or an earlier
                   proposal's in this round (`loop.problems.dedup.text_hash`)
  near_duplicate   word-3-gram Jaccard >= threshold with any stored problem
                   (`loop.problems.dedup.NearDupIndex`, exact Jaccard on candidates)
  contaminated     shares a 13-gram with an eval text (`NgramIndex`); the
                   held-out arithmetic questions are shorter than 13 words, so
                   exact held-out keys (questions and expressions,
                   `loop.problems.procedural.heldout_keys`) are ALSO rejected when their
                   normalized tokens occur in the problem, and after running the
                   program, a problem with a held-out item's numbers and answer
                   (the same sum in words) is rejected too
  program_mismatch the program uses a number that is not in the problem text
                   (0, 1, 2, 100 and number words like "twice"/"dozen" count);
                   `program_mismatch:reused`: it combines a number with itself
                   (`x op x`, 0, 1, 2, 100 aside) that the text states only once: the
                   second operand is a quantity the problem never gives ("a box of 12"
                   -> 12 * 12, "10 days" -> 10 * 10 eggs, "28 apples" -> 28 - 28).
                   (6 - 5) / 6 is fine; a square's area writes 5**2, not 5 * 5.
  trivial:<why>    no_words (no word of 2+ letters: "25", "5 * 2"),
                   no_computation (the program assigns a bare number),
                   no_question (no "?" and no sentence that is an instruction:
                   "Five times five is ten. Five is five times one."),
                   answer_given (after running: the answer is a number the
                   problem states). Without these a weak proposer drifts to
                   "<problem>5</problem> answer = 5", which it always solves.
  bad_program:xor the program uses `^`: Python's bitwise XOR, never what a word
                   problem means (the proposer writes `3^4` for a power; 3 ^ 4 = 7)
  bad_program:truncates  Integer() or int() of a literal with a fractional part: the
                   proposer writes `Integer(2.6) * 2.6` for 2.6 x 2.6, and Integer(2.6) is 2
  <sandbox reason> `loop.sandbox.run` failed: static:..., error:..., timeout,
                   nondeterministic (it runs the program twice), no_answer, ...
  bad_answer:<why> the answer is not a short rational number, or
                   `verify(answer, answer).equal` is not True
Programs run as `from sympy import *` + the program with its number literals
made exact (`exactify`: 100/3 is Rational 100/3, never a float).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from loop.problems.dedup import NearDupIndex, NgramIndex, text_hash
from loop.problems.procedural import heldout_keys
from rewards import verify

PRELUDE = "from sympy import *\n"
MAX_PROBLEM_CHARS = 600
MAX_PROGRAM_CHARS = 1000
MAX_ANSWER_CHARS = 40
FREE_NUMBERS = {Fraction(0), Fraction(1), Fraction(2), Fraction(100)}
NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "twenty": 20,
    "half": 2,
    "twice": 2,
    "double": 2,
    "triple": 3,
    "dozen": 12,
    "hundred": 100,
    "thousand": 1000,
    "quarter": 4,
    "third": 3,
    "week": 7,
    "hour": 60,
    "minute": 60,
}
_ANSWER_RE = re.compile(r"-?\d+(?:/\d+)?|-?\d+\.\d+")
_TEXT_NUM = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_OPEN_P, _CLOSE_P = re.compile(r"<\s*problem\s*>", re.I), re.compile(r"<\s*/\s*problem\s*>", re.I)
_OPEN_G, _CLOSE_G = re.compile(r"<\s*program\s*>", re.I), re.compile(r"<\s*/\s*program\s*>", re.I)
_WORD = re.compile(r"[^\W\d_]{2,}")
_NUMBER_CTORS = {"Integer", "Rational", "Float", "Number", "S", "int", "float"}
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*$", re.M)


@dataclass(frozen=True)
class Parsed:
    problem: str | None
    program: str | None
    reason: str  # 'ok' or 'parse:<why>'

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def render(problem: str, program: str) -> str:
    """The exact text a proposal should be (few-shot answers are rendered with it)."""
    return f"<problem>{problem.strip()}</problem>\n<program>\n{program.strip()}\n</program>"


def parse(text: str, finish_reason: str = "stop") -> Parsed:
    """One completion -> Parsed (see the module docstring for what is tolerated)."""
    open_p = _OPEN_P.search(text)
    start = open_p.end() if open_p else 0
    open_g = _OPEN_G.search(text, start)
    if open_g is None:
        return Parsed(None, None, "parse:no_program")
    close_p = _CLOSE_P.search(text, start, open_g.start())
    if open_p is None and close_p is None:
        return Parsed(None, None, "parse:no_problem")
    problem = " ".join(text[start : close_p.start() if close_p else open_g.start()].split())
    close_g = _CLOSE_G.search(text, open_g.end())
    if close_g is None and finish_reason != "stop":
        return Parsed(problem or None, None, "parse:truncated")
    program = text[open_g.end() : close_g.start() if close_g else len(text)]
    program = textwrap.dedent(_FENCE.sub("", program).strip("\n")).strip()
    if not problem:
        return Parsed(None, program or None, "parse:empty_problem")
    if not program:
        return Parsed(problem, None, "parse:empty_program")
    if len(problem) > MAX_PROBLEM_CHARS:
        return Parsed(problem, program, "parse:problem_too_long")
    if len(program) > MAX_PROGRAM_CHARS:
        return Parsed(problem, program, "parse:program_too_long")
    return Parsed(problem, program, "ok")


# --- programs -----------------------------------------------------------------------
class _Exact(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return node
        if isinstance(v, int):
            call = ast.Call(ast.Name("Integer", ast.Load()), [ast.Constant(v)], [])
        else:
            call = ast.Call(ast.Name("Rational", ast.Load()), [ast.Constant(repr(v))], [])
        return ast.copy_location(call, node)


def _tree(program: str) -> ast.Module | None:
    """The program's syntax tree, or None when it does not parse (the sandbox reports that)."""
    try:
        return ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def exactify(program: str) -> str:
    """Number literals -> sympy Integer/Rational (a syntax error is left for the sandbox)."""
    tree = _tree(program)
    if tree is None:
        return program
    try:
        return ast.unparse(ast.fix_missing_locations(_Exact().visit(tree)))
    except RecursionError:
        return program


def executable(program: str) -> str:
    """What the sandbox runs for a proposal's program."""
    return PRELUDE + exactify(program)


def _number(node: ast.AST) -> Fraction | None:
    """The value of a number literal node, or None (bools are not numbers)."""
    v = node.value if isinstance(node, ast.Constant) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return Fraction(repr(v)) if isinstance(v, float) else Fraction(v)


def program_numbers(program: str) -> set[Fraction]:
    """Number literals of the program (bools excluded); empty if it does not parse."""
    tree = _tree(program)
    if tree is None:
        return set()
    return {x for n in ast.walk(tree) if (x := _number(n)) is not None}


def computes(program: str) -> bool:
    """Whether the program does more than assign a number literal (or a sympy
    number built from literals, e.g. `Integer(-5)`)."""
    tree = _tree(program)
    if tree is None:
        return True  # the sandbox reports it
    for n in ast.walk(tree):
        if isinstance(
            n,
            (
                ast.BinOp,
                ast.BoolOp,
                ast.Compare,
                ast.Subscript,
                ast.comprehension,
                ast.For,
                ast.While,
                ast.IfExp,
                ast.Lambda,
                ast.FunctionDef,
            ),
        ):
            return True
        if isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in _NUMBER_CTORS):
            return True
    return False


def uses_xor(program: str) -> bool:
    """Whether the program has a `^` (bitwise XOR; False if it does not parse: the sandbox reports it)."""
    tree = _tree(program)
    if tree is None:
        return False
    return any(isinstance(n, ast.BitXor) for n in ast.walk(tree))


TRUNCATING = frozenset({"Integer", "int"})  # Integer(2.6) is 2, int(1.1) is 1: silently


def truncates(program: str) -> bool:
    """Whether the program calls Integer() or int() on a literal with a fractional part (False if
    it does not parse: the sandbox reports it)."""
    tree = _tree(program)
    if tree is None:
        return False
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in TRUNCATING and n.args:
            arg = n.args[0].operand if isinstance(n.args[0], ast.UnaryOp) else n.args[0]
            v = _number(arg)
            if v is not None and v.denominator != 1:
                return True
    return False


_ASKS = re.compile(  # a sentence that starts with a question word or an instruction
    r"(?:^|[.!:;]\s+)(?:what|how|which|who|when|where|find|compute|calculate|evaluate|add|subtract|multiply|"
    r"divide|sum|simplify|solve|determine|work out|give|express|convert|round|estimate|count|show|list|tell)\b",
    re.I,
)


def asks_something(problem: str) -> bool:
    """A question mark, or a sentence that asks or instructs ("Compute 8 + 2.", "What is 55 * 6.")."""
    return "?" in problem or bool(_ASKS.search(problem.strip()))


_N = _TEXT_NUM.pattern
_STATED = re.compile(  # an operation written out between two numbers
    rf"{_N}\s*(?:\*\*|[-+*/^\u00d7\u00f7x]|plus|minus|times|divided by|multiplied by)\s*{_N}"
    rf"|\b(?:sum|product|difference|quotient)\s+of\s+{_N}\s+and\s+{_N}"
    rf"|\b(?:add|subtract|multiply|divide)\s+{_N}\s+(?:and|from|by|to)\s+{_N}",
    re.I,
)


def states_arithmetic(problem: str) -> bool:
    """The text writes out an operation on two numbers ("8 + 7", "10 x 2", "the product of 2 and 3",
    "Add 25 and 10"); a word problem ("20 hours of 3D design...") leaves the operation to the reader."""
    return bool(_STATED.search(problem))


def trivial_reason(problem: str, program: str) -> str | None:
    if not _WORD.search(problem):
        return "trivial:no_words"
    if not asks_something(problem):
        return "trivial:no_question"
    if not computes(program):
        return "trivial:no_computation"
    return None


def text_number_counts(text: str) -> Counter[Fraction]:
    """How often the text states each number (digits, and number words like "dozen")."""
    counts = Counter(Fraction(m.group().replace(",", "")) for m in _TEXT_NUM.finditer(text))
    for word in re.findall(r"[a-z]+", text.lower()):
        value = NUMBER_WORDS.get(word, NUMBER_WORDS.get(word[:-1]) if word.endswith("s") else None)
        if value is not None:
            counts[Fraction(value)] += 1
    return counts


def text_numbers(text: str) -> set[Fraction]:
    return set(text_number_counts(text))


def _operand(node: ast.AST) -> Fraction | None:
    """A literal operand's value, through a sympy number constructor (`Integer(12)`)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _NUMBER_CTORS:
        node = node.args[0] if len(node.args) == 1 and not node.keywords else node
    return _number(node)


def reused_numbers(problem: str, program: str) -> list[str]:
    """Numbers the program combines with themselves (`12 * 12`, `28 - 28`) that the problem states
    only once (free numbers aside): the second operand is a quantity the problem never gives."""
    tree = _tree(program)
    if tree is None:
        return []
    stated = text_number_counts(problem)
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.BinOp) and (x := _operand(n.left)) is not None and x == _operand(n.right):
            if x not in FREE_NUMBERS and stated[x] < 2:
                found.add(x)
    return sorted(str(x) for x in found)


def answer_reason(answer: str) -> str | None:
    """Why `answer` cannot be a gold answer, or None."""
    if len(answer) > MAX_ANSWER_CHARS:
        return "bad_answer:too_long"
    if not _ANSWER_RE.fullmatch(answer.strip()):
        return "bad_answer:not_a_number"
    if verify(answer, answer).equal is not True:
        return "bad_answer:unverifiable"
    return None


# --- the gate -------------------------------------------------------------------------
@dataclass
class Check:
    reason: str  # 'ok' or the first failed check
    answer: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Gate:
    """Dedup + decontamination state for one round: every stored problem text, the
    eval texts, the held-out problems; kept proposals are added as they pass."""

    def __init__(
        self,
        stored: Iterable[tuple[str, str]],
        eval_texts: Iterable[str] = (),
        heldout: Iterable[Any] = (),
        near_dup: float = 0.8,
    ):
        heldout = list(heldout)
        self.hashes: dict[str, str] = {}
        self.near = NearDupIndex(threshold=near_dup)
        for pid, text in stored:
            self.add(pid, text)
        self.ngrams = NgramIndex(eval_texts)
        self.held = NgramIndex(heldout_keys(heldout), n=10**6)  # every key is "short": contained match
        self.held_answers = {(frozenset(text_numbers(p.meta.get("expression", p.question))), p.answer) for p in heldout}

    def add(self, pid: str, text: str) -> None:
        h = text_hash(text)
        if h not in self.hashes:
            self.hashes[h] = pid
            self.near.add(pid, text)

    def text_reason(self, problem: str) -> tuple[str, dict] | None:
        """duplicate / near_duplicate / contaminated / program-independent checks."""
        if (h := text_hash(problem)) in self.hashes:
            return "duplicate", {"match": self.hashes[h]}
        if hits := self.near.query(problem):
            return "near_duplicate", {"match": hits[0][0], "jaccard": round(hits[0][1], 3)}
        if self.held.overlaps(problem):
            return "contaminated", {"match": "heldout_key"}
        if k := self.ngrams.count(problem):
            return "contaminated", {"match": "eval_13gram", "count": k}
        return None

    def check(self, parsed: Parsed, run_program) -> Check:
        """All checks for a parsed proposal; `run_program(program) -> SandboxResult`."""
        if not parsed.ok:
            return Check(parsed.reason)
        problem, program = parsed.problem, parsed.program
        assert problem is not None and program is not None  # an ok parse has both
        if hit := self.text_reason(problem):
            return Check(hit[0], detail=hit[1])
        extra = program_numbers(program) - text_numbers(problem) - FREE_NUMBERS
        if extra:
            return Check("program_mismatch", detail={"numbers": sorted(str(x) for x in extra)})
        if reused := reused_numbers(problem, program):
            return Check("program_mismatch:reused", detail={"numbers": reused})
        if why := trivial_reason(problem, program):
            return Check(why)
        if uses_xor(program):
            return Check("bad_program:xor")
        if truncates(program):
            return Check("bad_program:truncates")
        res = run_program(program)
        detail = {"sandbox_s": round(res.elapsed_s, 3), "sandbox_detail": res.detail[:300]}
        if not res.ok:
            return Check(res.reason, detail=detail)
        answer = res.output.strip()
        if why := answer_reason(answer):
            return Check(why, answer, detail)
        if Fraction(answer) in {Fraction(m.group().replace(",", "")) for m in _TEXT_NUM.finditer(problem)}:
            return Check("trivial:answer_given", answer, detail)
        if (frozenset(text_numbers(problem)), answer) in self.held_answers:
            return Check("contaminated", answer, {**detail, "match": "heldout_answer"})
        return Check("ok", answer, detail)
