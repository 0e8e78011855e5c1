"""The export formats in their consumers on the real embedded model (SmolLM2-135M-Instruct)
after one trained SFT round (the store written as the daemon writes it), `loop export model`
end to end. The tiny-model lane and what each consumer is: tests/test_export_consumers.py.

Agreement stated for the lossy formats, on 3 prompts x 12 greedy tokens: f16 GGUF in llama.cpp
and fp32 merged16 in vLLM / transformers give the trained model's answers exactly; q8_0 and
q6_k at least 2 of 3; the 4-bit ones (q4_k_m, merged4 NF4) must load and generate (their
agreement over 20 prompts is measured in bench/exports.py, bench/results/exports.json).
"""
import json

import pytest
from typer.testing import CliRunner

import cli
from loop.export.errors import ExportError
from loop.export.quantize import find_tool
from loop.prompts import SYSTEM_PROMPT, messages
from tests import consumers

pytestmark = pytest.mark.slow
runner = CliRunner()
PROMPTS = ["What is 47 + 38?", "Compute 12 * 3.", "Name a prime number."]
N = 12
SETS = ["sample.backend=hf", "evaluate.backend=hf", "evaluate.n_problems=2", "evaluate.max_new_tokens=8",
        "train.sft.max_steps=4", "train.sft.batch_size=2", "train.sft.max_seq_len=96",
        "train.sft.learning_rate=0.001"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return consumers.trained_store(tmp_path_factory.mktemp("real") / "run", SETS)


@pytest.fixture(scope="module")
def trained(store):
    from transformers import AutoModelForCausalLM

    from loop.models import load_for_inference
    model, tok = load_for_inference(store["base"], store["adapter"])
    texts = [consumers.chat_text(tok, q, SYSTEM_PROMPT) for q in PROMPTS]
    answers = consumers.hf_greedy(model, tok, texts, N)
    base = AutoModelForCausalLM.from_pretrained(store["base"]).eval()
    assert consumers.hf_greedy(base, tok, texts, N) != answers  # the round changed the model's answers
    return {"tok": tok, "texts": texts, "answers": answers}


def _export(store, out, *args):
    res = runner.invoke(cli.app, ["export", "model", "--store", str(store["store"]), "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return out


def _tool(name):
    try:
        return find_tool(name)
    except ExportError as e:
        pytest.skip(str(e))


def test_merged16_and_lora_in_vllm_transformers_and_peft(store, trained, tmp_path):
    pytest.importorskip("vllm")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    tok, texts, want = trained["tok"], trained["texts"], trained["answers"]
    merged = _export(store, tmp_path / "m", "--format", "merged16", "--dtype", "float32")
    assert consumers.hf_greedy(AutoModelForCausalLM.from_pretrained(merged).eval(), tok, texts, N) == want
    assert consumers.vllm_greedy(merged, tok, texts, N) == want
    lora = _export(store, tmp_path / "l", "--format", "lora")
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(store["base"]), lora).eval()
    assert consumers.hf_greedy(peft, tok, texts, N) == want
    assert consumers.vllm_greedy(store["base"], tok, texts, N, adapter=lora) == want


@pytest.mark.parametrize("outtype, at_least", [
    ("f16", 1.0),     # f16 weights: the same answers as transformers in fp32
    ("q8_0", 2 / 3),  # 8-bit blocks
    ("q6_k", 2 / 3),  # 6-bit k-quant (llama-quantize)
    ("q4_k_m", 0.0),  # 4-bit: loads and generates; its agreement is measured in bench/exports.py
])
def test_gguf_in_llama_cpp(store, trained, tmp_path, outtype, at_least):
    completion = _tool("llama-completion")
    if outtype in ("q6_k", "q4_k_m"):
        _tool("llama-quantize")
    out = _export(store, tmp_path / "g", "--format", "gguf", "--outtype", outtype)
    got = consumers.llama_greedy(completion, out / f"model-{outtype}.gguf", trained["texts"], N)
    assert all(g.strip() for g in got), got  # each prompt gets an answer
    assert consumers.agreement(got, trained["answers"]) >= at_least, (got, trained["answers"])


def test_ollama_modelfile_renders_the_training_prompt_and_its_gguf_answers(store, trained, tmp_path):
    out = _export(store, tmp_path / "o", "--format", "ollama", "--outtype", "f16")
    text = (out / "Modelfile").read_text()
    for q in PROMPTS:  # Ollama's chat request: the user's message; SYSTEM completes the training prompt
        assert consumers.modelfile_prompt(text, messages(q)[1:]) == consumers.chat_text(trained["tok"], q, SYSTEM_PROMPT)
    lin = json.loads((out / "lineage.json").read_text())
    assert lin["run"]["prompt"] == {"template": "chat", "system": SYSTEM_PROMPT}
    completion = _tool("llama-completion")
    prompts = [consumers.modelfile_prompt(text, messages(q)[1:]) for q in PROMPTS]
    assert consumers.llama_greedy(completion, out / "model-f16.gguf", prompts, N) == trained["answers"]


def test_merged4_in_transformers(store, trained, tmp_path):
    from transformers import AutoModelForCausalLM

    from loop.export.merged4 import check_bnb4
    try:
        check_bnb4()
    except ExportError as e:
        pytest.skip(str(e))
    out = _export(store, tmp_path / "q", "--format", "merged4")
    assert json.loads((out / "config.json").read_text())["quantization_config"]["load_in_4bit"]
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    got = consumers.hf_greedy(model, trained["tok"], trained["texts"], N)
    assert all(g.strip() for g in got), got
