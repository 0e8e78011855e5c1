"""Code-reasoning tasks (loop.problems.codetasks, rewards.codetask, loop.proposer.programs): each kind's check
on right, wrong and unreadable answers, hostile model programs, the generator's determinism, and
the gate for model-written programs."""
from __future__ import annotations

import json

import pytest

from loop.problems.codetasks import KINDS, code_tasks, outputs_of, programs, tasks_for
from loop.proposer import programs as proposer_code
from rewards import build_reward
from rewards.codetask import judge, read_spec, spec

REV = "def f(x):\n    return x[::-1]"
LIN = "def f(x):\n    return x * 3 + 1"
DED = spec("deduction", REV, input="[1, 2, 3]", output="[3, 2, 1]")
DED_STR = spec("deduction", REV, input="'abc'", output="'cba'")
ABD = spec("abduction", LIN, input="4", output="13")
IND = spec("induction", LIN, shown=[["0", "1"], ["1", "4"], ["2", "7"]], hidden=[["5", "16"], ["10", "31"]])


def block(program: str) -> str:
    return f"Here it is:\n```python\n{program}\n```"


DEDUCTION_ROWS = [
    ("\\boxed{[3, 2, 1]}", DED, 1.0),                                   # the output
    ("<reasoning>r</reasoning>\n<answer>\n[3,2,1]\n</answer>", DED, 1.0),  # the answer tag, spacing aside
    ("first \\boxed{[1]} then \\boxed{[3, 2, 1]}", DED, 1.0),           # the last box counts
    ("\\boxed{[1, 2, 3]}", DED, 0.0),                                   # the input, not the output
    ("\\boxed{(3, 2, 1)}", DED, 0.0),                                   # a tuple is not the list
    ("\\boxed{3, 2, 1}", DED, 0.0),                                     # a bare tuple either
    ("the answer is [3, 2, 1]", DED, None),                             # no box, no tag: unreadable
    ("\\boxed{'cba'}", DED_STR, 1.0),                                   # a quoted string
    ("\\boxed{cba}", DED_STR, 1.0),                                     # an unquoted word is the string
    ("\\boxed{abc}", DED_STR, 0.0),                                     # the wrong string
]

ABDUCTION_ROWS = [
    ("\\boxed{4}", ABD, 1.0),                                           # f(4) = 13
    ("<answer>4</answer>", ABD, 1.0),                                   # the tag form
    ("\\boxed{5}", ABD, 0.0),                                           # f(5) = 16
    ("\\boxed{'4'}", ABD, 0.0),                                         # '4' * 3 + 1 is a TypeError
    ("\\boxed{4.0}", ABD, 0.0),                                         # 13.0 is not 13
    ("\\boxed{__import__('os').system('id')}", ABD, None),              # code, not a literal: never run
    ("\\boxed{" + "9" * 600 + "}", ABD, None),                          # over the literal size cap
    ("no box at all", ABD, None),                                       # unreadable
]

INDUCTION_ROWS = [
    (block(LIN), IND, 1.0),                                             # the program itself
    (block("def f(x):\n    return 3 * x + 1"), IND, 1.0),               # an equivalent program
    (block("def f(x):\n    return {0: 1, 1: 4, 2: 7}[x]"), IND, 0.0),   # memorizes the shown pairs only
    (block("def f(x):\n    return x * 3"), IND, 0.0),                   # wrong on held-back pairs
    ("<answer>\ndef f(x):\n    return x * 3 + 1\n</answer>", IND, 1.0), # the tag form
    ("f multiplies by 3 and adds 1", IND, None),                        # no program
    (block("def g(x):\n    return x * 3 + 1"), IND, None),              # no `def f`
]

HOSTILE_INDUCTION = [  # a model-written program for induction: refused or stopped, never 1.0, always bounded
    "import os\ndef f(x):\n    return os.listdir('/')",                           # a denied import
    "def f(x):\n    return open('/etc/passwd').read()",                           # file access (open is gone)
    "import socket\ndef f(x):\n    return 3 * x + 1",                             # network module
    "def f(x):\n    while True:\n        pass",                                   # an infinite loop
    "def f(x):\n    return 'y' * 10 ** 7",                                        # a huge output
    "def f(x):\n    return [0] * 10 ** 10",                                       # a memory bomb
    "import random\ndef f(x):\n    return 3 * x + 1 + random.randint(0, 10 ** 9)",  # differs per run
    "def f(x):\n    return 3 * x + 1\nanswer = [16, 31]\nraise SystemExit",       # exits before the harness
    "def f(x):\n    return ().__class__.__base__.__subclasses__()",              # dunder escape
]


