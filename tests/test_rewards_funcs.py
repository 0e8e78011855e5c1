"""Tables for the six reward functions, None semantics and the registry."""
from __future__ import annotations

import pickle

import pytest

from rewards import REWARDS, build_reward, extract_answer

GOOD = "<reasoning>\nadd them\n</reasoning>\n<answer>\n72\n</answer>\n"
GOOD_MULTILINE = "<reasoning>\nstep 1\nstep 2\n</reasoning>\n<answer>\n72\n</answer>\n"
SOFT_ONLY = "<reasoning>add</reasoning> <answer>72</answer>"
TRAILING = "<reasoning>\nadd\n</reasoning>\n<answer>\n72\n</answer>\nextra words"
NO_TAGS = "48 + 24 = 72, so the answer is 72."
BOXED = "We get \\boxed{72}."
WRONG = "<reasoning>\nadd\n</reasoning>\n<answer>\n71\n</answer>\n"
WORDY = "<reasoning>\nadd\n</reasoning>\n<answer>\nShe sold 72 clips.\n</answer>\n"


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# (reward name, completion, gold, expected score)
TABLE = [
    ("xmlcount", GOOD, "72", 0.5),                       # all four tags, nothing trailing
    ("xmlcount", TRAILING, "72", 0.5 - 2 * 0.011),      # 11 trailing chars, penalised by both closing-tag rules
    ("xmlcount", NO_TAGS, "72", 0.0),                    # no tags at all
    ("xmlcount", "<reasoning>\nx\n</reasoning>\n", "72", 0.25),  # only the reasoning tags
    ("soft_format", GOOD, "72", 0.5),                    # canonical layout matches
    ("soft_format", SOFT_ONLY, "72", 0.5),               # no newlines needed
    ("soft_format", GOOD_MULTILINE, "72", 0.5),          # multi-line reasoning is fine (DOTALL default)
    ("strict_format", GOOD_MULTILINE, "72", 0.5),        # strict layout with multi-line reasoning
    ("soft_format", NO_TAGS, "72", 0.0),                 # no tags
    ("strict_format", GOOD, "72", 0.5),                  # exact layout
    ("strict_format", SOFT_ONLY, "72", 0.0),             # missing the newlines
    ("strict_format", TRAILING, "72", 0.0),              # text after </answer>
    ("int", GOOD, "72", 0.5),                            # integer in the answer tag
    ("int", "<answer>\n7.5\n</answer>", "72", 0.0),      # decimal is not an int
    ("int", "<answer>\n-3\n</answer>", "72", 0.0),       # recipe: isdigit, so no sign
    ("int", "<answer>²</answer>", "72", 0.0),            # unicode superscript is not an ASCII digit
    ("correctness", GOOD, "72", 1.0),                    # right answer in the tag
    ("correctness", WRONG, "72", 0.0),                   # wrong answer in the tag
    ("correctness", NO_TAGS, "72", 1.0),                 # no tag: last-number fallback still counts
    ("correctness", BOXED, "72", 1.0),                   # boxed fallback
    ("correctness", "<answer>72.0</answer>", "72", 1.0), # same value, other format
    ("correctness", "<answer>1,000</answer>", "1000", 1.0),  # thousands separator
    ("correctness", "<answer>$18</answer>", "18", 1.0),  # currency sign
    ("correctness", "", "72", 0.0),                      # empty completion is wrong
    ("correctness", GOOD, "", None),                     # no gold: cannot judge
    ("correctness", "", "\\frac{1}{", None),             # unreadable gold + empty completion: still cannot judge
    ("accuracy", "no numbers", "\\frac{1}{", None),      # unreadable gold, nothing extracted: cannot judge
    ("correctness", WORDY, "72", 0.0),                   # correctness takes the tag as the answer
    ("accuracy", WORDY, "72", 1.0),                      # accuracy reads the number inside the tag
    ("accuracy", GOOD, "72", 1.0),                       # plain right answer
    ("accuracy", WRONG, "72", 0.0),                      # wrong
    ("accuracy", NO_TAGS, "72", 1.0),                    # weak last-number fallback counts
    ("accuracy", "no numbers here", "72", 0.0),          # nothing to extract
    ("accuracy", GOOD, "", None),                        # no gold: cannot judge
    ("correctness", "<answer>\\frac{1}{2}</answer>", "0.5", 1.0),  # fraction vs decimal
    ("correctness", GOOD, "Natalia sold 48/2 = 24 clips in May.\n#### 72", 1.0),  # a GSM8K gold string
    ("correctness", WRONG, "48 + 24 = 72\n#### 72", 0.0),             # ... its number is the gold, not 24
    ("correctness", "<answer>1000</answer>", "#### 1,000", 1.0),      # ... with a thousands separator
    ("accuracy", WORDY, "She sold 72.\n#### 72", 1.0),                # accuracy takes GSM8K golds too
]


