"""Train stage: chain selection and repair, and real TRL SFT + PEFT LoRA in a child process."""
import json

import pytest

from loop.trainers.chains import data_hash, repair, select_chains


def _row(pid, completion, strict, extracted="85", answer="85", q="What is 47 + 38?"):
    return {"problem_id": pid, "completion": completion, "extracted": extracted, "answer": answer,
            "question": q, "strict": strict}


SELECT_TABLE = [
    # (rows, expected target per problem)
    ([_row("a", "long chain 47 + 38 = 85", False), _row("a", "47+38=85", False)],
     {"a": "<reasoning>\n47+38=85\n</reasoning>\n<answer>\n85\n</answer>\n"}),        # shortest wins, repaired
    ([_row("a", "x = 85", False), _row("a", "<reasoning>\nlonger but formatted\n</reasoning>\n<answer>\n85\n</answer>\n", True)],
     {"a": "<reasoning>\nlonger but formatted\n</reasoning>\n<answer>\n85\n</answer>\n"}),  # well-formed beats shorter
    ([_row("a", "So 85. Then I rambled 12 more", False)],
     {"a": "<reasoning>\nSo 85\n</reasoning>\n<answer>\n85\n</answer>\n"}),           # cut after the answer's last mention... of 85
    ([_row("a", "47+38=85", False), _row("b", "10*3=30", False, "30", "30")],
     {"a": "<reasoning>\n47+38=85\n</reasoning>\n<answer>\n85\n</answer>\n",
      "b": "<reasoning>\n10*3=30\n</reasoning>\n<answer>\n30\n</answer>\n"}),          # one example per problem
]


@pytest.mark.parametrize("rows, expected", SELECT_TABLE)
def test_select_chains(rows, expected):
    got = {e["problem_id"]: e["completion"][0]["content"] for e in select_chains(rows)}
    assert got == expected
    for e in select_chains(rows):
        assert e["prompt"][-1] == {"role": "user", "content": "What is 47 + 38?"} or e["problem_id"] == "b"


def _cand(pid, kind, pass_rate, strict=True):
    return {"problem_id": pid, "kind": kind, "pass_rate": pass_rate, "strict": strict}


S1_TABLE = [
    # (candidates, n, quality, max_pass_rate, expected ids)
    ([_cand("a", "add", 0.5), _cand("b", "add", 0.25), _cand("c", "add", 0.75)], 2, True, 1.0,
     ["a", "b"]),                                           # difficulty: the two hardest of one kind
    ([_cand("a", "add", 0.1), _cand("b", "add", 0.2), _cand("c", "add", 0.3), _cand("m", "mul", 0.9)], 2, True, 1.0,
     ["a", "m"]),                                           # diversity: each kind's hardest before a second add
    ([_cand("a", "add", 0.1, strict=False), _cand("b", "add", 0.5)], 2, True, 1.0,
     ["b"]),                                                # quality: a repaired chain is left out
    ([_cand("a", "add", 0.1, strict=False), _cand("b", "add", 0.5)], 2, False, 1.0,
     ["a", "b"]),                                           # ... unless quality is off
    ([_cand("a", "add", 1.0), _cand("b", "add", 0.75)], 5, True, 0.8,
     ["b"]),                                                # too easy (solved every time) dropped; n > pool
    ([_cand("a", None, 0.5), _cand("b", "mul", 0.5)], 1, True, 1.0,
     None),                                                 # one pick, kinds' order seeded: either id
]


@pytest.mark.parametrize("cands, n, quality, max_pr, expected", S1_TABLE)
def test_s1_select(cands, n, quality, max_pr, expected):
    from loop.trainers.chains import s1_select
    got = s1_select(cands, n, quality, max_pr, seed=3)
    if expected is None:
        assert len(got) == 1 and got[0] in {"a", "b"}
    else:
        assert got == expected
    assert s1_select(cands, n, quality, max_pr, seed=3) == got  # deterministic for a seed


