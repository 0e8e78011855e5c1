"""Model-written programs for code-reasoning tasks (a `kind: code` source with `model_count`).

The current model is prompted (few-shot: procedural programs of loop.problems.codetasks, rendered
by `render`) for ONE function and its inputs::

    <program>
    def f(x):
        return [v * 2 for v in x]
    </program>
    <inputs>
    [1, 2, 3]
    [4, 0]
    ...
    </inputs>

`check(raw, finish, known)` keeps it only when, in order (the first failure is the reason):
  parse:<why>      no `<program>`/`<inputs>`, truncated (no closing tag and finish "length"),
                   no `def f(`, program over MAX_PROGRAM_CHARS
  bad_input        an input line is not a Python literal (ast.literal_eval, bounded size)
  few_inputs       fewer than MIN_INPUTS distinct inputs (at most MAX_INPUTS are used)
  duplicate        the program (whitespace-normalized) is a stored or held-out program, or an
                   earlier one this round
  <sandbox reason> `loop.sandbox.run` of f on every input, run twice (must agree: deterministic)
                   within the size, import, time and memory limits: static:..., timeout, ...
  bad_output       an output is not a Python literal that `repr` round-trips (objects, nan, ...)
  trivial:<why>    constant (every output equal), identity (every output equals its input)
The executed outputs are the references, so a kept task's answer is right by construction.
Each kept program gives one task per kind in the source's `tasks` (loop.problems.codetasks.tasks_for).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from loop.problems import Problem
from loop.problems.codetasks import MAX_INPUTS, MIN_INPUTS, programs, tasks_for
from loop.proposer.generate import proposal_row, shot_ref, waves
from rewards.codetask import MAX_PROGRAM_CHARS, literal, run_on

CODE_PROPOSER_VERSION = "code-proposer-v1"
SYSTEM = (
    "You write small deterministic Python functions f(x) and inputs for them. Reply in exactly this format:\n"
    "<program>\ndef f(x):\n    ...\n</program>\n<inputs>\none Python literal per line, "
    f"{MAX_INPUTS} lines\n</inputs>"
)
ASK = "Write one new function f(x) and its inputs."
_TAG = {t: (re.compile(rf"<\s*{t}\s*>", re.I), re.compile(rf"<\s*/\s*{t}\s*>", re.I)) for t in ("program", "inputs")}
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*$", re.M)


@dataclass
class CodeProposal:
    attempt: int
    raw: str
    prompt: list[dict]
    reason: str
    program: str | None = None
    inputs: list[Any] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    shots: list[dict[str, Any]] = field(default_factory=list)  # ancestry: the prompt's examples' refs

    @property
    def kept(self) -> bool:
        return self.reason == "ok"


def render(program: str, inputs: list[Any]) -> str:
    lines = "\n".join(repr(v) for v in inputs)
    return f"<program>\n{program.strip()}\n</program>\n<inputs>\n{lines}\n</inputs>"


def build_prompt(shots: list[tuple[str, list[Any]]]) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}]
    for program, inputs in shots:
        msgs += [{"role": "user", "content": ASK}, {"role": "assistant", "content": render(program, inputs)}]
    return msgs + [{"role": "user", "content": ASK}]


def _section(text: str, tag: str, start: int, finish: str) -> tuple[str | None, int, str]:
    """(content, end offset, reason) of one tagged section from `start`."""
    opening, closing = _TAG[tag]
    m = opening.search(text, start)
    if m is None:
        return None, start, f"parse:no_{tag}"
    c = closing.search(text, m.end())
    if c is None and finish != "stop":
        return None, m.end(), "parse:truncated"
    body = text[m.end() : c.start() if c else len(text)]
    return _FENCE.sub("", body).strip("\n"), c.end() if c else len(text), "ok"


def parse(raw: str, finish: str = "stop") -> tuple[str | None, list[str], str]:
    """(program, input lines, reason)."""
    program, end, why = _section(raw, "program", 0, finish)
    if program is None:
        return None, [], why
    inputs, _, why = _section(raw, "inputs", end, finish)
    if inputs is None:
        return program, [], why
    program = program.strip()
    if not re.search(r"^def\s+f\s*\(", program, re.M):
        return program, [], "parse:no_function"
    if len(program) > MAX_PROGRAM_CHARS:
        return program, [], "parse:program_too_long"
    return program, [ln.strip() for ln in inputs.splitlines() if ln.strip()], "ok"


def program_key(program: str) -> str:
    return " ".join(program.split())


def _outputs(text: str, n: int) -> list[str] | None:
    """repr of each output when the sandbox's `str([...])` is n literals that round-trip."""
    ok, values = literal(text) if len(text) <= 64 * 1024 else (False, None)
    if not ok or not isinstance(values, list) or len(values) != n:
        return None
    out = [repr(v) for v in values]
    for o in out:  # a long or odd value must read back as itself to be a reference
        ok, back = literal(o)
        if not ok or repr(back) != o:
            return None
    return out


