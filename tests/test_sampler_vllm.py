"""The vllm backend on the real embedded model (fp32; one engine for the module).

Groups, seeds, stop strings and budget forcing as for hf (tests/sampler_checks.py);
then weight sync: after set_adapter the engine's logprobs match Hugging Face
with the adapter merged, and set_adapter(None) restores the base.
"""
import pytest

from tests import sampler_checks as checks

pytestmark = pytest.mark.slow
TEXT = ("<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n"
        "The sky is blue and the grass is green, apples are red.")


@pytest.fixture(scope="module")
def cfg():
    pytest.importorskip("vllm")
    from loop.config import load_config
    return load_config(None, ["sample.dtype=float32"])  # bf16 is not batch-invariant


@pytest.fixture(scope="module")
def base_dir(cfg):
    from loop.models import resolve_model
    return resolve_model(cfg.model.name)


@pytest.fixture(scope="module")
def engine(cfg, base_dir):
    from loop.samplers.vllm import VLLMSampler
    s = VLLMSampler(base_dir, None, cfg.sample, cfg.model)
    yield s
    s.close()


@pytest.fixture(scope="module")
def base(engine):
    return checks.greedy(engine)


@pytest.fixture(scope="module")
def adapter(base_dir, tmp_path_factory):
    """A LoRA adapter with random non-zero weights on all linear layers (as training writes)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.3)
    out = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(out)
    return out


def hf_logprobs(base_dir, adapter, ids):
    import torch

    from loop.models import load_for_inference
    model, _ = load_for_inference(base_dir, adapter, "float32")
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def vllm_logprobs(s, ids):
    from vllm import SamplingParams
    out = s.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                         use_tqdm=False, lora_request=s._lora)[0]
    return [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], ids[1:])]


def gap(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


def test_engine_starts_fast(engine):
    assert engine.start_s < 90, f"engine start {engine.start_s:.0f} s (torch.compile back on?)"


def test_group_size_and_seeds(engine):
    checks.check_groups_and_seeds(engine)


def test_group_does_not_depend_on_batch(engine):
    from loop.samplers import SamplingParams
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=5)
    two = engine.generate(checks.QUESTIONS, p)
    three = engine.generate(checks.QUESTIONS + [checks.chat("What is 8 - 5?")], p)
    assert checks.texts(three[:2]) == checks.texts(two)


def test_engine_seeding_sends_unseeded_requests(engine):
    """sample.vllm.seeding: request repeats a call exactly; engine (unseeded requests under the
    engine's seed, whose generator moves on) draws new samples for the same call."""
    from loop.samplers import SamplingParams
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=5)
    seeded = [checks.texts(engine.generate(checks.QUESTIONS, p)) for _ in range(2)]
    engine.request_seeds = False
    try:
        unseeded = [engine.generate(checks.QUESTIONS, p) for _ in range(2)]
    finally:
        engine.request_seeds = True
    assert seeded[0] == seeded[1]
    assert [len(g) for g in unseeded[0]] == [3] * len(checks.QUESTIONS)
    assert checks.texts(unseeded[0]) != checks.texts(unseeded[1])


def test_more_prompt_tokens_than_one_engine_step(engine):
    """Chunked prefill stays off: with it, vLLM 0.32 on CPU crashed in bench/sampling.py
    (16 prompts x 8 x 128 tokens) rewinding a seeded request's generator ("CPU Generator
    does not use offset"), which only a partly prefilled request does. A batch of seeded
    prompts larger than one engine step completes."""
    from loop.samplers import SamplingParams
    sched = engine.llm.llm_engine.vllm_config.scheduler_config
    assert not sched.enable_chunked_prefill and sched.max_num_batched_tokens >= engine.llm.llm_engine.vllm_config.model_config.max_model_len
    prompts = [checks.chat(f"What is {k} + {2 * k + 1}?") for k in range(14)]
    step = sched.max_num_batched_tokens
    assert sum(engine._count(engine._render(m)) for m in prompts) * 4 > step
    out = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=2, seed=1))
    assert [len(g) for g in out] == [4] * 14 and all(c.completion_tokens >= 1 for g in out for c in g)


def test_stop_strings(engine, base):
    checks.check_stop_strings(engine, base)


def test_thinking_budget_cap(engine):
    checks.check_budget_cap(engine)


def test_wait_extension(engine, base):
    checks.check_waits(engine, base)


def test_set_adapter_merges_weights_into_the_running_engine(engine, base_dir, adapter):
    ids = engine._encode(TEXT)
    hf_base, hf_adapted = hf_logprobs(base_dir, None, ids), hf_logprobs(base_dir, adapter, ids)
    assert gap(hf_base, hf_adapted) > 0.1  # the adapter matters
    assert gap(vllm_logprobs(engine, ids), hf_base) < 1e-3
    llm = engine.llm
    engine.set_adapter(adapter)
    assert engine.llm is llm  # no restart
    assert gap(vllm_logprobs(engine, ids), hf_adapted) < 1e-3
    engine.set_adapter(None)
    assert gap(vllm_logprobs(engine, ids), hf_base) < 1e-3


def test_lora_mode_matches_merged_weights(cfg, base_dir, adapter, capfd):
    from loop.samplers.vllm import VLLMSampler
    s = VLLMSampler(base_dir, adapter, cfg.sample, cfg.model, adapter_mode="lora")
    started = capfd.readouterr()
    assert "Loading safetensors" not in started.out + started.err  # our bars only (one per stage)
    try:
        ids = s._encode(TEXT)
        assert gap(vllm_logprobs(s, ids), hf_logprobs(base_dir, adapter, ids)) < 1e-3
    finally:
        s.close()


def test_unloadable_model_is_a_clear_error_at_construction(cfg, base_dir, tmp_path):
    import json

    from loop.samplers import SamplerError
    from loop.samplers.vllm import VLLMSampler
    with pytest.raises(SamplerError, match="no config.json"):
        VLLMSampler(tmp_path, None, cfg.sample, cfg.model)
    for f in base_dir.iterdir():  # the real model's files, but an architecture vLLM does not know
        (tmp_path / f.name).symlink_to(f)
    conf = json.loads((base_dir / "config.json").read_text()) | {"architectures": ["NoSuchForCausalLM"]}
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps(conf))
    with pytest.raises(SamplerError, match=f"(?s)vllm cannot load model .*{tmp_path.name}.*NoSuchForCausalLM"):
        VLLMSampler(tmp_path, None, cfg.sample, cfg.model, adapter_mode="lora")


def test_not_an_adapter_folder(engine, tmp_path):
    from loop.samplers import SamplerError
    with pytest.raises(SamplerError, match="adapter_config.json"):
        engine.set_adapter(tmp_path)
