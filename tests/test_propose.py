"""Propose: exact procedural answers, determinism, held-out exclusion, seed-file errors."""
import json
from fractions import Fraction

import pytest

from loop.config import SourceSettings
from loop.problems import ProposeError
from loop.problems.procedural import arithmetic, heldout, heldout_keys
from loop.problems.seeds import load_jsonl
from loop.problems.sources import propose
from tests.conftest import GSM8K


def _eval(expr: str) -> Fraction:
    # Reference evaluator independent of sympy: Fractions over a tiny whitelist.
    assert set(expr) <= set("0123456789+-*/() ")
    return eval(expr.replace("/", "*Fraction(1,1)/"), {"Fraction": Fraction, "__builtins__": {}})  # noqa: S307


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_answers_are_exact(level):
    for p in arithmetic(40, [level], seed=level):
        assert Fraction(p.answer) == _eval(p.meta["expression"]), p


def test_deterministic_and_distinct():
    a, b = arithmetic(30, [1, 2], seed=7), arithmetic(30, [1, 2], seed=7)
    assert a == b
    assert len({p.question for p in a}) == 30
    assert arithmetic(30, [1, 2], seed=8) != a


def test_levels_spread_evenly():
    levels = [p.level for p in arithmetic(20, [1, 2], seed=3)]
    assert levels.count(1) == levels.count(2) == 10


def test_training_proposals_never_hit_heldout_expressions():
    held = heldout(200, [1], seed=99)
    keys = heldout_keys(held)
    train = propose([SourceSettings(kind="arithmetic", count=300, levels=[1])], seed=1, exclude=keys)
    assert not {p.meta["expression"] for p in train} & {p.meta["expression"] for p in held}


def test_problem_id_is_content_hash():
    p = arithmetic(1, [1], seed=1)[0]
    q = type(p)(question=p.question + "  ", answer=p.answer, source="x", kind="y")
    assert p.problem_id == q.problem_id  # whitespace and source do not change identity


def test_load_real_gsm8k():
    if not GSM8K.exists():
        pytest.skip("shared GSM8K data not present")
    probs = load_jsonl(GSM8K)
    assert len(probs) == 7473
    assert probs[0].answer == "72"  # Natalia's clips: '#### 72'
    assert all("," not in p.answer for p in probs)


@pytest.mark.parametrize("content, needle", [
    ('{"question": "q", "answer": "a #### 1"}\nnot json\n', ":2: malformed JSON"),     # bad line 2
    ('{"question": "q"}\n', ":1: field 'answer' missing"),                          # missing field
    ('{"question": "q", "answer": "no marker"}\n', ":1: field 'answer' has no final"),  # no ####
    ('[1, 2]\n', ":1: expected a JSON object"),                                      # not an object
    ('\n\n', "has no problems"),                                                     # empty file
    ('{"question": "", "answer": "#### 3"}\n', ":1: field 'question'"),              # empty question
])
def test_malformed_seed_files_name_file_and_line(tmp_path, content, needle):
    f = tmp_path / "seed.jsonl"
    f.write_text(content)
    with pytest.raises(ProposeError) as e:
        load_jsonl(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_missing_seed_file(tmp_path):
    with pytest.raises(ProposeError, match="not found"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_jsonl_source_round_trip(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": f"w #### {i},000"}) for i in range(5)))
    got = propose([SourceSettings(kind="jsonl", path=str(f), count=3)], seed=0)
    assert len(got) == 3 and all(p.answer.endswith("000") and "," not in p.answer for p in got)
