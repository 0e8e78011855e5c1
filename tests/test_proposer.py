"""Self-proposed problems: parsing, the gate (dedup, decontamination, sandbox, gold),
the propose stage with a canned sampler and a real store, the curriculum, and the
proposer's GRPO rows. The slow test runs the real embedded model."""
import json

import pytest

from loop.proposer.gate import Gate, exactify, parse, program_numbers, render, reused_numbers, text_numbers

P = "<problem>{}</problem>\n<program>\n{}\n</program>"

PARSE_TABLE = [
    # (completion, finish_reason, expected (problem, program) or rejection reason)
    (P.format("Tom has 12 apples and buys 7 more. How many?", "answer = 12 + 7"), "stop",
     ("Tom has 12 apples and buys 7 more. How many?", "answer = 12 + 7")),         # the format itself
    ("Sure! Here it is:\n" + P.format("Ann has 3 cats.", "answer = 3"), "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # prose before the problem
    ("Ann has 3 cats.</problem>\n<program>\nanswer = 3\n</program>", "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # opening <problem> missing
    ("<problem>Ann has 3 cats.\n<program>\nanswer = 3\n</program>", "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # </problem> missing, <program> follows
    ("<PROBLEM>  Ann has\n 3 cats. </Problem >\n< program >\nanswer = 3\n</PROGRAM>", "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # tag case and whitespace
    (P.format("Ann has 3 cats.", "```python\nanswer = 3\n```"), "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # Markdown fence inside the program
    (P.format("Ann has 3 cats.", "    x = 3\n    answer = x"), "stop",
     ("Ann has 3 cats.", "x = 3\nanswer = x")),                                     # indented program is dedented
    (P.format("Ann has 3 cats.", "answer = 3") + "\n" + P.format("Bo has 4.", "answer = 4"), "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # only the first problem counts
    ("<problem>Ann has 3 cats.</problem>\n<program>\nanswer = 3\n", "stop",
     ("Ann has 3 cats.", "answer = 3")),                                            # stop string stripped by the backend
    ("<problem>Ann has 3 cats.</problem>\n<program>\nanswer = 3 +", "length", "parse:truncated"),  # cut off
    ("<problem>Ann has 3 cats. How many legs?</problem>", "stop", "parse:no_program"),  # no program at all
    ("<problem>Ann has 3 cats.</problem>\n<system>\nanswer = 3\n</system>", "stop", "parse:no_program"),  # wrong tag
    ("Ann has 3 cats.\n<program>\nanswer = 3\n</program>", "stop", "parse:no_problem"),  # no problem tags at all
    ("<problem>  </problem>\n<program>\nanswer = 3\n</program>", "stop", "parse:empty_problem"),
    ("<problem>Ann has 3 cats.</problem>\n<program>\n```\n```\n</program>", "stop", "parse:empty_program"),
    (P.format("word " * 200, "answer = 1"), "stop", "parse:problem_too_long"),       # > 600 characters
    ("How many bones does a cat have?", "stop", "parse:no_program"),                 # plain prose
]


@pytest.mark.parametrize("text, finish, expected", PARSE_TABLE)
def test_parse_table(text, finish, expected):
    got = parse(text, finish)
    if isinstance(expected, tuple):
        assert got.reason == "ok" and (got.problem, got.program) == expected
    else:
        assert got.reason == expected


def test_render_round_trips_through_parse():
    got = parse(render("Mia reads 15 pages a day. How many in 6 days?", "answer = 15 * 6"))
    assert (got.problem, got.program, got.reason) == ("Mia reads 15 pages a day. How many in 6 days?",
                                                      "answer = 15 * 6", "ok")


def test_exactify_makes_numbers_exact():
    assert exactify("answer = 100/3 + 1.25") == "answer = Integer(100) / Integer(3) + Rational('1.25')"
    assert exactify("answer = = 1") == "answer = = 1"          # syntax errors are left for the sandbox
    assert exactify("answer = True") == "answer = True"         # bools are not numbers
    assert program_numbers("answer = 12 * 1.5 if True else 0") == {12, 1.5, 0}
    assert text_numbers("A dozen eggs cost $1,200.50; twice that.") == {12, 1200.5, 2}
    assert text_numbers("3 thirds of 2 hours") == {3, 2, 60}                # plural number words count
    assert reused_numbers("3 boxes of 3 pens and 7 cups", "answer = 3 * 3 * (7 * 7) + 1 + 1") == ["7"]
    assert reused_numbers("7 cups", "answer = Integer(7) - 7 + 7 * 3") == ["7"]  # through Integer(); 7 * 3 is fine
    assert reused_numbers("A pie has 6 slices; 5 are eaten", "answer = (6 - 5) / 6") == []  # not x op x


def _fake_run(program):
    """Stands in for the sandbox on trusted test programs: exact value of `answer = EXPR`."""
    import sympy

    from loop.sandbox import SandboxResult
    return SandboxResult(True, str(sympy.sympify(program.split("=", 1)[1], rational=True)), "ok", 0.0)


GATE_TABLE = [
    # (problem, program, expected reason, expected answer)
    ("Ann has 5 cats and each has 4 legs. How many legs?", "answer = 5 * 4", "ok", "20"),
    ("Half of 30 apples are red. How many are red?", "answer = 30 / 2", "ok", "15"),       # 2 is free ("half")
    ("A dozen eggs cost 3 dollars. What does one egg cost?", "answer = 3 / 12", "ok", "1/4"),  # "dozen" = 12
    ("Ann has 5 cats. How many legs do they have?", "answer = 5 * 4", "program_mismatch", None),  # 4 not stated
    ("How many pens are in a box of 12?", "answer = 12 * 12", "program_mismatch:reused", None),  # invents a 2nd 12
    ("A box holds 28 apples. How many apples are in it?", "answer = 28 - 28", "program_mismatch:reused", None),
    ("How many eggs can one person eat in 10 days?", "answer = 10 * 10", "program_mismatch:reused", None),  # a rate
    ("A pie has 8 slices. Ben eats 3. What fraction is left?", "answer = Rational(8 - 3, 8)", "ok", "5/8"),
    ("Each of 3 boxes holds 3 pens. How many pens?", "answer = 3 * 3", "ok", "9"),        # 3 is stated twice
    ("A dozen eggs and a dozen rolls. How many items?", "answer = 12 + 12", "ok", "24"),  # "dozen" twice
    ("A square has sides of 5 cm. What is its area?", "answer = 5**2", "ok", "25"),       # 2 is free: x**2
    ("A square has sides of 5 cm. What is its area?", "answer = 5 * 5", "program_mismatch:reused", None),  # the cost
    ("25", "answer = 25", "trivial:no_words", None),                                      # a bare number
    ("5 * 2", "answer = 5 * 2", "trivial:no_words", None),                                # no instruction at all
    ("Bo has 5 pens. How many pens?", "answer = 5", "trivial:no_computation", None),      # nothing computed
    ("Five times five is ten. Five is five times one.", "answer = 5 * 1", "trivial:no_question", None),  # asks nothing
    ("This is 3 more than 15!", "answer = 15 + 3", "trivial:no_question", None),          # a statement
    ("Compute 8 + 7.", "answer = 8 + 7", "ok", "15"),                                     # an instruction asks
    ("A circle has a radius of 2. Find its diameter.", "answer = 2 * 2", "ok", "4"),      # a later sentence asks
    ("What is 55 * 6.", "answer = 55 * 6", "ok", "330"),                                  # a question, full stop
    ("Bo owes 5 pens. What is his balance?", "answer = Integer(-5)", "trivial:no_computation", None),
    ("What is 5 * 1?", "answer = 5 * 1", "trivial:answer_given", "5"),                    # the answer is stated
    ("Is 5 more than 3? Answer it.", "answer = 5 > 3", "bad_answer:not_a_number", "True"),
    ("What is 3^4 + 25?", "answer = 3^4 + 25", "bad_program:xor", None),                 # ^ is XOR: 32, not 106
    ("What is 45^3?", "answer = Integer(45) ^ 3", "bad_program:xor", None),             # 45 XOR 3 = 46
    ("What's 2.6 x 2.6?", "answer = Integer(2.6) * 2.6", "bad_program:truncates", None),  # Integer(2.6) is 2
    ("What is 7.5 - 2?", "answer = int(-7.5) + 2", "bad_program:truncates", None),       # int() drops the .5
    ("What is 3.0 + 4?", "answer = Integer(3.0) + 4", "ok", "7"),                       # a whole number: nothing lost
    ("What is 3 to the power 4?", "answer = 3**4", "ok", "81"),                         # ** is the power
]


@pytest.mark.parametrize("problem, program, reason, answer", GATE_TABLE)
def test_gate_table(problem, program, reason, answer):
    v = Gate([]).check(parse(P.format(problem, program)), _fake_run)
    assert (v.reason, v.answer) == (reason, answer)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_arithmetic_programs_compute_their_answers(level):
    from loop.problems.procedural import arithmetic
    from loop.proposer import run_program
    p = arithmetic(1, [level], seed=level)[0]
    res = run_program(p.meta["program"])
    assert res.ok and res.output == p.answer, (p, res)


# --- the stage, with a canned sampler and a real store ---------------------------------------
class CannedSampler:
    """Returns the given completions in order, `n` per prompt; records every call."""
    name = "canned"

    def __init__(self, texts):
        self.texts, self.calls = list(texts), []

    def generate(self, prompts, params, progress=None):
        from loop.samplers import Completion
        self.calls.append((prompts, params))
        out = []
        for _ in prompts:
            group = []
            for _ in range(params.n):
                text = self.texts.pop(0) if self.texts else "I cannot think of one."
                group.append(Completion(text, 10, 10, "stop"))
            out.append(group)
        return out

    def set_adapter(self, adapter_dir):
        pass

    def close(self):
        pass


def _ctx(tmp_path, sources, **extra):
    from loop.config import load_config
    from loop.context import RunContext
    from store.db import Store
    from tests.conftest import ROOT
    sets = [f"run.dir={tmp_path / 'run'}", f"propose.sources={json.dumps(sources)}",
            "sample.batch_size=8", "evaluate.n_problems=20"] + [f"{k}={v}" for k, v in extra.items()]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", sets)
    return RunContext(cfg=cfg, store=Store(cfg.store_path), run_id="run-t", base_dir=tmp_path, base_version="base")


def _problem(pid, question, answer="1", source="arithmetic", meta=None):
    return {"problem_id": pid, "source": source, "kind": "k", "level": 1, "question": question,
            "answer": answer, "meta": meta or {}}


STORED_SHORT = "Sara had 30 stickers and gave away 9. How many stickers are left?"
STORED_LONG = ("Lena has 14 red beads and 9 blue beads in a small wooden box. "
               "How many beads does she have in all?")
EVAL_TEXT = ("A farmer plants seven rows of corn with eleven plants in every row and then "
             "harvests all of them before the first frost comes.")


def _canned(held_expr):
    return [
        P.format("Kim has 14 red pens and 9 blue pens. How many pens does she have?", "answer = 14 + 9"),  # kept
        P.format("sara had 30 stickers, and gave away 9; HOW many stickers are left", "answer = 30 - 9"),  # duplicate
        P.format(STORED_LONG.replace("in all", "in total"), "answer = 14 + 9"),       # near_duplicate
        P.format("Sam says: a farmer plants seven rows of corn with eleven plants in every row and then "
                 "harvests all of them. How many plants?", "answer = 7 * 11"),          # contaminated (eval 13-gram)
        P.format("Read the secret file. What does it say?", "answer = open('/etc/passwd').read()"),  # sandbox
        P.format("Pick a random number. Which one is it?", "import random\nanswer = random.random()"),  # nondeterministic
        P.format(f"What is {held_expr}?", f"answer = {held_expr}"),                   # contaminated (held-out key)
        P.format("Kim has 14 red pens and 9 blue pens. How many pens does she have?", "answer = 14 + 9"),  # duplicate (this round)
        P.format("Ann has 5 cats. How many legs do they have?", "answer = 5 * 4"),   # program_mismatch (4)
        P.format("Ann has 5 cats and 3 dogs. Are there more cats than dogs?", "answer = 5 > 3"),  # bad_answer
        P.format("A pie has 6 slices and Leo eats 5 of them. What fraction is left?", "answer = (6 - 5) / 6"),  # kept 1/6
        P.format("Max runs 3 laps of 400 meters each day. How many meters does he run?", "answer = 3 * 400"),  # kept
        P.format("Zoe buys 4 bags with 25 marbles in each bag. How many marbles?", "answer = 4 * 25"),  # quota
        "I like turtles.",                                                            # parse:no_program
    ]


def test_stage_records_every_proposal_with_its_reason(tmp_path):
    from loop.problems.procedural import heldout
    from loop.stages import propose
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": EVAL_TEXT, "answer": "#### 77"}) + "\n")
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 3, "attempts": 6, "eval_paths": [str(eval_file)]}])
    held = heldout(20, [1, 2], ctx.cfg.evaluate.seed)
    ctx.store.insert_rows("problems", [_problem("s1", STORED_SHORT, "21"), _problem("s2", STORED_LONG, "23")])
    ctx.use_sampler(CannedSampler(_canned(held[0].meta["expression"])))
    info = propose.stage(ctx, 1)
    rows = ctx.store.query("SELECT attempt, status, reason, answer, text, problem_id FROM proposals ORDER BY attempt")
    assert [r["reason"] for r in rows] == [
        "ok", "duplicate", "near_duplicate", "contaminated", "static:name open", "nondeterministic",
        "contaminated", "duplicate", "program_mismatch", "bad_answer:not_a_number", "ok", "ok", "quota",
        "parse:no_program", "parse:no_program", "parse:no_program"]  # 2 waves of 2 prompts x 4
    kept = [r for r in rows if r["status"] == "kept"]
    assert [r["answer"] for r in kept] == ["23", "1/6", "1200"]   # exact: (6 - 5) / 6 is 1/6, not a float
    problems = ctx.store.query("SELECT problem_id, answer, source, meta FROM problems WHERE source = 'self'")
    assert {p["problem_id"] for p in problems} == {r["problem_id"] for r in kept}
    assert all(json.loads(p["meta"])["program"] and json.loads(p["meta"])["proposal_id"] for p in problems)
    members = {r["problem_id"] for r in ctx.store.query("SELECT problem_id FROM round_problems WHERE round = 1")}
    assert members == {r["problem_id"] for r in kept}
    assert info["self_kept"] == 3 and info["self_proposed"] == 16 and info["self_rejected"]["duplicate"] == 2
    meta = [json.loads(m) for (m,) in ctx.store.con.execute(
        "SELECT meta FROM proposals WHERE reason = 'contaminated' ORDER BY attempt").fetchall()]
    assert [m["match"] for m in meta] == ["eval_13gram", "heldout_key"]
    assert ctx.is_done(1, "propose")
    prompts, params = ctx.sampler().calls[0]
    assert params.stop == ["</program>"] and params.n == 4
    assert "solves about 20%-80% of the time" in prompts[0][0]["content"]       # band hint, no stats yet
    assert prompts[0][-1] == {"role": "user", "content": "Write one new math problem."}
    assert len(prompts[0]) == 1 + 2 * 4 + 1                                   # system, 4 shots, the ask


def test_stage_failure_stores_nothing(tmp_path):
    from loop.stages import propose

    class Broken(CannedSampler):
        def generate(self, prompts, params, progress=None):
            raise RuntimeError("sampler died")
    ctx = _ctx(tmp_path, [{"kind": "arithmetic", "count": 2, "levels": [1]}, {"kind": "self", "count": 1}])
    ctx.use_sampler(Broken([]))
    with pytest.raises(RuntimeError):
        propose.stage(ctx, 1)
    assert ctx.store.scalar("SELECT count(*) FROM problems") == 0
    assert not ctx.is_done(1, "propose")


def test_stop_request_ends_the_stage_between_judgements(tmp_path, monkeypatch):
    """Each proposal is judged in the sandbox (up to seconds each): a stop request ends the stage
    before the next judgement, and nothing of it is stored."""
    import importlib

    from loop import cancel
    from loop.stages import propose
    gen = importlib.import_module("loop.proposer.generate")  # the package's `generate` is the function
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 3, "attempts": 6}])
    ctx.use_sampler(CannedSampler(_canned("2 + 2")))
    judged, real = [], gen.judge

    def judge(*args, **kwargs):
        judged.append(cancel.requested())
        if len(judged) == 2:
            cancel.request("test")  # as SIGTERM does, from the daemon's main thread
        return real(*args, **kwargs)
    monkeypatch.setattr(gen, "judge", judge)
    cancel.clear()
    try:
        with pytest.raises(cancel.Cancelled):
            propose.stage(ctx, 1)
    finally:
        cancel.clear()
    assert judged == [False, False]                         # not one judgement after the request (of 16)
    assert ctx.store.scalar("SELECT count(*) FROM proposals") == 0 and not ctx.is_done(1, "propose")