@pytest.mark.parametrize("name,completion,gold,expected", TABLE)
def test_reward_table(name, completion, gold, expected):
    reward = build_reward(name, {})
    for form in (completion, conv(completion)):
        out = reward(prompts=["q"], completions=[form], answer=[gold])
        assert len(out) == 1
        if expected is None:
            assert out[0] is None
        else:
            assert out[0] == pytest.approx(expected)


def test_batch_alignment_and_missing_answer_column():
    reward = build_reward("correctness", {})
    assert reward(["q"] * 3, [GOOD, WRONG, NO_TAGS], answer=["72", "72", "5"]) == [1.0, 0.0, 0.0]
    assert reward(["q"], [GOOD]) == [None]  # no gold column at all


def test_misaligned_answer_column_is_an_error():
    with pytest.raises(ValueError, match="2 answers for 1 completions"):
        build_reward("accuracy", {})(["q"], [GOOD], answer=["72", "73"])


def test_registry_names_and_builder():
    assert set(REWARDS) == {"xmlcount", "soft_format", "strict_format", "int", "correctness", "accuracy",
                            "dashboard_fields",
                            "code", "deduction", "abduction", "induction"}
    for name in REWARDS:
        fn = build_reward(name, {})
        assert fn.__name__ == name
        clone = pickle.loads(pickle.dumps(fn))
        assert clone.__name__ == name
        assert clone(["q"], [GOOD], answer=["72"]) == fn(["q"], [GOOD], answer=["72"])


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_reward("corectness", {})
    for name in REWARDS:
        assert name in str(err.value)


@pytest.mark.parametrize("name,params,bad", [
    ("correctness", {"timout_s": 1}, "timout_s"),     # misspelt param
    ("correctness", {"timeout_s": "1"}, "timeout_s"), # wrong type
    ("correctness", {"timeout_s": 0}, "timeout_s"),   # out of range
    ("soft_format", {"multiline": 1}, "multiline"),   # int is not a bool
    ("xmlcount", {"per_tag": True}, "per_tag"),       # bool is not a number
])
def test_bad_param_is_named(name, params, bad):
    with pytest.raises(ValueError, match=bad):
        build_reward(name, params)


def test_params_change_behaviour():
    literal = build_reward("soft_format", {"multiline": False})  # the recipe's regex verbatim
    assert literal(["q"], [GOOD_MULTILINE]) == [0.0]
    assert literal(["q"], [SOFT_ONLY]) == [0.5]
    assert build_reward("int", {"score_value": 2.0})(["q"], [GOOD]) == [2.0]


def test_extract_answer_fields():
    ext = extract_answer("blah <answer>\n\\boxed{\\frac{1}{2}}\n</answer>")
    assert (ext.value, ext.method, ext.strong) == ("\\frac{1}{2}", "answer_tag", True)
    assert extract_answer("so 3 then 4.").method == "last_number"
    assert extract_answer("so 3 then 4.").strong is False
    assert extract_answer("nothing").value is None