def check(raw: str, finish: str, known: set[str]) -> tuple[str, str | None, list[Any], list[str], dict]:
    """(reason, program, inputs, outputs, detail) for one completion (see the module docstring)."""
    program, lines, why = parse(raw, finish)
    if why != "ok" or program is None:
        return why, program, [], [], {}
    inputs: list[Any] = []
    for ln in lines:
        ok, v = literal(ln)
        if not ok:
            return "bad_input", program, [], [], {"line": ln[:200]}
        if v not in inputs and len(inputs) < MAX_INPUTS:
            inputs.append(v)
    if len(inputs) < MIN_INPUTS:
        return "few_inputs", program, inputs, [], {}
    if program_key(program) in known:
        return "duplicate", program, inputs, [], {}
    res = run_on(program, inputs, runs=2)
    detail = {"sandbox_s": round(res.elapsed_s, 3), "sandbox_detail": res.detail[:300]}
    if not res.ok or res.output is None:
        return res.reason, program, inputs, [], detail
    outputs = _outputs(res.output, len(inputs))
    if outputs is None:
        return "bad_output", program, inputs, [], detail
    if len(set(outputs)) == 1:
        return "trivial:constant", program, inputs, outputs, detail
    if outputs == [repr(v) for v in inputs]:
        return "trivial:identity", program, inputs, outputs, detail
    return "ok", program, inputs, outputs, detail


def generate(ctx, src, known: set[str], seed: int, exclude: AbstractSet[str] = frozenset()) -> list[CodeProposal]:
    """Waves of model-written programs until `src.model_count` are kept (see loop.proposer.generate.waves);
    the few-shot programs are procedural ones, never a held-out program (`exclude`); a procedural
    program has no problem id, so its ancestry ref is source 'code' and the program's sha256."""
    pool = [(p, ins) for p, ins, _, _ in programs(max(2 * src.shots, 8), seed, exclude)]

    def make_prompt(rng: random.Random) -> tuple[list[dict], list[dict]]:
        shots = rng.sample(pool, min(src.shots, len(pool)))
        return build_prompt(shots), [shot_ref(None, "code", render(p, ins)) for p, ins in shots]

    def judge_one(attempt: int, raw: str, finish: str, prompt: list[dict], room: bool) -> CodeProposal:
        why, program, inputs, outputs, detail = check(raw, finish, known)
        if why == "ok" and not room:
            why = "quota"
        if why == "ok":
            assert program is not None  # checked ok: it parsed
            known.add(program_key(program))
        return CodeProposal(attempt, raw, prompt, why, program, inputs, outputs, {**detail, "finish_reason": finish})

    return waves(ctx, src, src.model_count, make_prompt, judge_one, seed, ["</inputs>"], "code")


def proposal_rows(ctx, r: int, drawn: list[CodeProposal], version: str, kinds, salt: str):
    """(kept Problems, proposals rows): each kept program gives one task per kind."""
    problems: list[Problem] = []
    rows = []
    for p in drawn:
        pid = hashlib.sha256(f"{ctx.run_id}:{r}:code{salt}:{p.attempt}:{version}:{p.raw}".encode()).hexdigest()[:20]
        tasks: list[Problem] = []
        if p.kept:
            assert p.program is not None  # kept: parsed and ran
            meta = {"proposal_id": pid, "round": r, "model_version": version, "proposer": CODE_PROPOSER_VERSION}
            tasks = tasks_for(p.program, p.inputs, p.outputs, kinds, "code_self", meta)
            problems += tasks
        rows.append(
            proposal_row(
                ctx,
                r,
                version,
                pid,
                p,
                text=p.program,
                problem_id=tasks[0].problem_id if tasks else None,
                program=p.program,
                answer="[" + ", ".join(p.outputs) + "]" if p.outputs else None,
                meta={**p.detail, "inputs": [repr(v) for v in p.inputs], "problem_ids": [t.problem_id for t in tasks]},
            )
        )
    return problems, rows
