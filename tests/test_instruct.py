"""`loop sft`: instruction SFT through the training child, recorded as a model version with the
data's provenance, held-out loss and fixed prompts before/after; exportable; bad data refused
before the store is opened."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from loop.config import load_config
from loop.instruct import split
from loop.trainers.instruct import instruct_args
from loop.trainers.rows import to_row
from store.db import Store
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "data"
runner = CliRunner()


def _alpaca_file(tmp_path, n=24):
    rows = [{"instruction": f"Say {i}", "input": "" if i % 2 else "loudly", "output": f"I say {i}."} for i in range(n)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    return tmp_path / "a.json"


def _sft(tmp_path, cfg, path, *extra):
    src = json.dumps([{"kind": "file", "path": str(path), "format": "alpaca"}])
    return runner.invoke(cli.app, ["sft", "-c", str(cfg), "--set", f"run.dir={tmp_path / 'run'}",
                                   "--set", f"instruct.sources={src}", "--set", "instruct.max_steps=2",
                                   "--set", "instruct.heldout=4", "--set", "instruct.max_new_tokens=4", *extra])


def test_split_is_seeded_and_disjoint():
    convs = [{"i": i} for i in range(50)]
    train, held = split(convs, 8, seed=3407)
    assert len(held) == 8 and len(train) == 42 and not {c["i"] for c in train} & {c["i"] for c in held}
    assert split(convs, 8, seed=3407) == (train, held) and split(convs, 8, seed=1)[1] != held


@pytest.mark.parametrize("template, expected", [
    ("chat", {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Add\n\n1 2"}],
              "completion": [{"role": "assistant", "content": "3"}]}),        # conversational prompt/completion
    ("alpaca", {"prompt": "S\n\n### Instruction:\nAdd\n\n### Input:\n1 2\n\n### Response:\n",
                "completion": "3"}),                                           # Alpaca text, system as preamble
])
def test_rows_for_each_template(template, expected):
    conv = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Add\n\n1 2"},
                         {"role": "assistant", "content": "3"}]}
    assert to_row(conv, template) == expected


def test_course_defaults_reach_the_trainer(tmp_path):
    cfg = load_config()
    job = {"tmp": str(tmp_path), "seed": cfg.instruct.seed, "instruct": cfg.instruct.model_dump(mode="json")}
    args = instruct_args(job, cuda=False)
    got = {k: args[k] for k in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                                "warmup_steps", "learning_rate", "lr_scheduler_type", "weight_decay", "seed", "optim")}
    assert got == {"max_steps": 60, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                   "warmup_steps": 5, "learning_rate": 2e-4, "lr_scheduler_type": "linear", "weight_decay": 0.01,
                   "seed": 3407, "optim": "adamw_torch"}  # adamw_8bit needs a GPU


@pytest.mark.parametrize("template", ["chat", "alpaca"])
def test_loop_sft_records_an_exportable_model(tmp_path, template):
    res = _sft(tmp_path, ROOT / "configs" / "tiny.yaml", _alpaca_file(tmp_path),
               "--set", f"instruct.template={template}")
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        (row,) = st.query("SELECT * FROM models")
    config, metrics = json.loads(row["config"]), json.loads(row["metrics"])
    assert config["method"] == "instruct" and config["template"] == template
    assert (config["train_rows"], config["heldout_rows"]) == (20, 4)
    (f,) = config["data"][0]["files"]
    assert f["encoding"] == "utf-8" and f["rows"] == 24 and len(f["sha256"]) == 64
    assert metrics["steps"] == 2 and metrics["heldout_loss_before"] > 0 and metrics["heldout_loss_after"] > 0
    assert len(metrics["prompts"]) == 3 and all({"prompt", "before", "after"} <= set(p) for p in metrics["prompts"])
    shown = runner.invoke(cli.app, ["inspect", "--store", str(tmp_path / "run" / "loop.duckdb"), "sft", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)[0]["model_version"] == row["model_version"]
    out = runner.invoke(cli.app, ["export", "model", "--store", str(tmp_path / "run" / "loop.duckdb"),
                                  "--format", "lora", "--out", str(tmp_path / "lora")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()


def test_bad_instruct_data_fails_before_the_store(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "x"}]))
    res = _sft(tmp_path, ROOT / "configs" / "tiny.yaml", tmp_path / "a.json")
    assert res.exit_code == 2 and "a.json:1: field 'output' missing or empty" in res.output, res.output
    assert not (tmp_path / "run").exists()


def test_no_sources_is_a_clear_error(tmp_path):
    res = runner.invoke(cli.app, ["sft", "-c", str(ROOT / "configs" / "tiny.yaml"), "--set", f"run.dir={tmp_path}/r"])
    assert res.exit_code == 2 and "instruct.sources is empty" in res.output


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="shared test data not present")
def test_medical_sft_on_the_real_model_lowers_heldout_loss(tmp_path):
    """The real embedded model, the GBK medical CSV: 8 steps lower the held-out loss."""
    from loop.instruct import run_sft
    cfg = load_config(ROOT / "configs" / "medical.yaml",
                      [f"run.dir={tmp_path / 'run'}", "instruct.max_steps=8", "instruct.heldout=8",
                       "instruct.max_new_tokens=16", "instruct.max_seq_len=256",
                       "instruct.prompts=[我最近总是感觉头晕，应该怎么办？]"])
    cfg.instruct.sources[0].path = str(DATA / "medical" / "Data_数据")
    cfg.instruct.sources[0].limit = 80
    info = run_sft(cfg)
    assert info["heldout_loss_after"] < info["heldout_loss_before"]
    assert info["data"][0]["files"][0]["encoding"] == "gb18030"
    (p,) = info["prompts"]
    assert p["prompt"] == "我最近总是感觉头晕，应该怎么办？" and p["before"] and p["after"]
