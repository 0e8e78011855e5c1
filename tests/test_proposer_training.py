"""Proposer GRPO (`train.proposer`, loop.trainers.proposer): on-policy learnability of fresh proposals.

The reward gates each proposal like the propose stage (shots of its own prompt are duplicates),
the policy solves it, 4p(1-p) of its pass rate is the reward; the train stage runs the job from the
`proposals` table's prompts and registers the next adapter.
"""
import json

import pytest

from loop.proposer.gate import Gate, render
from loop.proposer.training import LearnabilityReward
from loop.trainers.proposer import PolicySolver, grpo_job, shot_problems
from tests.test_proposer import _ctx, _fake_run

SHOT = ("Sara had 30 stickers and gave away 9. How many stickers are left?", "answer = 30 - 9")
PROMPT = [
    {"role": "system", "content": "You write math word problems."},
    {"role": "user", "content": "Write one new problem."},
    {"role": "assistant", "content": render(*SHOT)},
    {"role": "user", "content": "Write one new problem."},
    {"role": "assistant", "content": "no tags here"},
    {"role": "user", "content": "Write one new problem."},
]


@pytest.mark.parametrize("prompt, expected", [
    (PROMPT, [SHOT[0]]),                                          # the parsed shot; an unparsable turn is skipped
    ([{"role": "user", "content": render(*SHOT)}], []),          # only the proposer's own (assistant) turns count
    ([], []),                                                     # no turns, no shots
])
def test_shot_problems(prompt, expected):
    assert shot_problems(prompt) == expected


def _reward(pass_rates):
    gate = Gate([(f"shot-{i}", t) for i, t in enumerate(shot_problems(PROMPT))])
    return LearnabilityReward(lambda q, a: pass_rates[q], gate=gate, runner=_fake_run)


def test_the_reward_is_the_learnability_of_the_policys_pass_rate():
    rates = {"Kim has 14 red pens and 9 blue pens. How many pens does she have?": 0.5,
             "Max runs 3 laps of 400 meters each day. How many meters does he run?": 0.25,
             "Zoe buys 4 bags with 25 marbles in each bag. How many marbles?": 1.0}
    completions = [
        render(list(rates)[0], "answer = 14 + 9"),     # solved half the time: 1.0
        render(list(rates)[1], "answer = 3 * 400"),    # a quarter: 4 * 0.25 * 0.75 = 0.75
        render(list(rates)[2], "answer = 4 * 25"),     # always solved: nothing to learn, 0
        render(*SHOT),                                 # a copy of the prompt's own shot: duplicate, 0
        "I like turtles.",                             # no problem at all: 0
    ]
    assert _reward(rates)([PROMPT] * 5, completions) == [1.0, 0.75, 0.0, 0.0, 0.0]