@pytest.mark.parametrize("text,gold,expected", DEDUCTION_ROWS)
def test_deduction_check(text, gold, expected):
    assert judge(gold, text) == expected


@pytest.mark.parametrize("text,gold,expected", ABDUCTION_ROWS)
def test_abduction_check_runs_the_program_on_the_answer(text, gold, expected):
    assert judge(gold, text) == expected


@pytest.mark.parametrize("text,gold,expected", INDUCTION_ROWS)
def test_induction_check_runs_held_back_pairs(text, gold, expected):
    assert judge(gold, text) == expected


@pytest.mark.parametrize("program", HOSTILE_INDUCTION)
def test_hostile_induction_programs_score_zero(program):
    import time
    t0 = time.monotonic()
    assert judge(IND, block(program)) == 0.0
    assert time.monotonic() - t0 < 60  # bounded (the sandbox's wall limit is far below this)


def test_rewards_per_kind_and_correctness_delegate():
    completions = ["\\boxed{[3, 2, 1]}", "\\boxed{4}", block(LIN), "\\boxed{7}"]
    golds = [DED, ABD, IND, "7"]  # the last: a math gold
    assert build_reward("code")(None, completions, answer=golds) == [1.0, 1.0, 1.0, None]
    assert build_reward("deduction")(None, completions, answer=golds) == [1.0, None, None, None]
    assert build_reward("abduction")(None, completions, answer=golds) == [None, 1.0, None, None]
    assert build_reward("induction")(None, completions, answer=golds) == [None, None, 1.0, None]
    assert build_reward("correctness")(None, completions, answer=golds) == [1.0, 1.0, 1.0, 1.0]
    assert build_reward("code")(None, completions) == [None] * 4  # no answer column


@pytest.mark.parametrize("gold,expected", [
    (DED, "deduction"),                                          # a spec
    ("7", None),                                                 # a number
    ('{"code_task": "sorting", "program": "x"}', None),          # an unknown kind
    ('{"code_task": "deduction"}', None),                        # no program
    ("{not json", None),                                         # broken JSON
])
def test_read_spec(gold, expected):
    d = read_spec(gold)
    assert (d["code_task"] if d else None) == expected


def test_malformed_spec_cannot_be_judged():
    assert judge(spec("deduction", REV, input="[1]"), "\\boxed{[1]}") is None  # no output field


# --- the generator --------------------------------------------------------------------
def test_generator_is_deterministic_and_seeds_differ():
    a, b = code_tasks(12, KINDS, seed=7), code_tasks(12, KINDS, seed=7)
    assert [(p.question, p.answer) for p in a] == [(p.question, p.answer) for p in b]
    c = code_tasks(12, KINDS, seed=8)
    assert {p.problem_id for p in a} != {p.problem_id for p in c}
    assert [p.kind for p in a[:3]] == ["code_deduction", "code_abduction", "code_induction"]


def test_generator_excludes_held_out_programs():
    held = code_tasks(30, KINDS, seed=1_000_003)
    keys = {p.meta["expression"] for p in held}
    train = code_tasks(60, KINDS, seed=0, exclude=keys)
    assert not keys & {p.meta["code"] for p in train}


def test_references_agree_with_the_sandbox():
    # the seed outputs come from running the templates in-process; the sandbox must agree,
    # so each abduction task accepts its own input and each deduction its own output
    for program, inputs, outputs, _ in programs(6, seed=3):
        for p in tasks_for(program, inputs, outputs, KINDS, "code"):
            d = json.loads(p.answer)
            if d["code_task"] == "induction":
                assert judge(p.answer, block(program)) == 1.0
            else:
                assert judge(p.answer, "\\boxed{" + d["input" if d["code_task"] == "abduction" else "output"] + "}") == 1.0


def test_outputs_of_runs_templates():
    assert outputs_of(REV, [[1, 2], "ab"]) == ["[2, 1]", "'ba'"]


# --- the gate for model-written programs ------------------------------------------------
def proposal(program: str, inputs: list[str], close: bool = True) -> str:
    return f"<program>\n{program}\n</program>\n<inputs>\n" + "\n".join(inputs) + ("\n</inputs>" if close else "")