def test_select_chains_with_s1_config():
    from loop.config import SelectSettings
    rows = [{**_row(f"p{i}", f"<reasoning>\n{i}\n</reasoning>\n<answer>\n85\n</answer>\n", True),
             "kind": "add" if i < 6 else "mul", "pass_rate": i / 10} for i in range(1, 9)]
    out = select_chains(rows, SelectSettings(n=3), seed=0)
    got = sorted(e["problem_id"] for e in out)
    assert len(got) == 3 and {"p1", "p6"} <= set(got)        # each kind's hardest, then one more
    assert [e["problem_id"] for e in select_chains(rows, SelectSettings(n=0))] == [f"p{i}" for i in range(1, 9)]


def test_repair_without_extraction_keeps_text():
    assert repair("no number here", None, "7") == "<reasoning>\nno number here\n</reasoning>\n<answer>\n7\n</answer>\n"


def test_data_hash_is_stable_and_content_sensitive():
    ex = select_chains([_row("a", "47+38=85", False)])
    assert data_hash(ex) == data_hash(json.loads(json.dumps(ex)))
    assert data_hash(ex) != data_hash(select_chains([_row("a", "47 + 38 = 85", False)]))


def _examples(n=8):
    rows = [_row(f"p{i}", f"{i} + {i} = {2 * i}", False, str(2 * i), str(2 * i), f"What is {i} + {i}?")
            for i in range(10, 10 + n)]
    return select_chains(rows)


def _job(tmp_path, base, parent=None, steps=3, method="sft", examples=None, out=None):
    from loop.config import Config
    from loop.trainers.chains import write_snapshot
    cfg = Config().train
    cfg.sft.max_steps = cfg.grpo.max_steps = steps
    cfg.sft.batch_size, cfg.sft.max_seq_len, cfg.sft.learning_rate = 2, 128, 1e-2
    cfg.grpo.num_generations, cfg.grpo.batch_size, cfg.grpo.max_completion_length = 2, 2, 16
    cfg.grpo.learning_rate = 1e-2
    write_snapshot(examples or _examples(), tmp_path / f"{method}.parquet")
    return {"method": method, "backend": "trl", "base": str(base), "parent_adapter": parent,
            "data": str(tmp_path / f"{method}.parquet"),
            "out": str(tmp_path / (out or ("out2" if parent else "out"))), "seed": 0, "threads": 1,
            "lora": cfg.lora.model_dump(mode="json"), method: getattr(cfg, method).model_dump(mode="json"),
            "rewards": [r.model_dump(mode="json") for r in Config().verify.rewards]}


def _adapter_tensors(path):
    from safetensors.torch import load_file
    return load_file(str(path / "adapter_model.safetensors"))


