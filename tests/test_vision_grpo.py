"""GRPO on dashboard images with the tiny Qwen2.5-VL (CPU, TRL GRPOTrainer + PEFT, HF generate).

A job run as the daemon runs it (loop.trainers.launch.run_child): a round's vision SFT adapter
continued by `vision-grpo` on drawn dashboards, scored by `dashboard_fields` with TRL's reward
signature; and one `kind: dashboard` loop round with GRPO on (configs/dashboard.yaml).

The tiny VLM is random: it reads no dashboard, so every completion is unreadable and
`dashboard_fields` is None for all of them; a group's advantages are then zero and that reward
alone moves nothing (TRL's reference for a continued adapter is that adapter, so a KL weight
does not either). The job test therefore adds a probe reward, registered in this process, that
ranks completions by length: with it the group's advantages are real, and GRPO's update,
through the images' forward pass, must change the adapter.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from loop.config import load_config
from loop.models import resolve_model
from loop.problems.odometer import dashboard_problems
from loop.prompts import messages
from loop.trainers.chains import write_snapshot
from loop.trainers.child import train_job
from loop.trainers.launch import run_child
from loop.trainers.vision_rows import grpo_vision_examples, vision_examples, vision_job
from rewards import funcs
from store.db import Store
from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "dashboard.yaml"
runner = CliRunner()


def _cfg(tmp_path):
    return load_config(CONFIG, [
        f"run.dir={tmp_path / 'run'}", "train.sft.max_steps=2", "train.sft.batch_size=2",
        "train.sft.learning_rate=0.01", "train.grpo.max_steps=2", "train.grpo.batch_size=4",
        "train.grpo.num_generations=2", "train.grpo.max_completion_length=8",
        "train.grpo.learning_rate=0.01",
    ])


def _job(tmp_path, cfg, method, rows, parent=None):
    data = tmp_path / f"{method}.parquet"
    write_snapshot(rows, data)
    job = {"method": method, "backend": "auto", "base": str(resolve_model("tiny:qwen2.5-vl")),
           "parent_adapter": parent, "data": str(data), "out": str(tmp_path / method), "seed": 0, "threads": 1,
           "lora": cfg.train.lora.model_dump(mode="json"), method: getattr(cfg.train, method).model_dump(mode="json"),
           "rewards": [r.model_dump(mode="json") for r in cfg.verify.rewards]}
    return {**job, **vision_job(method, job, cfg)}


def _adapter(path):
    from safetensors.torch import load_file
    return load_file(str(path / "adapter_model.safetensors"))


class LengthProbe(funcs._Reward):
    """A stand-in signal for a model that reads nothing: longer completions score higher."""

    name = "length_probe"

    def one(self, text: str) -> float:
        return len(text) / 100


@pytest.mark.slow
def test_vision_grpo_job_moves_the_adapter_and_records_metrics(tmp_path, monkeypatch):
    monkeypatch.setitem(funcs.REWARDS, "length_probe", LengthProbe)
    cfg = _cfg(tmp_path)
    problems = dashboard_problems(4, [1, 2], seed=0, folder=str(tmp_path / "images"))
    metas = {f"p{i}": p.meta for i, p in enumerate(problems)}
    chains = [{"problem_id": pid, "prompt": messages(p.question, ""), "completion": [
        {"role": "assistant", "content": p.answer}]} for (pid, p) in zip(metas, problems)]
    run_child(_job(tmp_path, cfg, "sft", vision_examples(chains, metas)), tmp_path / "sft.json", threads=1)
    rows = grpo_vision_examples([{"problem_id": pid, "prompt": messages(p.question, ""), "answer": p.answer,
                                  "pass_rate": 0.0} for pid, p in zip(metas, problems)], metas)
    job = _job(tmp_path, cfg, "grpo", rows, parent=str(tmp_path / "sft"))
    job["rewards"].append({"name": "length_probe", "weight": 1.0, "params": {}})
    assert job["method"] == "vision-grpo" and job["backend"] == "trl"
    m = train_job(job)  # in this process, where the probe reward is registered
    assert m["steps"] == 2 and m["examples"] == 4 and m["generation"] == "hf" and m["backend"] == "trl"
    assert m["first_reward"] > 0 and m["last_reward"] > 0 and m["first_loss"] is not None
    assert len(m["step_times"]) == 2 and len(m["phase_steps"]["transformers.generate"]) == 2
    before, after = _adapter(tmp_path / "sft"), _adapter(tmp_path / "grpo")
    assert before.keys() == after.keys() and any("visual" in k for k in after)  # both towers carry LoRA
    assert any(not (before[k] == after[k]).all() for k in before)  # GRPO changed the SFT adapter
    assert (tmp_path / "grpo" / "tokenizer_config.json").is_file()


def test_vision_grpo_refuses_unsloth_before_training(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(ValueError, match="train.grpo.backend=trl"):
        vision_job("grpo", {"backend": "unsloth"}, cfg)


def test_grpo_rows_carry_each_problems_image(tmp_path):
    (p,) = dashboard_problems(1, [1], seed=1, folder=str(tmp_path))
    text = {"problem_id": "t", "prompt": messages("1+1?"), "answer": "2", "pass_rate": 0.5}
    row, plain = grpo_vision_examples([{**text, "problem_id": "d"}, text], {"d": json.dumps(p.meta)})
    assert row["image"] == p.meta["image"] and row["image_sha256"] == p.meta["image_sha256"]
    assert row["prompt"] == text["prompt"] and row["answer"] == "2" and row["max_side"] > 0
    assert plain["image"] is None and plain["image_sha256"] is None


@pytest.mark.slow
def test_a_dashboard_round_runs_grpo_on_the_images(tmp_path):
    src = [{"kind": "dashboard", "count": 2, "levels": [1, 2], "path": str(tmp_path / "images")}]
    ev = [{"name": "dash", "kind": "dashboard", "n": 2, "levels": [1], "path": str(tmp_path / "ev")}]
    sets = [f"run.dir={tmp_path / 'run'}", f"propose.sources={json.dumps(src)}", f"evaluate.sets={json.dumps(ev)}",
            "sample.group_size=2", "sample.max_new_tokens=8", "evaluate.max_new_tokens=8",
            "train.grpo.max_steps=1", "train.grpo.num_generations=2", "train.grpo.batch_size=2",
            "train.grpo.max_completion_length=8"]
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(CONFIG), *[a for s in sets for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        steps = {r["stage"]: json.loads(r["info"]) for r in st.query("SELECT stage, info FROM steps WHERE round = 1")}
        (model,) = st.query("SELECT model_version, config, metrics FROM models")
    grpo = steps["train.grpo"]
    assert grpo["examples"] == 2 and grpo["steps"] == 1 and grpo["generation"] == "hf"  # both dashboards trained
    assert grpo["model_version"] == model["model_version"] and "first_reward" in grpo
    assert json.loads(model["config"])["method"] == "vision-grpo"
    assert json.loads(model["metrics"])["steps"] == 1
    assert steps["train.sft"] == {"skipped": "no verified chains"}  # a random VLM reads nothing right
    assert "dash" in steps["evaluate"]["sets"]  # the GRPO adapter was evaluated on held-out dashboards