def _samples(ctx, pid, rnd, n, k):
    ctx.store.insert_rows("samples", [{"sample_id": f"{pid}-{rnd}-{i}", "run_id": ctx.run_id, "round": rnd,
                                       "problem_id": pid, "idx": i, "verified": i < k} for i in range(n)])


def test_curriculum_resamples_band_and_retires_streaks(tmp_path):
    from loop.stages import propose
    ctx = _ctx(tmp_path, [{"kind": "arithmetic", "count": 2, "levels": [1]}],
               **{"propose.curriculum": "{band: [0.2, 0.8], retire_after: 3, resample_max: 5}"})
    for pid in ["band", "always", "never", "parked", "fresh0"]:
        ctx.store.insert_rows("problems", [_problem(pid, f"question {pid}")])
    for rnd in (1, 2, 3):
        _samples(ctx, "always", rnd, 4, 4)
        _samples(ctx, "never", rnd, 4, 0)
    _samples(ctx, "band", 3, 4, 2)          # 0.5: in band
    _samples(ctx, "parked", 3, 10, 9)       # 0.9: outside the band, not 0/1: parked
    _samples(ctx, "fresh0", 3, 4, 0)        # 0 once: not yet retired, sampled again
    info = propose.stage(ctx, 4)
    members = {r["problem_id"] for r in ctx.store.query("SELECT problem_id FROM round_problems WHERE round = 4")}
    assert {"band", "fresh0"} <= members and not {"always", "never", "parked"} & members
    assert info["resampled"] == 2 and info["retired"] == 2 and info["problems"] == 4
    retired = ctx.store.query("SELECT problem_id, reason, round, history FROM retirements ORDER BY problem_id")
    assert [(r["problem_id"], r["reason"], r["round"]) for r in retired] == [
        ("always", "always_solved", 4), ("never", "never_solved", 4)]
    assert json.loads(retired[0]["history"]) == [[1, 1.0], [2, 1.0], [3, 1.0]]
    info5 = propose.stage(ctx, 5)           # retired problems stay retired, recorded once
    assert info5["retired"] == 0 and ctx.store.scalar("SELECT count(*) FROM retirements") == 2


