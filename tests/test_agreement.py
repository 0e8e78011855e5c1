"""The agreement filter for natural-language self proposals (loop.proposer.agreement): the
majority and second-program decisions, and the stage keeping only agreeing proposals with their
votes stored (migration 008)."""
from __future__ import annotations

import json

import pytest

from loop.proposer.agreement import majority_votes, second_program_votes

MAJORITY_ROWS = [
    ("19", ["19", "19", "7", None], True, 2, "19"),        # plurality agrees
    ("19", ["19.0", "19", "7", "7"], False, 2, "19.0"),    # a tie is no majority (19.0 counts as 19)
    ("19", ["7", "7", "7", "19"], False, 1, "7"),          # the solver says 7: wrong reference suspected
    ("1/2", ["0.5", "1/2", "3", "4"], True, 2, "0.5"),     # equivalent answers group together
    ("19", [None, None, None, None], False, 0, None),      # nothing readable
    ("19", ["19", None, None, None], True, 1, "19"),       # the only readable answer agrees
    ("5000", ["1/2", "1/2", "5000", "1/2"], False, 1, "1/2"),  # the coin-flip question with answer 1000 * 5
]


@pytest.mark.parametrize("answer,votes,agreed,agree,majority", MAJORITY_ROWS)
def test_majority_votes(answer, votes, agreed, agree, majority):
    got = majority_votes(answer, votes)
    assert (got["agreed"], got["agree"], got["majority"]) == (agreed, agree, majority)
    assert got["votes"] == votes and got["mode"] == "majority"


WORD_ROWS = [
    (["40", "40", "40", "40"], 1.0, False, True),   # a word problem, every vote agrees: kept
    (["40", "40", "20", "21"], 1.0, False, False),  # "20 hearts -> legs?": a plurality is not enough
    (["40", "40", "20", "21"], 1.0, True, True),    # the same votes on "What is 20 * 2?": the operation is stated
    (["40", "40", "40", None], 1.0, False, False),  # an unreadable vote counts against a word problem
    (["40", "40", "40", "9"], 0.75, False, True),   # 3 of 4 meets a 0.75 share
    (["40", "40", "20", "21"], 0.0, False, True),   # word_share 0: the plain majority rule
]


@pytest.mark.parametrize("votes,share,stated,agreed", WORD_ROWS)
def test_word_problems_need_a_share_of_the_votes(votes, share, stated, agreed):
    got = majority_votes("40", votes, share, stated)
    assert got["agreed"] is agreed and got["need"] == (0.0 if stated else share)


STATED_ROWS = [
    ("Compute 8 + 7.", True),                                   # symbols
    ("If 4 x 2 = 8, what is 10 x 2?", True),                    # x as times
    ("What is the product of 2 and 3?", True),                  # product of a and b
    ("Add 25 and 10.", True),                                   # an instruction with two numbers
    ("What is 3*5?", True),                                     # no spaces
    ("What is 7 divided by 2?", True),                          # words between the numbers
    ("Sara had 20 hearts. How many legs does she have?", False),  # one number, the operation invented
    ("Mia has 20 hours of 3D design. How many hours?", False),  # 3D is not 20 x 3
    ("There are 10 blue balls and 10 red balls. How many balls?", False),  # a word problem
    ("Five times five is what?", False),                        # numbers as words: not written out
]


@pytest.mark.parametrize("problem,stated", STATED_ROWS)
def test_states_arithmetic(problem, stated):
    from loop.proposer.gate import states_arithmetic
    assert states_arithmetic(problem) is stated


SECOND_ROWS = [
    ("19", ["19", "7"], True),          # the first program that ran agrees
    ("19", [None, "19"], True),         # the first failed to run: the next one is the second program
    ("19", ["7", "19"], False),         # the second program disagrees (a later one does not count)
    ("19", [None, None], False),        # no second program ran
    ("1/2", ["0.5"], True),             # equal values
]


@pytest.mark.parametrize("answer,outputs,agreed", SECOND_ROWS)
def test_second_program_votes(answer, outputs, agreed):
    assert second_program_votes(answer, outputs)["agreed"] is agreed


P = "<problem>{}</problem>\n<program>\n{}\n</program>"
Q1 = "Tom has 12 apples and buys 7 more. How many apples does he have?"
Q2 = "A box holds 6 pens. How many pens are in 4 boxes?"
Q3 = "Mia reads 15 pages a day. How many pages does she read in 6 days?"


def solved(n: str) -> str:
    return f"<reasoning>\nadd\n</reasoning>\n<answer>\n{n}\n</answer>\n"


Q4 = "What is 12 + 7?"


@pytest.mark.parametrize("mode,share,script,reasons,kept", [
    ("majority", 0.0, [P.format(Q1, "answer = 12 + 7"), P.format(Q2, "answer = 6 + 4"), P.format(Q3, "answer = 15 * 6"),
                  "none"] + [solved("19")] * 3 + [solved("5")]          # Q1: 3 of 4 say 19
                  + [solved("24")] * 4                                   # Q2: the solver says 24, not 10
                  + [solved("90"), solved("90"), "?", "?"],              # Q3: 2 readable votes, both 90
     ["ok", "disagree:majority", "ok", "parse:no_program"], ["19", "90"]),
    ("majority", 1.0, [P.format(Q1, "answer = 12 + 7"), P.format(Q4, "answer = 12 + 7"), "none", "none"]
                      + [solved("19")] * 3 + [solved("5")]               # Q1, a word problem: 3 of 4 is too few
                      + [solved("19")] * 3 + [solved("5")],              # Q4 states its sum: 3 of 4 keeps it
     ["disagree:majority", "ok", "parse:no_program", "parse:no_program"], ["19"]),
    ("second_program", 1.0, [P.format(Q1, "answer = 12 + 7"), P.format(Q2, "answer = 6 + 4"), "none", "none"]
                       + ["<program>\nanswer = 12 + 7\n</program>"] * 4
                       + ["<program>\nanswer = 6 * 4\n</program>"] * 4,
     ["ok", "disagree:second_program", "parse:no_program", "parse:no_program"], ["19"]),
])
def test_stage_keeps_only_agreeing_proposals(tmp_path, mode, share, script, reasons, kept):
    from loop.stages import propose
    from tests.test_proposer import CannedSampler, _ctx
    src = {"kind": "self", "count": 3, "attempts": 1, "agreement": mode, "votes": 4, "word_share": share}
    ctx = _ctx(tmp_path, [src],
               **{"sample.batch_size": 4})
    ctx.use_sampler(CannedSampler(script))
    propose.stage(ctx, 1)
    rows = ctx.store.query("SELECT reason, answer, status, agreement, votes FROM proposals ORDER BY attempt")
    assert [r["reason"] for r in rows[:4]] == reasons
    assert [r["answer"] for r in rows if r["status"] == "kept"] == kept
    judged = [r for r in rows if r["agreement"]]
    assert all(r["agreement"] == mode and len(json.loads(r["votes"])["votes"]) == 4 for r in judged)
    assert len(judged) == sum(r["reason"] in ("ok", f"disagree:{mode}") for r in rows)