def test_sft_child_process_trains_every_lora_parameter(tmp_path):
    """Real TRL SFTTrainer + PEFT LoRA on the tiny model, run as the daemon runs it."""
    from loop.models import resolve_model
    from loop.trainers.launch import run_child
    base = resolve_model("tiny:llama")
    job = _job(tmp_path, base)
    m = run_child(job, tmp_path / "job.json", threads=1)
    assert m["steps"] == 3 and m["examples"] == 8
    first = _adapter_tensors(tmp_path / "out")
    lora_b = {k: v for k, v in first.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero: all trained
    # Continue from that adapter: every tensor moves again.
    job2 = _job(tmp_path, base, parent=str(tmp_path / "out"))
    run_child(job2, tmp_path / "job2.json", threads=1)
    second = _adapter_tensors(tmp_path / "out2")
    assert first.keys() == second.keys()
    assert all(not (first[k] == second[k]).all() for k in first)


@pytest.mark.parametrize("multiple,width", [
    (None, 87),   # default: each batch as long as its longest row (system prompt + chain: 87 tokens)
    (64, 128),    # padded up to the multiple: few distinct shapes for compiled kernels
    (32, 96),
])
def test_sft_pad_to_multiple_of_reaches_trl_batches(tmp_path, monkeypatch, multiple, width):
    import trl

    from loop.models import resolve_model
    from loop.trainers import trl as backend
    job = _job(tmp_path, resolve_model("tiny:llama"))
    job["sft"]["pad_to_multiple_of"] = multiple
    job["tmp"] = str(tmp_path / "tmp")
    widths = []

    def first_batches(self, *a, **k):  # TRL's own dataloader and collator, no training
        widths.extend(b["input_ids"].shape[1] for _, b in zip(range(3), self.get_train_dataloader()))
        raise StopIteration

    monkeypatch.setattr(trl.SFTTrainer, "train", first_batches)
    with pytest.raises(StopIteration):
        backend.sft(job)
    assert widths == [width] * 3


@pytest.mark.slow
def test_launcher_runs_one_job_in_two_processes(tmp_path):
    """train.launcher (torchrun here, `accelerate launch` on GPUs): both ranks train, rank 0
    alone publishes the adapter, no rank leaves a scratch folder behind."""
    from loop.models import resolve_model
    from loop.trainers.launch import run_child
    job = _job(tmp_path, resolve_model("tiny:llama"))
    m = run_child(job, tmp_path / "job.json", threads=1, launcher="torchrun --nproc_per_node 2")
    assert m["processes"] == 2 and m["steps"] == 3
    lora_b = {k: v for k, v in _adapter_tensors(tmp_path / "out").items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out"]


@pytest.mark.parametrize("launcher, first", [
    (None, "python"),                                  # default: this interpreter
    ("torchrun --nproc_per_node 2", "torchrun"),       # found next to this interpreter (the venv)
    ("sh -c", "sh"),                                   # else on PATH
])
def test_launch_command(launcher, first):
    import sys
    from pathlib import Path

    from loop.trainers.launch import launch_command
    cmd = launch_command(launcher)
    assert Path(cmd[0]).is_file() and Path(cmd[0]).name.startswith(first)
    assert cmd[1:] == (launcher.split()[1:] if launcher else [])
    if launcher and launcher.startswith("torchrun"):
        assert Path(cmd[0]).parent == Path(sys.executable).parent


def test_unknown_launcher_is_a_clear_error():
    from loop.trainers.launch import TrainError, launch_command
    with pytest.raises(TrainError, match="train.launcher: 'no-such-launcher' not found"):
        launch_command("no-such-launcher --num_processes 2")


def test_watch_daemon_exits_when_the_daemon_is_gone(tmp_path):
    """A launcher's worker is not the daemon's child: it polls the daemon's pid and exits."""
    import subprocess
    import sys
    import time
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen([sys.executable, "-c", "import sys, time; from loop.trainers.launch import watch_daemon; "
                               f"watch_daemon({daemon.pid}, every_s=0.1); time.sleep(60)"])
    time.sleep(1.0)
    assert worker.poll() is None  # the daemon lives: so does the worker
    daemon.kill()
    daemon.wait()
    assert worker.wait(timeout=10) == 1


def test_train_profile_env_writes_a_cprofile_of_the_child(tmp_path, monkeypatch):
    import pstats

    from loop.models import resolve_model
    from loop.trainers.launch import run_child
    monkeypatch.setenv("LOOP_TRAIN_PROFILE", str(tmp_path / "train.prof"))
    run_child(_job(tmp_path, resolve_model("tiny:llama")), tmp_path / "job.json", threads=1)
    funcs = {f[2] for f in pstats.Stats(str(tmp_path / "train.prof")).stats}  # (file, line, name)
    assert {"train_job", "sft", "training_step"} <= funcs


def test_failed_training_raises_and_publishes_nothing(tmp_path):
    from loop.trainers.launch import TrainError, run_child
    job = _job(tmp_path, tmp_path / "no-such-model")
    with pytest.raises(TrainError, match="training process failed"):
        run_child(job, tmp_path / "job.json", threads=1)
    assert not (tmp_path / "out").exists()


def test_grpo_child_process_runs_on_tiny_model(tmp_path):
    """Real TRL GRPOTrainer with the seed rewards + PEFT LoRA on the tiny model (CPU).
    A random model earns equal rewards across a group, so advantages are zero and the
    adapter may not move; the real-model test (test_e2e_real) asserts that it does."""
    from loop.models import resolve_model
    from loop.prompts import messages
    from loop.trainers.launch import run_child
    base = resolve_model("tiny:llama")
    ex = [{"problem_id": f"p{i}", "prompt": messages(f"What is {i} + {i}?"), "answer": str(2 * i), "pass_rate": 0.5}
          for i in range(10, 14)]
    job = _job(tmp_path, base, steps=2, method="grpo", examples=ex, out="grpo")
    m = run_child(job, tmp_path / "job.json", threads=1)
    assert m["steps"] == 2 and m["backend"] == "trl" and m["last_reward"] is not None
    # TRL's profiled phases land in the metrics, per step too (generation is most of a step)
    gen = m["phase_steps"]["transformers.generate"]
    assert len(gen) == 2 and all(g > 0 for g in gen) and m["phase_s"]["transformers.generate"] > 0
    assert sum(gen) <= sum(m["step_times"]) + 1e-3
    tensors = _adapter_tensors(tmp_path / "grpo")
    assert any("lora_A" in k for k in tensors) and any("lora_B" in k for k in tensors)


@pytest.mark.parametrize("method,mode,weights_bytes,steps,expected", [
    ("sft", "auto", 540 * 2**20, 30, False),       # SmolLM2-135M, a loop-sized eager job: fastest without
    ("sft", "auto", 6 * 2**30, 30, False),         # a 1.5B model in fp32, eager: offload was slower than trl
    ("sft", "auto", 6 * 2**30, 100, True),         # compiled + CUDA graphs: 1.59x trl at 0.21x its memory
    ("sft", "auto", 14 * 2**30, 30, "unsloth"),    # a 7B model in bf16: park activations in CPU RAM
    ("grpo", "auto", 540 * 2**20, 10, "unsloth"),  # GRPO: offload costs ~5% per step, saves 3.5x memory
    ("grpo", "off", 6 * 2**30, 10, False),         # an explicit setting wins
    ("sft", "off", 14 * 2**30, 500, False),
    ("sft", "on", 540 * 2**20, 30, True),
    ("sft", "offload", 540 * 2**20, 30, "unsloth"),
])
def test_unsloth_gradient_checkpointing(tmp_path, method, mode, weights_bytes, steps, expected):
    from loop.trainers.unsloth import gradient_checkpointing
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(weights_bytes)        # sparse: no disk used
    job = {"base": str(tmp_path), "method": method, "gradient_checkpointing": mode, method: {"max_steps": steps}}
    assert gradient_checkpointing(job) == expected


@pytest.mark.parametrize("method,mode,cuda,expected", [
    ("grpo", "auto", True, True),     # a 64-completion GRPO step: activations are most of trl's peak
    ("sft", "auto", True, False),     # SFT on trl: fastest without
    ("grpo", "auto", False, False),   # CPU: never (memory is not the limit there)
    ("sft", "on", True, True),        # an explicit setting wins
    ("grpo", "off", True, False),
    ("sft", "offload", True, True),   # trl has no offload: recompute
])
def test_trl_gradient_checkpointing(method, mode, cuda, expected):
    from loop.trainers.trl import checkpointing
    assert checkpointing({"method": method, "gradient_checkpointing": mode}, cuda) is expected


SP, PG = "UNSLOTH_GRPO_SEQ_PACKING", "UNSLOTH_GRPO_PREFIX_GROUPER"


@pytest.mark.parametrize("varlen,steps,user_env,expected", [
    # no varlen kernel (torch 2.11, no flash-attn), a loop-sized job: padded forward, no
    # prefix grouper, eager blocks (their compile would not repay)
    (False, 10, {}, {SP: "0", PG: "0", "UNSLOTH_BLOCK_COMPILE": "0"}),
    (False, 500, {}, {SP: "0", PG: "0"}),                       # long jobs: unsloth's compiled blocks
    (False, 10, {SP: "1"}, {PG: "0", "UNSLOTH_BLOCK_COMPILE": "0"}),  # the user's own setting is left alone
    (True, 10, {}, {"UNSLOTH_BLOCK_COMPILE": "0"}),             # varlen kernel: unsloth's packing is its fast path
    (True, 500, {}, {}),
])
def test_unsloth_grpo_environ(monkeypatch, varlen, steps, user_env, expected):
    from loop.trainers.unsloth import grpo_environ
    for k in (SP, PG, "UNSLOTH_BLOCK_COMPILE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in user_env.items():
        monkeypatch.setenv(k, v)
    assert grpo_environ({"grpo": {"max_steps": steps}}, varlen) == expected


@pytest.mark.parametrize("env,expected", [
    ({}, "0"),                                 # unset: the first GPU (harmless without one)
    ({"CUDA_VISIBLE_DEVICES": "2,3"}, "2"),    # several visible: the first of them
    ({"CUDA_VISIBLE_DEVICES": "GPU-ab, GPU-cd"}, "GPU-ab"),  # UUIDs, spaces
    ({"CUDA_VISIBLE_DEVICES": "1"}, "1"),      # one already
    ({"CUDA_VISIBLE_DEVICES": ""}, ""),        # none visible stays none
])
def test_one_gpu_without_launcher(env, expected):
    from loop.trainers.launch import one_gpu
    assert one_gpu(env) == {"CUDA_VISIBLE_DEVICES": expected}


def test_run_child_pins_one_gpu_unless_launched(tmp_path, monkeypatch):
    """The child (not the launcher's workers) sees one GPU: checked through the environment it gets."""
    import subprocess

    from loop.trainers import launch as train
    seen, popen = [], subprocess.Popen
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, env, **kw: seen.append(env) or popen(["false"], **kw))
    for launcher in (None, "torchrun --nproc_per_node 2"):
        with pytest.raises(train.TrainError):
            train.run_child({"out": str(tmp_path / "out")}, tmp_path / "job.json", None, launcher)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in seen] == ["0", "0,1"]


P, B, G = "UNSLOTH_PADDING_CHOICE", "UNSLOTH_BLOCK_COMPILE", "UNSLOTH_BLOCK_CUDAGRAPHS"


@pytest.mark.parametrize("varlen,steps,user_env,expected", [
    # no varlen kernel, a loop-sized job: padded batches, eager blocks (compile would not repay)
    (False, 30, {}, {P: "padded", B: "0"}),
    (False, 99, {}, {P: "padded", B: "0"}),                     # just below break-even
    (False, 100, {}, {P: "padded", B: "1", G: "1"}),            # long jobs: compiled blocks + CUDA graphs
    (False, 30, {P: "padding_free"}, {B: "0"}),                 # the user's setting wins
    (False, 500, {G: "0"}, {P: "padded", B: "1"}),              # graphs turned off by the user stay off
    (True, 30, {}, {}),                                         # a varlen kernel: unsloth's own choice
])
def test_unsloth_sft_environ(monkeypatch, varlen, steps, user_env, expected):
    from loop.trainers.unsloth import sft_environ
    for k in (P, B, G):
        monkeypatch.delenv(k, raising=False)
    for k, v in user_env.items():
        monkeypatch.setenv(k, v)
    assert sft_environ({"sft": {"max_steps": steps}}, varlen) == expected


@pytest.mark.parametrize("environ,pad,expected", [
    ({G: "1"}, None, 64),   # graphs on, no multiple set: few shapes
    ({G: "1"}, 32, 32),     # the user's multiple wins
    ({G: "0"}, None, None),  # no graphs: batches stay as tight as TRL makes them
    ({}, None, None),       # eager job
])
def test_unsloth_sft_shapes(environ, pad, expected):
    from loop.trainers.unsloth import sft_shapes
    job = {"sft": {"max_steps": 100, "pad_to_multiple_of": pad}}
    assert sft_shapes(job, environ)["sft"]["pad_to_multiple_of"] == expected
    assert job["sft"]["pad_to_multiple_of"] == pad  # the caller's job is not changed


@pytest.mark.parametrize("n,max_pass_rate,expected", [
    (0, 1.0, ["p1", "p2", "p3"]),   # no selection: every problem with a verified chain
    (2, 0.9, ["p2", "p3"]),         # p1 (solved 4/4) is too easy
    (1, 1.0, ["p3"]),               # the hardest: p3 passed 2 of 8
])
def test_sft_examples_from_store_select(tmp_path, n, max_pass_rate, expected):
    """Pass rates come from the store (tests/storefix.py: p1 1.0, p2 0.75, p3 0.25 over rounds 1-2)."""
    from types import SimpleNamespace

    from loop.config import Config
    from loop.stages.train import sft_examples
    from store.db import Store
    from tests import storefix
    storefix.populate(tmp_path / "s.duckdb")
    cfg = Config()
    cfg.train.sft.select.n, cfg.train.sft.select.max_pass_rate = n, max_pass_rate
    with Store(tmp_path / "s.duckdb") as st:
        ctx = SimpleNamespace(store=st, run_id="run-b", cfg=cfg, round_seed=lambda r, salt="": 1)
        assert [e["problem_id"] for e in sft_examples(ctx, 2)] == expected
