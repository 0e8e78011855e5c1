"""One tiny code-reasoning round end to end on the real embedded model: procedural and
model-written programs proposed, sampled, checked by execution, trained on, and evaluated on the
held-out code set."""
import json

import pytest
from typer.testing import CliRunner

import cli
from store.db import Store
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
runner = CliRunner()

SMALL = [
    "propose.sources=[{kind: code, count: 3, model_count: 1, attempts: 2, shots: 2, max_new_tokens: 96}]",
    "propose.curriculum.resample_max=0", "sample.backend=hf", "evaluate.backend=hf", "sample.group_size=2",
    "sample.max_new_tokens=64", "evaluate.max_new_tokens=64", "train.sft.max_steps=2",
    "evaluate.sets=[{name: code, kind: code, n: 3, seed: 1000003}, {name: arithmetic, kind: arithmetic, n: 3}]",
]


def test_code_round_end_to_end(tmp_path):
    sets = [x for s in [*SMALL, f"run.dir={tmp_path / 'run'}"] for x in ("--set", s)]
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "code.yaml"), *sets])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        kinds = {r["kind"] for r in st.query("SELECT kind FROM problems WHERE source = 'code'")}
        assert kinds == {"code_deduction", "code_abduction", "code_induction"}
        assert st.scalar("SELECT count(*) FROM proposals") >= 1  # the model was asked for programs
        assert st.scalar("SELECT count(*) FROM samples WHERE round = 1") >= 6
        # every sample of a code task was judged by execution: a reward value or None, never missing
        rewards = [json.loads(r["rewards"]) for r in st.query("SELECT rewards FROM samples WHERE round = 1")]
        assert all("code" in r for r in rewards)
        sets = {r["split"] for r in st.query("SELECT split FROM evaluations WHERE round = 1")}
        assert sets == {"heldout", "arithmetic"}  # the code set is the gated one
        held = json.loads(st.scalar("SELECT details FROM evaluations WHERE round = 0 AND split = 'heldout'"))
        assert all(json.loads(d["answer"])["code_task"] for d in held)