class _FakeOut:
    """Stands in for a causal LM: `generate` returns the prompt followed by fixed answers."""
    training, device = True, "cpu"

    def __init__(self, tok, answers):
        self.tok, self.answers, self.modes = tok, answers, []

    def eval(self):
        self.modes.append("eval")

    def train(self, mode=True):
        self.modes.append("train" if mode else "eval")

    def generate(self, input_ids, num_return_sequences, **kw):
        import torch
        assert num_return_sequences == len(self.answers)
        rows = [input_ids[0].tolist() + self.tok(a, add_special_tokens=False)["input_ids"] for a in self.answers]
        width = max(map(len, rows))
        return torch.tensor([r + [self.tok.pad_token_id] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("answers, gold, expected", [
    (["<answer>5</answer>"] * 4, "5", 1.0),                                     # all right
    (["<answer>5</answer>", "<answer>6</answer>", "no answer", "<answer>5.0</answer>"], "5", 0.5),  # 5.0 == 5
    (["<answer>2 + 3</answer>"] * 2, "5", 0.0),                                 # restated arithmetic is no answer
])
def test_policy_solver_counts_verified_answers(answers, gold, expected):
    from transformers import AutoTokenizer

    from loop.models import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny:llama"))
    tok.pad_token = tok.pad_token or tok.eos_token
    model = _FakeOut(tok, answers)
    settings = {"system": None, "temperature": 0.8, "solve_max_new_tokens": 16, "solves": len(answers)}
    assert PolicySolver(model, tok, settings)("What is 2 + 3?", gold) == expected
    assert model.modes == ["eval", "train"]  # answered in eval mode, put back as it was


@pytest.mark.parametrize("rows, batch, gens, expected", [
    (["a"], 4, 2, ["a", "a"]),              # one prompt, two a step: repeated
    (["a", "b"], 8, 2, ["a", "b", "a", "b"]),  # in turn
    (["a", "b", "c"], 4, 2, ["a", "b", "c"]),  # enough already: as they are
])
def test_enough_prompts_for_one_step(rows, batch, gens, expected):
    from datasets import Dataset

    from loop.trainers.proposer import enough_prompts
    ds = enough_prompts(Dataset.from_list([{"prompt": r} for r in rows]), {"batch_size": batch, "num_generations": gens})
    assert ds["prompt"] == expected


def test_the_job_reads_train_proposer_as_grpo_settings():
    from loop.config import Config
    p = Config().train.proposer.model_dump(mode="json")
    job = grpo_job({"proposer": p, "rewards": [{"name": "correctness"}]})
    assert job["rewards"] == []  # the learnability reward only
    assert {k: job["grpo"][k] for k in ("max_steps", "batch_size", "num_generations")} == {
        "max_steps": 4, "batch_size": 8, "num_generations": 4}


@pytest.mark.parametrize("sets, error", [
    (["train.proposer.batch_size=6"], "multiple of num_generations"),   # 6 proposals cannot form groups of 4
    (["train.proposer.every=-1"], "train.proposer.every"),              # a round count
    (["train.proposer.solves=0"], "train.proposer.solves"),             # at least one solver sample
])
def test_bad_proposer_settings_are_refused_at_load(sets, error):
    from loop.config import load_config
    with pytest.raises(Exception, match=error):
        load_config(None, sets)


def test_recent_prompts_are_distinct_latest_first_without_code_programs(tmp_path):
    from store import proposals
    ctx = _ctx(tmp_path, [{"kind": "self", "count": 1}])
    rows = [("a", 1, [{"role": "user", "content": "one"}], {}),
            ("b", 2, [{"role": "user", "content": "two"}], {}),
            ("c", 2, [{"role": "user", "content": "one"}], {}),              # the same prompt again, later
            ("d", 3, [{"role": "user", "content": "code"}], {"inputs": ["1"]}),  # a code-program proposal
            ("e", 4, [{"role": "user", "content": "later"}], {})]            # after the round asked for
    ctx.store.insert_rows("proposals", [{"proposal_id": pid, "run_id": ctx.run_id, "round": r, "status": "kept",
                                         "reason": "ok", "raw": "x", "prompt": prompt, "meta": meta}
                                        for pid, r, prompt, meta in rows])
    got = [json.loads(p)[0]["content"] for p in proposals.recent_prompts(ctx.store, ctx.run_id, 3, 10)]
    assert got == ["two", "one"] or got == ["one", "two"]  # round 2 both; no code, nothing after round 3
    assert len(proposals.recent_prompts(ctx.store, ctx.run_id, 3, 1)) == 1  # the limit
    ctx.close()


@pytest.mark.slow
def test_a_round_trains_the_proposer_and_registers_its_adapter(tmp_path):
    """configs/tiny.yaml with a self source and train.proposer.every=1: round 1 proposes (a tiny random
    model writes junk: every reward 0), trains SFT-less GRPO-less proposer GRPO from the stored prompts,
    and registers the adapter with its method, parent and metrics."""
    from loop.config import load_config
    from loop.runner import run_rounds
    from store.db import Store
    from tests.conftest import ROOT
    sets = [f"run.dir={tmp_path / 'run'}", "propose.sources=[{kind: self, count: 2, attempts: 2, max_new_tokens: 16}]",
            "train.sft.every=0", "train.grpo.every=0", "train.proposer.every=1", "train.proposer.max_steps=2",
            "train.proposer.batch_size=4", "train.proposer.num_generations=2", "train.proposer.max_completion_length=16",
            "train.proposer.solves=2", "train.proposer.solve_max_new_tokens=8", "evaluate.n_problems=4",
            "sample.backend=hf"]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", sets)
    run_rounds(cfg, 1).close()
    store = Store(cfg.store_path)
    models = store.query("SELECT parent, config, metrics FROM models WHERE round = 1")
    steps = store.query("SELECT stage FROM steps WHERE round = 1 AND stage LIKE 'train.%'")
    store.close()
    assert len(models) == 1
    config, metrics = json.loads(models[0]["config"]), json.loads(models[0]["metrics"])
    assert config["method"] == "proposer" and config["backend"] == "trl"
    assert metrics["steps"] == 2 and metrics["generation"] == "hf", metrics
    assert metrics["first_reward"] == 0.0  # junk proposals: the gate gives 0 before any solving
    assert {"train.sft", "train.grpo", "train.proposer"} <= {s["stage"] for s in steps}