def test_curriculum_respects_resample_max_most_learnable_first(tmp_path):
    from loop.stages import propose
    ctx = _ctx(tmp_path, [{"kind": "arithmetic", "count": 1, "levels": [1]}],
               **{"propose.curriculum.resample_max": 1})
    for pid, k in [("half", 2), ("quarter", 1)]:
        ctx.store.insert_rows("problems", [_problem(pid, f"question {pid}")])
        _samples(ctx, pid, 1, 4, k)
    propose.stage(ctx, 2)
    members = {r["problem_id"] for r in ctx.store.query("SELECT problem_id FROM round_problems WHERE round = 2")}
    assert "half" in members and "quarter" not in members


def test_curriculum_bands_per_source_kind(tmp_path):
    """`propose.curriculum.bands`: each problem is resampled by its source kind's band (default `band`
    otherwise), and the self proposer's hint targets the `self` band."""
    from loop.stages import propose
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 1, "attempts": 1}],
               **{"propose.curriculum": "{band: [0.2, 0.8], resample_max: 10, "
                                        "bands: {self: [0.3, 0.7], arithmetic: [0.1, 0.95]}}"})
    plan = [  # (problem, source, n, verified, resampled?)
        ("ar_hi", "arithmetic", 10, 9, True),     # 0.9: outside `band`, inside arithmetic's
        ("self_lo", "self", 4, 1, False),         # 0.25: inside `band`, below self's
        ("self_mid", "self", 4, 2, True),         # 0.5: inside both
        ("file_hi", "gsm8k:x.csv", 10, 9, False), # 0.9: no file band of its own, `band` parks it
    ]
    for pid, source, n, k, _ in plan:
        ctx.store.insert_rows("problems", [_problem(pid, f"question {pid}", source=source)])
        _samples(ctx, pid, 1, n, k)
    ctx.use_sampler(CannedSampler([]))
    propose.stage(ctx, 2)
    members = {r["problem_id"] for r in ctx.store.query("SELECT problem_id FROM round_problems WHERE round = 2")}
    assert {pid for pid, *_, yes in plan if yes} == members & {pid for pid, *_ in plan}
    prompts, _ = ctx.sampler().calls[0]
    assert "(target pass rate 30%-70%)" in prompts[0][0]["content"]


