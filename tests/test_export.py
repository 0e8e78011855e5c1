"""`loop export model`: lora / merged16 / gguf exports of a real store's models, with lineage cards.

The fixture builds a store the way the daemon does (loop.runner.open_run, the train stage's
registration `_train` with real child-process LoRA training, the evaluate stage) on the tiny
model: two adapters, round 1 from the base and round 2 continuing round 1."""
import importlib.util
import json

import pytest
from typer.testing import CliRunner

import cli

runner = CliRunner()
PROMPTS = ["What is 47 + 38?", "Compute 12 * 3.", "hello"]


def _examples(lo, n=6):
    from loop.trainers.chains import select_chains
    return select_chains([{"problem_id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i),
                           "completion": f"{i} + {i} = {2 * i}", "extracted": str(2 * i), "strict": False}
                          for i in range(lo, lo + n)])


@pytest.fixture(scope="module")
def lineage_store(tmp_path_factory):
    from loop.config import load_config
    from loop.runner import open_run
    from loop.stages import evaluate
    from loop.stages.train import _train
    from tests.conftest import ROOT
    run_dir = tmp_path_factory.mktemp("export") / "run"
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run_dir}", "train.sft.learning_rate=0.05"])
    ctx = open_run(cfg)
    try:
        evaluate.stage(ctx, 0)
        v1 = _train(ctx, 1, "sft", _examples(10))["model_version"]
        evaluate.stage(ctx, 1)
        v2 = _train(ctx, 2, "sft", _examples(20))["model_version"]
        evaluate.stage(ctx, 2)
        info = {"store": cfg.store_path, "base": ctx.base_dir, "base_version": ctx.base_version,
                "run_id": ctx.run_id, "v1": v1, "v2": v2, "adapter2": run_dir / "models" / "round-002-sft"}
    finally:
        ctx.close()
    return info


def _export(st, out, *args):
    return runner.invoke(cli.app, ["export", "model", "--store", str(st["store"]), "--out", str(out), *args])


def _greedy(model, tok, n=8):
    """Greedy continuation ids of each chat prompt, by argmax steps (no generation config involved)."""
    import torch
    outs = []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            for _ in range(n):
                nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], dim=1)
        outs.append(ids[0, -n:].tolist())
    return outs


