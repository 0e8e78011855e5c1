"""One loop round on the dashboard task with the tiny Qwen2.5-VL: problems drawn as images (path and
hash stored), completions sampled with HF generate on the images, scored by the field reward, and
a verified reading trained on by vision SFT (rejection-sampling SFT) as the round's new adapter."""
from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

import cli
from loop.config import load_config
from loop.models import resolve_model
from loop.prompts import messages
from loop.runner import open_run
from loop.stages import STAGES
from loop.vlm import load_processor
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()


CONFIG = ROOT / "configs" / "dashboard.yaml"


def _sets(tmp_path):
    """configs/dashboard.yaml made small: 2 dashboards, groups of 2, 8 tokens, 1 SFT step, no GRPO."""
    src = [{"kind": "dashboard", "count": 2, "levels": [1, 3], "path": str(tmp_path / "images")}]
    ev = [{"name": "dash", "kind": "dashboard", "n": 2, "levels": [1], "path": str(tmp_path / "ev")}]
    return [f"run.dir={tmp_path / 'run'}", f"propose.sources={json.dumps(src)}", f"evaluate.sets={json.dumps(ev)}",
            "sample.group_size=2", "sample.max_new_tokens=8", "evaluate.max_new_tokens=8",
            "train.sft.max_steps=1", "train.sft.batch_size=1", "train.grpo.every=0"]  # GRPO: test_vision_grpo


def test_a_round_samples_and_scores_dashboard_images(tmp_path):
    args = [a for s in _sets(tmp_path) for a in ("--set", s)]
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(CONFIG), *args])
    assert res.exit_code == 0, res.output
    db = tmp_path / "run" / "loop.duckdb"
    with Store(db, read_only=True) as st:
        problems = st.query("SELECT problem_id, question, answer, meta FROM problems WHERE kind = 'dashboard'")
        samples = st.query("SELECT sample_id, prompt_tokens, rewards FROM samples ORDER BY sample_id")
        (ev,) = st.query("SELECT info FROM steps WHERE round = 1 AND stage = 'evaluate'")
    assert len(problems) == 2 and len(samples) == 4  # 2 problems x group_size 2 (held-out dashboards not stored)
    fields = json.loads(ev["info"])["sets"]["dash"]["fields"]  # held-out evaluation per field
    assert set(fields) == {"odometer", "trip", "speed", "clock", "temperature", "gear"}
    assert all(0.0 <= v <= 1.0 for v in fields.values())
    for p in problems:
        meta = json.loads(p["meta"])
        data = open(meta["image"], "rb").read()
        assert hashlib.sha256(data).hexdigest()[:16] == meta["image_sha256"]  # the stored hash is the file's
        assert meta["difficulty"] in (0, 2) and p["answer"].startswith("odometer: ")
    proc = load_processor(resolve_model("tiny:qwen2.5-vl"))
    text_only = len(proc.tokenizer(proc.apply_chat_template(messages(problems[0]["question"]), tokenize=False,
                                                            add_generation_prompt=True))["input_ids"])
    assert all(s["prompt_tokens"] > text_only + 20 for s in samples)  # the image's tokens were in the prompt
    assert all(set(json.loads(s["rewards"])) == {"dashboard_fields"} for s in samples)
    shown = runner.invoke(cli.app, ["inspect", "--store", str(db), "show", samples[0]["sample_id"]])
    assert shown.exit_code == 0 and "image" in shown.output and "sha256" in shown.output, shown.output


def test_a_verified_reading_trains_the_vlm_in_the_round(tmp_path):
    cfg = load_config(CONFIG, _sets(tmp_path))
    ctx = open_run(cfg, new_run=True)
    try:
        STAGES["propose"](ctx, 1)
        (p,) = ctx.store.query("SELECT problem_id, answer FROM problems ORDER BY problem_id LIMIT 1")
        # A teacher's exact reading of the first dashboard (stands in for a lucky sample), and a wrong one.
        _sample(ctx, p["problem_id"], 0, p["answer"])
        _sample(ctx, p["problem_id"], 1, p["answer"].replace("gear:", "gear: X"))
        STAGES["verify"](ctx, 1)
        verdicts = ctx.store.query("SELECT idx, verified, reward_total FROM samples ORDER BY idx")
        assert [(v["idx"], v["verified"]) for v in verdicts] == [(0, True), (1, False)]
        assert verdicts[1]["reward_total"] == 5 / 6  # five of six fields right
        info = STAGES["train"](ctx, 1)
        (model,) = ctx.store.query("SELECT config, metrics, path FROM models")
    finally:
        ctx.close()
    assert info["sft"]["examples"] == 1 and json.loads(model["config"])["method"] == "vision"
    assert json.loads(model["metrics"])["steps"] == 1
    (row,) = pq.read_table(tmp_path / "run" / "train" / "round-001-sft" / "data.parquet").to_pylist()
    assert row["images"][0].endswith(".png") and len(row["image_sha256"][0]) == 16  # the chain kept its image
    assert json.loads(row["messages"])[-2]["content"][0] == {"type": "image"}


def _sample(ctx, pid, idx, completion):
    ctx.store.insert_rows("samples", [{
        "sample_id": f"{pid[:8]}-{idx}", "run_id": ctx.run_id, "round": 1, "problem_id": pid, "idx": idx,
        "model_version": "teacher", "model_parent": None, "loop_version": "test", "backend": "teacher",
        "sampling": {}, "prompt_version": "test", "completion": completion, "prompt_tokens": 0,
        "completion_tokens": 0, "finish_reason": "stop"}])