FIVE = ["1", "2", "3", "4", "5"]
GATE_ROWS = [
    (proposal(LIN, FIVE), "stop", "ok"),                                               # kept
    (proposal("```python\n" + LIN + "\n```", FIVE), "stop", "ok"),                     # a fence inside is fine
    (proposal(LIN, FIVE, close=False), "stop", "ok"),                                  # backend stripped the stop
    (proposal(LIN, FIVE, close=False), "length", "parse:truncated"),                   # cut off
    ("def f(x): return x", "stop", "parse:no_program"),                                # no tags
    ("<program>\ndef f(x):\n    return x\n</program>", "stop", "parse:no_inputs"),     # no inputs
    (proposal("def g(x):\n    return x", FIVE), "stop", "parse:no_function"),          # not f
    (proposal(LIN, ["1", "2", "os.system('id')"]), "stop", "bad_input"),               # code as an input
    (proposal(LIN, ["1", "1", "2", "2"]), "stop", "few_inputs"),                       # 2 distinct inputs
    (proposal(REV, ["[1]", "[2]", "[3]", "[4]"]), "stop", "duplicate"),                # a known program
    (proposal("import os\n" + LIN, FIVE), "stop", "static:import os"),                 # sandbox static check
    (proposal("def f(x):\n    while True:\n        pass", FIVE), "stop", "cpu_limit"), # infinite loop
    (proposal("import random\ndef f(x):\n    return random.random()", FIVE), "stop", "nondeterministic"),
    (proposal("def f(x):\n    return 1 / (x - 3)", FIVE), "stop", "error:ZeroDivisionError"),
    (proposal("def f(x):\n    return float('nan')", FIVE), "stop", "bad_output"),      # nan is no literal
    (proposal("def f(x):\n    return 7", FIVE), "stop", "trivial:constant"),           # constant
    (proposal("def f(x):\n    return x", FIVE), "stop", "trivial:identity"),           # identity
]


@pytest.mark.parametrize("raw,finish,reason", GATE_ROWS)
def test_model_program_gate(raw, finish, reason):
    known = {proposer_code.program_key(REV)}
    got = proposer_code.check(raw, finish, known)
    assert got[0] == reason or (reason == "cpu_limit" and got[0] in ("cpu_limit", "timeout"))
    if reason == "ok":
        assert got[3] == ["4", "7", "10", "13", "16"]  # the executed outputs are the references


def test_kept_program_tasks_are_right_by_construction():
    _, program, inputs, outputs, _ = proposer_code.check(proposal(LIN, FIVE), "stop", set())
    tasks = tasks_for(program, inputs, outputs, KINDS, "code_self")
    assert [t.kind for t in tasks] == ["code_deduction", "code_abduction", "code_induction"]
    assert judge(tasks[0].answer, "\\boxed{4}") == 1.0                  # f(1) = 4
    assert judge(tasks[1].answer, "\\boxed{2}") == 1.0                  # an input giving f(2) = 7
    assert judge(tasks[2].answer, block("def f(x):\n    return 3 * x + 1")) == 1.0


# --- the propose stage with model-written programs (canned proposer, real store and sandbox) --
def test_stage_records_model_programs_and_their_tasks(tmp_path):
    from loop.stages import propose
    from tests.test_proposer import CannedSampler, _ctx
    src = {"kind": "code", "count": 3, "model_count": 2, "attempts": 2, "shots": 2}
    ctx = _ctx(tmp_path, [src])
    ctx.use_sampler(CannedSampler([
        proposal(LIN, FIVE),                                                     # kept: 3 tasks
        proposal("import os\n" + LIN, FIVE),                                     # sandbox static check
        proposal(LIN, ["6", "7", "8", "9"]),                                     # duplicate of the first
        proposal("def f(x):\n    return [v * v for v in x]", ["[1]", "[2, 3]", "[4]", "[5, 0]"]),  # kept
    ]))
    info = propose.stage(ctx, 1)
    rows = ctx.store.query("SELECT attempt, status, reason, answer, meta FROM proposals ORDER BY attempt")
    assert [r["reason"] for r in rows] == ["ok", "static:import os", "duplicate", "ok"]
    assert rows[0]["answer"] == "[4, 7, 10, 13, 16]"
    assert info["self_kept"] == 2 and info["self_tasks"] == 6
    tasks = ctx.store.query("SELECT kind, answer, meta FROM problems WHERE source = 'code_self' ORDER BY kind")
    assert sorted(t["kind"] for t in tasks) == sorted(["code_deduction", "code_abduction", "code_induction"] * 2)
    ids = {i for r in rows for i in json.loads(r["meta"])["problem_ids"]}
    assert len(ids) == 6 and ctx.store.scalar("SELECT count(*) FROM round_problems WHERE round = 1") == 9
    assert ctx.store.scalar("SELECT count(*) FROM problems WHERE source = 'code'") == 3  # procedural ones