@pytest.fixture(scope="module")
def reference(lineage_store):
    """Greedy ids of base + round-2 adapter through peft (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    from loop.models import load_for_inference
    model, tok = load_for_inference(lineage_store["base"], lineage_store["adapter2"])
    base = AutoModelForCausalLM.from_pretrained(lineage_store["base"])
    ids = tok("What is 47 + 38?", return_tensors="pt").input_ids
    with torch.no_grad():
        moved = (model(ids).logits - base(ids).logits).abs().max().item()
    assert moved > 0.1  # the adapter changes the model, so equality with it means something
    return {"tok": tok, "adapter": _greedy(model, tok), "model": model}


@pytest.fixture(scope="module")
def lora_out(lineage_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "out"
    res = _export(lineage_store, out, "--format", "lora")
    assert res.exit_code == 0, res.output
    return out


def test_lora_export_loads_with_peft(lineage_store, reference, lora_out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loop.models import model_hash
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
              "README.md", "lineage.json"):
        assert (lora_out / f).is_file(), f
    assert model_hash(lora_out) == lineage_store["v2"]  # the adapter weights, byte for byte
    cfg = json.loads((lora_out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "tiny:llama"  # the model the user gave, not a cache path
    modes = {f.name: f.stat().st_mode & 0o777 for f in lora_out.iterdir()}
    assert set(modes.values()) == {0o644}, modes  # readable by others
    base = AutoModelForCausalLM.from_pretrained(lineage_store["base"])
    model = PeftModel.from_pretrained(base, lora_out).eval()
    assert _greedy(model, AutoTokenizer.from_pretrained(lora_out)) == reference["adapter"]


def test_merged_fp32_export_equals_adapter_in_plain_transformers(lineage_store, reference, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    res = _export(lineage_store, tmp_path / "m", "--format", "merged16", "--dtype", "float32")
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()  # plain transformers, no peft
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert _greedy(model, tok) == reference["adapter"]
    ids = tok("What is 47 + 38?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference["model"](ids).logits, atol=1e-5)


def test_merged_bf16_export_is_bf16_and_generates(lineage_store, reference, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer
    res = _export(lineage_store, tmp_path / "m", "--format", "merged16")  # bfloat16 by default
    assert res.exit_code == 0, res.output
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.chat_template and model.dtype == torch.bfloat16
    assert all(len(g) == 8 for g in _greedy(model, tok))


def _load_gguf(folder, name, tokenizer=True):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name) if tokenizer else None


def _chat_ids(tok):
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)["input_ids"]
            for p in PROMPTS]


def test_gguf_builtin_f32_roundtrips_through_transformers(lineage_store, reference, tmp_path):
    import gguf
    res = _export(lineage_store, tmp_path / "g", "--format", "gguf", "--outtype", "f32", "--converter", "builtin")
    assert res.exit_code == 0, res.output
    fields = gguf.GGUFReader(tmp_path / "g" / "model-f32.gguf").fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["general.name"].contents() == f"loop {lineage_store['v2']} (tiny:llama)"
    model, tok = _load_gguf(tmp_path / "g", "model-f32.gguf")
    assert _chat_ids(tok) == _chat_ids(reference["tok"])  # the tokenizer survives, chat template included
    assert _greedy(model, tok) == reference["adapter"]


def test_gguf_builtin_f16_and_q8_0(lineage_store, reference, tmp_path):
    """f16: same weights up to f16 rounding (logits close); q8_0: 2-D tensors quantized, loadable."""
    import gguf
    import torch
    res = _export(lineage_store, tmp_path / "g", "--format", "gguf", "--converter", "builtin")  # f16 default
    assert res.exit_code == 0, res.output
    model, _ = _load_gguf(tmp_path / "g", "model-f16.gguf", tokenizer=False)
    ids = reference["tok"]("What is 47 + 38?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference["model"](ids).logits, atol=2e-2)
    res = _export(lineage_store, tmp_path / "q", "--format", "gguf", "--outtype", "q8_0", "--converter", "builtin")
    assert res.exit_code == 0, res.output
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "q" / "model-q8_0.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["output_norm.weight"] == "F32"


def test_gguf_through_llama_cpp_converter(lineage_store, reference, tmp_path):
    """Runs where llama.cpp's convert_hf_to_gguf.py is configured (README: Export)."""
    import gguf

    from loop.export.gguf import find_converter
    if find_converter() == "builtin":
        pytest.skip("no llama.cpp converter: set LOOP_LLAMA_CPP_CONVERT=.../convert_hf_to_gguf.py")
    if importlib.util.find_spec("sentencepiece") is None:
        pytest.skip("llama.cpp's converter imports sentencepiece, which is not installed")
    res = _export(lineage_store, tmp_path / "g", "--format", "gguf", "--outtype", "f32")
    assert res.exit_code == 0, res.output
    assert "llama.cpp" in json.loads((tmp_path / "g" / "lineage.json").read_text())["export"]["writer"]
    fields = gguf.GGUFReader(tmp_path / "g" / "model-f32.gguf").fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2" and fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert fields["general.name"].contents() == f"loop {lineage_store['v2']} (tiny:llama)"  # not 'Gguf Src'
    model, tok = _load_gguf(tmp_path / "g", "model-f32.gguf")
    assert _chat_ids(tok) == _chat_ids(reference["tok"])
    assert _greedy(model, tok) == reference["adapter"]
    # The built-in writer's tensors are byte-identical to the converter's.
    res = _export(lineage_store, tmp_path / "b", "--format", "gguf", "--outtype", "f32", "--converter", "builtin")
    assert res.exit_code == 0, res.output
    conv, own = (gguf.GGUFReader(tmp_path / d / "model-f32.gguf").tensors for d in ("g", "b"))
    assert sorted((t.name, t.tensor_type, t.data.tobytes()) for t in conv) == \
        sorted((t.name, t.tensor_type, t.data.tobytes()) for t in own)


