"""The course's cases as shipped configs: each runs a real round once only `model.name` (here a tiny
model, and sizes small enough for a CPU test) is set, and trains what its case trains."""
import json

import pytest
from typer.testing import CliRunner

import cli
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()
SMALL = ["model.name=tiny:llama", "sample.backend=hf", "sample.max_new_tokens=16", "evaluate.n_problems=4",
         "evaluate.max_new_tokens=16", "train.sft.max_steps=2", "train.grpo.max_steps=1",
         "train.grpo.num_generations=2", "train.grpo.batch_size=2", "train.grpo.max_completion_length=16",
         "train.grpo.band=[-0.1, 1.1]"]  # a random tiny model solves nothing: let GRPO train anyway

CASES = [
    # config, overrides, its source shrunk, the training step that must have run (None: a random
    # tiny model verifies no chain, so s1's selection has nothing to keep; its sampling is checked)
    ("r1-gsm8k", SMALL, "[{kind: jsonl, path: data/gsm8k/train_1k.jsonl, count: 4}]", "train.grpo"),
    ("s1", [*SMALL, "sample.budget.thinking_tokens=8"], "[{kind: arithmetic, count: 4, levels: [1, 4]}]", None),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,overrides,sources,trained", CASES, ids=[c[0] for c in CASES])
def test_course_config_runs_a_round(tmp_path, monkeypatch, name, overrides, sources, trained):
    monkeypatch.chdir(ROOT)  # shipped data paths are relative to the checkout
    sets = [x for s in [*overrides, f"propose.sources={sources}", f"run.dir={tmp_path / 'run'}"]
            for x in ("--set", s)]
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / f"{name}.yaml"), *sets])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        if trained:
            info = json.loads(st.scalar("SELECT info FROM steps WHERE round = 1 AND stage = ?", [trained]))
            assert "skipped" not in info and info["examples"] > 0  # the case's own training ran
            assert st.scalar("SELECT count(*) FROM models") == 1
        if name == "s1":  # budget forcing: every sample records its thinking budget
            budgets = st.query("SELECT DISTINCT json_extract(meta, '$.thinking_budget')::INT AS b FROM samples")
            assert budgets == [{"b": 8}]