def test_code_config_evaluates_a_disjoint_code_set_first():
    from loop.config import load_config
    from loop.problems.evalsets import all_heldout, eval_sets
    from loop.problems.procedural import heldout_keys
    from loop.problems.sources import propose
    from tests.conftest import ROOT
    cfg = load_config(ROOT / "configs" / "code.yaml")
    (name, split, probs), (other, _, arith) = eval_sets(cfg.evaluate)
    assert (name, split, other) == ("code", "heldout", "arithmetic")  # the gate watches the code set
    assert len(probs) == 30 and all(read_spec(p.answer) for p in probs)
    train = propose(cfg.propose.sources, seed=11, exclude=heldout_keys(all_heldout(cfg.evaluate)))
    assert len(train) == cfg.propose.sources[0].count == 24
    assert not {p.meta["code"] for p in train} & {p.meta["code"] for p in probs}


@pytest.mark.parametrize("key,value,needle", [
    ("propose.sources", "[{kind: code, tasks: [sorting]}]", "tasks"),         # an unknown task kind
    ("propose.sources", "[{kind: code, tasks: []}]", "tasks"),                # no task kind
    ("propose.sources", "[{kind: self, agreement: vote}]", "agreement"),      # an unknown agreement mode
])
def test_bad_code_and_agreement_settings_name_the_key(key, value, needle):
    from loop.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [f"{key}={value}"])


# --- levels ---------------------------------------------------------------------------
def _level_of(program: str) -> set[int]:
    """The levels whose templates (constants filled in) give `program`'s body."""
    import re

    from loop.problems.codetasks import LEVELS

    body = program.split("\n", 1)[1].strip()
    found = set()
    for level, families in LEVELS.items():
        for bodies, _ in families.values():
            for t in bodies:
                pattern = re.sub(r"\\\{[a-z]\\\}", ".+?", re.escape(t.strip()))
                if re.fullmatch(pattern, body, re.S):
                    found.add(level)
    return found


@pytest.mark.parametrize("levels, expected", [
    ((1,), {1}),       # one-step programs only
    ((2,), {2}),       # the multi-step templates only (the draws as before levels existed)
    ((1, 2), {1, 2}),  # both, each task labelled with its own
])
def test_levels_pick_the_templates(levels, expected):
    tasks = code_tasks(40, KINDS, seed=11, levels=levels)
    assert {t.level for t in tasks} == expected
    assert len({t.meta["code"] for t in tasks}) == 40  # distinct programs
    for t in tasks:
        assert t.level in _level_of(t.meta["code"])  # drawn from its own level's templates


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_one_programs_are_one_step_and_right(seed):
    for program, inputs, outputs, level in programs(12, seed, levels=(1,)):
        assert level == 1
        assert program.count("\n") == 1  # `def f(x):` and one return line
        assert outputs == outputs_of(program, inputs)  # the reference is the program's own output
        assert len(set(outputs)) >= 3


@pytest.mark.parametrize("levels, needle", [
    ((3,), "unknown level 3; valid: 1, 2"),  # no level 3 of code tasks
    ((), "unknown level None"),              # none at all
])
def test_bad_levels_name_the_valid_ones(levels, needle):
    from loop.problems import ProposeError

    with pytest.raises(ProposeError, match=needle.replace("(", r"\(")):
        programs(4, 0, levels=levels)


def test_code_source_levels_are_validated_at_load():
    from loop.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="levels are 1 .one-step programs. and 2"):
        load_config(None, ['propose.sources=[{kind: code, count: 4, levels: [3]}]'])
    cfg = load_config(None, ['propose.sources=[{kind: code, count: 4, levels: [1]}]'])
    assert cfg.propose.sources[0].levels == [1]


def test_held_out_code_set_follows_its_levels():
    from loop.config import load_config
    from loop.problems.evalsets import set_problems

    cfg = load_config(None, ['evaluate.sets=[{name: code, kind: code, n: 9, levels: [1]}]'])
    assert {p.level for p in set_problems(cfg.evaluate.sets[0])} == {1}