def test_export_help():
    for cmd in (["export"], ["export", "model"]):
        res = runner.invoke(cli.app, [*cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_card_names_every_ancestor(lineage_store, lora_out):
    st = lineage_store
    card = (lora_out / "README.md").read_text()
    assert card.splitlines()[:3] == ["---", "library_name: peft", 'base_model: "tiny:llama"']  # hub metadata
    lin = json.loads((lora_out / "lineage.json").read_text())
    assert [a["version"] for a in lin["ancestors"]] == [st["v1"], st["v2"]]
    assert lin["ancestors"][1]["parent"] == st["v1"] and lin["ancestors"][0]["parent"] == st["base_version"]
    assert lin["base"] == {**lin["base"], "name": "tiny:llama", "version": st["base_version"]}
    assert [e["round"] for e in lin["evaluations"]] == [0, 1, 2]
    assert all(a["method"] == "sft" and a["examples"] == 6 and a["data_hash"] for a in lin["ancestors"])
    for needle in (st["v1"], st["v2"], st["base_version"], "tiny:llama", st["run_id"], "loop 0.1.0",
                   *(a["data_hash"] for a in lin["ancestors"])):
        assert needle in card, needle
    curve = [line for line in card.splitlines() if line.startswith("| ") and "%" in line]
    assert [line.split("|")[1].strip() for line in curve] == ["0", "1", "2"]  # accuracy per round


def test_card_states_the_prompt_and_its_example_runs(lora_out):
    """The system prompt and chat template the model was trained with, and a runnable render."""
    import re

    from loop.prompts import SYSTEM_PROMPT
    card = (lora_out / "README.md").read_text()
    assert "## Prompt" in card and SYSTEM_PROMPT in card and "Chat template: the model's own (tiny:llama)" in card
    code = re.search(r"## Prompt.*?```python\n(.*?)\n```", card, re.S).group(1).replace("THIS_DIR", str(lora_out))
    printed: list[str] = []
    exec(code, {"print": printed.append})  # the card's own example
    assert printed[0].startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?")


def test_round_and_version_prefix_select_the_round_1_model(lineage_store, tmp_path):
    for args in (["--round", "1"], ["--model-version", lineage_store["v1"][:6]]):
        out = tmp_path / args[0].strip("-")
        res = _export(lineage_store, out, "--format", "lora", *args)
        assert res.exit_code == 0, res.output
        lin = json.loads((out / "lineage.json").read_text())
        assert [a["version"] for a in lin["ancestors"]] == [lineage_store["v1"]]
        assert [e["round"] for e in lin["evaluations"]] == [0, 1]


@pytest.mark.parametrize("args, needle", [
    (["--round", "7"], "no trained model for round 7"),
    (["--model-version", "deadbeef"], "no model version 'deadbeef'"),
    (["--round", "1", "--model-version", "x"], "not both"),
    (["--format", "onnx"], "'onnx' is not one of 'lora', 'merged16', 'merged4', 'gguf', 'ollama'"),  # the CLI lists the choices
    (["--format", "gguf", "--converter", "/no/convert_hf_to_gguf.py"], "/no/convert_hf_to_gguf.py"),
])
def test_bad_requests_exit_2_and_write_nothing(lineage_store, tmp_path, args, needle):
    res = _export(lineage_store, tmp_path / "out", *args)
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary leftovers either


def test_non_empty_out_is_refused_unless_force(lineage_store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = _export(lineage_store, out, "--format", "lora")
    assert res.exit_code == 2 and "not empty" in res.output and (out / "keep.txt").exists()
    res = _export(lineage_store, out, "--format", "lora", "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "keep.txt").exists() and (out / "adapter_model.safetensors").is_file()
    res = _export(lineage_store, lineage_store["store"].parent, "--format", "lora", "--force")
    assert res.exit_code == 2 and "holds" in res.output and lineage_store["store"].exists()


@pytest.mark.slow
def test_real_model_merged_export_equals_adapter(tmp_path):
    """SmolLM2-135M + a short-trained adapter: the fp32 merge gives the adapter's greedy ids; bf16 loads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loop.config import Config
    from loop.export.model import write_merged
    from loop.models import load_for_inference, resolve_model
    from loop.trainers.chains import write_snapshot
    from loop.trainers.child import train_job
    base = resolve_model("embedded:smollm2-135m-instruct")
    cfg = Config().train
    cfg.sft.max_steps, cfg.sft.batch_size, cfg.sft.max_seq_len, cfg.sft.learning_rate = 3, 2, 96, 1e-3
    write_snapshot(_examples(10), tmp_path / "data.parquet")
    train_job({"method": "sft", "backend": "trl", "base": str(base), "parent_adapter": None,
               "data": str(tmp_path / "data.parquet"), "out": str(tmp_path / "adapter"), "seed": 0, "threads": 1,
               "lora": cfg.lora.model_dump(mode="json"), "sft": cfg.sft.model_dump(mode="json"), "rewards": []})
    ref, tok = load_for_inference(base, tmp_path / "adapter")
    want = _greedy(ref, tok, n=6)
    assert want != _greedy(AutoModelForCausalLM.from_pretrained(base), tok, n=6)
    write_merged(base, tmp_path / "adapter", tmp_path / "fp32", "float32")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "fp32").eval()
    assert _greedy(merged, AutoTokenizer.from_pretrained(tmp_path / "fp32"), n=6) == want
    write_merged(base, tmp_path / "adapter", tmp_path / "bf16", "bfloat16")
    m16 = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16").eval()
    assert m16.dtype == torch.bfloat16 and all(len(g) == 6 for g in _greedy(m16, tok, n=6))
