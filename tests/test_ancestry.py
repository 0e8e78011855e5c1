"""Proposal ancestry (migration 009): each stored proposal's `shots` are exactly the few-shot
examples its prompt showed, in order, with problem ids where the example has one."""
import hashlib
import json

import pytest

from loop.proposer import STARTERS
from loop.proposer.gate import parse
from tests.test_proposer import CannedSampler, P, _ctx, _problem, _samples

KEPT = P.format("Kim has 14 red pens and 9 blue pens. How many pens does she have?", "answer = 14 + 9")
CODE = "<program>\ndef f(x):\n    return 3 * x + 1\n</program>\n<inputs>\n1\n2\n3\n4\n5\n</inputs>"


def _verified(ctx, n):
    """n verified problems with programs in the run: a full few-shot pool of stored problems."""
    for i in range(n):
        ctx.store.insert_rows("problems", [_problem(f"v{i}", f"Verified {i}?", meta={"program": f"answer = {i}"})])
        _samples(ctx, f"v{i}", 1, 2, 1)


SCENARIOS = [  # (source, verified problems stored first, canned completion, sources the refs may have)
    ({"kind": "self", "count": 1, "attempts": 1, "shots": 4}, 0, KEPT, {"arithmetic", "starter"}),  # fill-ins only
    ({"kind": "self", "count": 1, "attempts": 1, "shots": 4}, 6, KEPT, {"arithmetic"}),  # the run's verified problems
    ({"kind": "code", "count": 1, "model_count": 1, "attempts": 1, "shots": 2}, 0, CODE, {"code"}),  # procedural
]


@pytest.mark.parametrize("src, verified, text, sources", SCENARIOS, ids=["fill-ins", "verified", "code"])
def test_recorded_shots_are_the_prompts_examples(tmp_path, src, verified, text, sources):
    from loop.stages import propose
    ctx = _ctx(tmp_path, [src])
    _verified(ctx, verified)
    ctx.use_sampler(CannedSampler([text] * 4))
    propose.stage(ctx, 2)
    rows = ctx.store.query("SELECT prompt, shots FROM proposals ORDER BY attempt")
    assert rows, "the stage stored no proposals"
    stored = {r["problem_id"]: r["question"] for r in ctx.store.query("SELECT problem_id, question FROM problems")}
    for row in rows:
        shown = [m["content"] for m in json.loads(row["prompt"]) if m["role"] == "assistant"]
        shots = json.loads(row["shots"])
        assert len(shots) == len(shown) == src["shots"]
        assert [s["sha256"] for s in shots] == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in shown]
        assert {s["source"] for s in shots} <= sources
        for s, t in zip(shots, shown):
            if s["source"] == "starter":
                assert s["problem_id"] is None and parse(t).problem in {q for q, _ in STARTERS}
            elif s["source"] == "code":
                assert s["problem_id"] is None
            elif verified:  # a stored problem: its id names the question shown
                assert stored[s["problem_id"]] == parse(t).problem
            else:  # a procedural fill-in: the id its Problem has (stored only if it is ever proposed)
                assert s["problem_id"]


def _shots_after(tmp_path, fail_first: bool):
    from loop.stages import propose
    from store.db import Store

    class Dies(CannedSampler):
        def generate(self, prompts, params, progress=None):
            raise RuntimeError("killed mid-stage")
    ctx = _ctx(tmp_path, [SCENARIOS[0][0]])
    if fail_first:  # the first attempt dies before it commits; the resumed run redoes the step
        ctx.use_sampler(Dies([]))
        with pytest.raises(RuntimeError):
            propose.stage(ctx, 1)
    ctx.use_sampler(CannedSampler([KEPT] * 4))
    propose.stage(ctx, 1)
    path = ctx.cfg.store_path
    ctx.store.close()
    with Store(path, read_only=True) as st:  # what a later reader (or resumed run) sees
        return [(r["attempt"], json.loads(r["shots"])) for r in st.query("SELECT attempt, shots FROM proposals ORDER BY attempt")]


def test_shots_are_not_lost_on_resume(tmp_path):
    """The stage writes shots with its step in one transaction: an interrupted attempt leaves none,
    the resumed one records the same shots as an uninterrupted run."""
    resumed = _shots_after(tmp_path / "a", fail_first=True)
    assert resumed and all(shots for _, shots in resumed)
    assert resumed == _shots_after(tmp_path / "b", fail_first=False)