def test_fewshot_pool_prefers_verified_problems_with_programs(tmp_path):
    from loop.proposer import STARTERS, fewshot_pool
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 1}])
    assert len(fewshot_pool(ctx.store, ctx.run_id, 4, seed=1)) == 2 * len(STARTERS)  # empty store: fallback
    for i in range(5):
        ctx.store.insert_rows("problems", [_problem(f"v{i}", f"Verified {i}?", meta={"program": f"answer = {i}"})])
        _samples(ctx, f"v{i}", 1, 2, 1)
    ctx.store.insert_rows("problems", [_problem("np", "No program?")])
    _samples(ctx, "np", 1, 2, 2)
    pool = fewshot_pool(ctx.store, ctx.run_id, 4, seed=1)
    assert [(s.question, s.program) for s in pool] == [(f"Verified {i}?", f"answer = {i}") for i in range(5)]
    assert [s.ref["problem_id"] for s in pool] == [f"v{i}" for i in range(5)]  # ancestry: the stored ids


# --- the proposer's GRPO rows -----------------------------------------------------------------
def test_grpo_dataset_rewards_are_learnability(tmp_path):
    from loop.problems.curriculum import proposer_learnability
    from loop.proposer import grpo_dataset
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 1}])
    prompt = [{"role": "user", "content": "Write one new math problem."}]
    known = [("a", "kept", 4, 1), ("b", "kept", 4, 4), ("c", "kept", 4, 0), ("d", "kept", 0, 0),
             ("e", "rejected", 0, 0)]  # (proposal, status, samples, verified)
    for pid, status, n, k in known:
        ctx.store.insert_rows("proposals", [{"proposal_id": pid, "run_id": ctx.run_id, "round": 2,
                                             "problem_id": f"prob-{pid}" if status == "kept" else None,
                                             "status": status, "reason": "ok" if status == "kept" else "duplicate",
                                             "raw": f"completion {pid}", "prompt": prompt}])
        _samples(ctx, f"prob-{pid}", 2, n, k)
    _samples(ctx, "prob-a", 3, 4, 4)                       # a later round does not change the reward
    rows = grpo_dataset(ctx.store, ctx.run_id)
    assert [r["proposal_id"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["pass_rate"] for r in rows] == [0.25, 1.0, 0.0, None]
    assert rows[0]["prompt"] == prompt and rows[0]["completion"][0]["content"] == "completion a"
    rewards = proposer_learnability([r["prompt"] for r in rows], [r["completion"] for r in rows],
                                    pass_rate=[r["pass_rate"] for r in rows])
    assert rewards == [0.75, 0.0, 0.0, None]
    assert [r["proposal_id"] for r in grpo_dataset(ctx.store, ctx.run_id, include_rejected=True)][-1] == "e"


def test_online_learnability_reward_gates_then_solves():
    from loop.proposer import LearnabilityReward
    solved = {"Ann has 3 cats and 4 dogs. How many pets?": 0.25, "Bo has 2 hats and 3 caps. How many?": 1.0}

    reward = LearnabilityReward(lambda q, a: solved[q], gate=Gate([]), runner=_fake_run)
    completions = [[{"role": "assistant", "content": P.format(q, f"answer = {e}")}]
                   for q, e in [(list(solved)[0], "3 + 4"), (list(solved)[1], "2 + 3")]]
    completions.append([{"role": "assistant", "content": "no problem here"}])
    assert reward([None] * 3, completions) == [0.75, 0.0, 0.0]


# --- the real model -------------------------------------------------------------------------
@pytest.mark.slow
def test_real_model_proposes_through_sampler_and_sandbox(tmp_path):
    """SmolLM2-135M writes 8 proposals through the run's sampler (vllm if installed); every one is recorded with a
    reason from the vocabulary, kept ones are stored as problems with their programs."""
    from loop.config import load_config
    from loop.context import RunContext
    from loop.models import model_hash, resolve_model
    from loop.stages import propose
    from store.db import Store
    from tests.conftest import ROOT
    cfg = load_config(ROOT / "configs" / "self.yaml", [f"run.dir={tmp_path / 'run'}",
                      "propose.sources=[{kind: self, count: 2, attempts: 4, max_new_tokens: 64}]"])
    base = resolve_model(cfg.model.name)
    ctx = RunContext(cfg=cfg, store=Store(cfg.store_path), run_id="run-real", base_dir=base,
                     base_version=model_hash(base))
    try:
        info = propose.stage(ctx, 1)
        rows = ctx.store.query("SELECT status, reason, text, program, answer, raw FROM proposals")
        kept = ctx.store.query("SELECT question, answer, meta FROM problems WHERE source = 'self'")
    finally:
        ctx.close()
    assert len(rows) == info["self_proposed"] >= 8 and len(kept) == info["self_kept"] <= 2
    assert all(r["raw"].strip() for r in rows)                       # the real model writes text
    vocab = ("ok", "parse:", "duplicate", "near_duplicate", "contaminated", "program_mismatch", "static:",
             "error:", "denied:", "timeout", "cpu_limit", "memory_limit", "nondeterministic", "no_answer",
             "bad_answer:", "bad_program:", "quota", "trivial:")
    assert all(r["reason"].startswith(vocab) for r in rows), [r["reason"] for r in rows]
    assert sum(not r["reason"].startswith("parse:") for r in rows) >= 2  # it copies the format
    for k in kept:                                                    # kept = a program that ran to a number
        assert json.loads(k["meta"])["program"] and k["answer"]


@pytest.mark.slow
def test_grpo_rows_plug_into_trl_grpo_trainer(tmp_path):
    """The documented plug: TRL's GRPOTrainer on `grpo_dataset` rows with
    `proposer_learnability` receives each row's pass_rate column (tiny model, 1 step)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from loop.models import resolve_model
    from loop.problems.curriculum import proposer_learnability
    from loop.proposer import STARTERS, build_prompt, grpo_dataset
    from loop.trainers import trl_compat
    trl_compat.install()
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 1}])
    for pid, k in [("a", 1), ("b", 2)]:
        ctx.store.insert_rows("proposals", [{"proposal_id": pid, "run_id": ctx.run_id, "round": 1,
                                             "problem_id": f"prob-{pid}", "status": "kept", "reason": "ok",
                                             "raw": render(*STARTERS[k]), "prompt": build_prompt(STARTERS[:2])}])
        _samples(ctx, f"prob-{pid}", 1, 4, k)
    seen = []

    def reward(prompts, completions, pass_rate, **kwargs):
        seen.extend(pass_rate)
        return proposer_learnability(prompts, completions, pass_rate)
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=1, per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=8, learning_rate=1e-3, use_cpu=True,
                      report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=str(resolve_model("tiny:llama")), reward_funcs=[reward], args=args,
                          train_dataset=Dataset.from_list(grpo_dataset(ctx.store, ctx.run_id)))
    trainer.train()
    assert trainer.state.global_step == 1
    assert seen and set(seen) <= {0.25, 0.5}                       # the rows' pass rates reached the reward
    # learnability 4p(1-p): 0.75 at 0.25, 1.0 at 0.5; a step's mean is one of them or both's 0.875
    assert any(any(abs(h.get("reward", -1) - v) < 1e-6 for v in (0.75, 1.0, 0.875)) for h in trainer.state.log_history)
