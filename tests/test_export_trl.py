"""`loop inspect export --format trl-sft|trl-grpo`: rows TRL's trainers take as they are (a real
SFTTrainer and GRPOTrainer step on them), the run's system prompt in every prompt, --round,
--messages, --force, and a card whose apply_chat_template example runs."""
from __future__ import annotations

import json
import os
import re

import pytest
from typer.testing import CliRunner

import cli
from loop.models import resolve_model
from loop.prompts import SYSTEM_PROMPT
from tests import storefix
from tests.conftest import ROOT

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("trl") / "loop.duckdb"
    storefix.populate(path)
    return path


def _export(store, out, *args):
    return runner.invoke(cli.app, ["inspect", "--store", str(store), "export", "-o", str(out), *args, "--json"])


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("args, n, columns", [
    (["--format", "trl-sft"], 3, ["prompt", "completion"]),                 # p1, p2, p3: one chain each
    (["--format", "trl-sft", "--round", "1"], 2, ["prompt", "completion"]),  # p3 has none verified in round 1
    (["--format", "trl-sft", "--round", "2"], 1, ["prompt", "completion"]),  # only p3 sampled in round 2
    (["--format", "trl-sft", "--messages"], 3, ["messages"]),               # one messages column
    (["--format", "trl-grpo"], 4, ["prompt", "answer", "problem_id", "pass_rate"]),  # every sampled problem
    (["--format", "trl-grpo", "--round", "1"], 3, ["prompt", "answer", "problem_id", "pass_rate"]),
])
def test_trl_rows_table(store, tmp_path, args, n, columns):
    import pyarrow.parquet as pq
    res = _export(store, tmp_path / "out", *args)
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "out")
    assert len(rows) == n == json.loads(res.stdout)["rows"] and all(list(r) == columns for r in rows)
    assert pq.read_table(tmp_path / "out" / "train.parquet").to_pylist() == rows  # the same rows
    for r in rows:  # the run stored no prompt.system: loop's own system message
        msgs = r.get("messages") or r["prompt"]
        assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT} and msgs[1]["role"] == "user"


@pytest.mark.parametrize("args, rates", [
    ([], {"p1": 1.0, "p2": 0.75, "p3": 0.25, "p4": None}),    # storefix's pass rates; p4 never judged
    (["--round", "1"], {"p1": 1.0, "p2": 0.75, "p3": 0.0}),   # p3: 0 of 4 in round 1 (2 of 4 in round 2)
])
def test_grpo_rows_carry_answer_and_pass_rate(store, tmp_path, args, rates):
    assert _export(store, tmp_path / "o", "--format", "trl-grpo", *args).exit_code == 0
    rows = _rows(tmp_path / "o")
    assert {r["problem_id"]: r["pass_rate"] for r in rows} == rates
    gold = {"p1": "2", "p2": "4", "p3": "6", "p4": "8"}  # storefix: "What is i + i?"
    assert {r["problem_id"]: r["answer"] for r in rows} == {pid: gold[pid] for pid in rates}


def test_sft_rows_are_the_verified_chains(store, tmp_path):
    assert _export(store, tmp_path / "o", "--format", "trl-sft").exit_code == 0
    by_q = {r["prompt"][1]["content"]: r["completion"] for r in _rows(tmp_path / "o")}
    assert set(by_q) == {"What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"}
    assert all(c[0]["role"] == "assistant" and "<answer>" in c[0]["content"] for c in by_q.values())


def test_non_empty_out_refused_unless_force(store, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = _export(store, out, "--format", "trl-grpo")
    assert res.exit_code == 2 and "is not empty; pass --force" in res.output and (out / "keep.txt").exists()
    assert _export(store, out, "--format", "trl-grpo", "--force").exit_code == 0
    assert not (out / "keep.txt").exists() and len(_rows(out)) == 4
    res = _export(store, store.parent, "--format", "trl-grpo", "--force")  # the store's own folder
    assert res.exit_code == 2 and "holds" in res.output and store.exists()


def _tiny_trainer_args(tmp_path, cls, **kw):
    from loop.trainers import trl_compat
    trl_compat.install()  # CPU torch has no Triton: TRL's fused LM head needs this fallback here, not the data
    return cls(output_dir=str(tmp_path / "t"), max_steps=1, per_device_train_batch_size=2, report_to=[],
               use_cpu=True, save_strategy="no", logging_steps=1, **kw)


@pytest.mark.parametrize("args", [["--format", "trl-sft"], ["--format", "trl-sft", "--messages"]])
def test_sft_trainer_takes_the_export_as_is(store, tmp_path, args):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    assert _export(store, tmp_path / "o", *args).exit_code == 0
    base = resolve_model("tiny:llama")
    ds = load_dataset("json", data_files=str(tmp_path / "o" / "train.jsonl"), split="train")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(base), train_dataset=ds,
                         processing_class=AutoTokenizer.from_pretrained(base),
                         args=_tiny_trainer_args(tmp_path, SFTConfig, max_length=128))
    out = trainer.train()
    assert out.global_step == 1 and out.training_loss > 0


def test_grpo_trainer_takes_the_export_as_is(store, tmp_path):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rewards import build_reward
    assert _export(store, tmp_path / "o", "--format", "trl-grpo").exit_code == 0
    base = resolve_model("tiny:llama")
    ds = load_dataset("parquet", data_files=str(tmp_path / "o" / "train.parquet"), split="train")
    seen = []

    def correctness(prompts, completions, answer, **kw):  # loop's reward, the `answer` column as TRL passes it
        seen.extend(answer)
        return build_reward("correctness", {})(prompts, completions, answer=answer)

    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(base), reward_funcs=[correctness],
                          train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(base),
                          args=_tiny_trainer_args(tmp_path, GRPOConfig, num_generations=2, max_completion_length=4))
    assert trainer.train().global_step == 1
    assert seen and set(seen) <= {"2", "4", "6", "8"}  # the gold answers reached the reward


def test_card_states_system_prompt_and_template_and_its_example_runs(tmp_path):
    system = "Think, then answer in the tags."
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={tmp_path / 'run'}", "--set", f"prompt.system={system}"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "o"
    res = _export(tmp_path / "run" / "loop.duckdb", out, "--format", "trl-grpo")
    assert res.exit_code == 0, res.output
    base = resolve_model("tiny:llama")
    assert (out / "chat_template.jinja").read_text() == (base / "chat_template.jinja").read_text()
    assert all(r["prompt"][0] == {"role": "system", "content": system} for r in _rows(out))
    readme = (out / "README.md").read_text()
    assert system in readme and "the model's own (tiny:llama)" in readme and "<|im_start|>" in readme
    code = re.search(r"```python\n(.*?)\nfrom trl", readme, re.S).group(1).replace("YOUR_MODEL", str(base))
    cwd = os.getcwd()
    os.chdir(out)
    try:
        printed = []
        exec(code, {"print": printed.append})  # the card's own example, as a user would run it
    finally:
        os.chdir(cwd)
    assert printed[0].startswith(f"<|im_start|>system\n{system}<|im_end|>") and printed[0].endswith("assistant\n")
