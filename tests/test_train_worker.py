"""The warm training worker (train.worker, loop.trainers.worker): real TRL jobs on the tiny model.

Same job, same weights as a fresh child; one process for several jobs; a killed, stopped or
failed worker replaced by the next job; none left behind when its daemon exits or dies."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from loop import cancel
from loop.trainers import launch
from tests.conftest import ROOT
from tests.test_train import _adapter_tensors, _job


@pytest.fixture(autouse=True)
def _no_worker_left():
    launch.close_worker()
    yield
    launch.close_worker()
    cancel.clear()


@pytest.fixture(scope="module")
def base():
    from loop.models import resolve_model
    return resolve_model("tiny:llama")


def _gone(pid: int, within: float = 10.0) -> bool:
    """`pid` has exited (reaped, or a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _warm(job, path, **kw):
    return launch.run_child(job, path, threads=1, worker="warm", **kw)


def _same_tensors(a, b):
    import torch
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


@pytest.mark.slow
def test_warm_worker_trains_the_same_weights_as_a_fresh_child(tmp_path, base):
    """The same job (a fresh LoRA: its weights drawn from the seed) in a fresh child, then twice in
    one warm worker (the second after a different job ran there): the same adapter, the same
    metrics apart from timings and memory."""
    fresh = _job(tmp_path, base, out="fresh")
    m_fresh = launch.run_child(fresh, tmp_path / "fresh.json", threads=1, worker="fresh")
    assert launch.warm_worker() is None  # fresh: no worker started
    m_warm = _warm({**fresh, "out": str(tmp_path / "warm")}, tmp_path / "warm.json")
    other = _job(tmp_path, base, out="other", steps=2)
    other["seed"] = 5
    _warm(other, tmp_path / "other.json")
    m_again = _warm({**fresh, "out": str(tmp_path / "again")}, tmp_path / "again.json")
    assert launch.warm_worker().jobs == 3
    ref = _adapter_tensors(tmp_path / "fresh")
    assert _same_tensors(ref, _adapter_tensors(tmp_path / "warm"))
    assert _same_tensors(ref, _adapter_tensors(tmp_path / "again"))
    assert not _same_tensors(ref, _adapter_tensors(tmp_path / "other"))  # another seed: other weights
    varying = {"runtime_s", "step_times", "peak_memory_gb", "phase_s", "phase_steps", "device_peak_gb", "worker"}
    assert (m_fresh["worker"], m_warm["worker"], m_again["worker"]) == ("fresh", "warm", "warm")  # where each ran
    for m in (m_warm, m_again):
        assert m.keys() == m_fresh.keys()
        assert {k: v for k, v in m.items() if k not in varying} == {k: v for k, v in m_fresh.items() if k not in varying}
        assert 0 < m["peak_memory_gb"] < 2 * m_fresh["peak_memory_gb"]  # the job's peak, not the process's


@pytest.mark.slow
def test_two_jobs_in_one_worker_reuse_the_process_and_start_faster(tmp_path, base):
    t0 = time.perf_counter()
    m1 = _warm(_job(tmp_path, base, out="a"), tmp_path / "a.json")
    t1 = time.perf_counter()
    pid = launch.warm_worker().pid
    m2 = _warm(_job(tmp_path, base, out="b"), tmp_path / "b.json")
    t2 = time.perf_counter()
    assert launch.warm_worker().pid == pid and launch.warm_worker().jobs == 2
    # the second job's overhead (all but its optimizer steps) is a fraction of the first's:
    # torch, transformers, trl and peft stay imported
    over1, over2 = (t1 - t0) - sum(m1["step_times"]), (t2 - t1) - sum(m2["step_times"])
    assert over2 < over1 / 2, (over1, over2)
    assert m2["phase_s"].keys() == m1["phase_s"].keys()  # phase times are the job's own


@pytest.mark.slow
def test_a_killed_worker_is_replaced_on_the_next_job(tmp_path, base):
    _warm(_job(tmp_path, base, out="a", steps=1), tmp_path / "a.json")
    first = launch.warm_worker()
    os.kill(first.pid, signal.SIGKILL)
    assert _gone(first.pid)
    m = _warm(_job(tmp_path, base, out="b", steps=1), tmp_path / "b.json")
    assert m["steps"] == 1 and launch.warm_worker().pid != first.pid


@pytest.mark.slow
def test_one_worker_per_backend_and_a_new_one_for_another_engine(tmp_path, base, monkeypatch):
    flavors = iter([("trl", ""), ("unsloth", ""), ("trl", ""), ("trl", "engine B")])
    monkeypatch.setattr(launch, "worker_flavor", lambda job: next(flavors))  # the job itself runs on trl
    _warm(_job(tmp_path, base, out="a", steps=1), tmp_path / "a.json")
    trl = launch.warm_worker()
    _warm(_job(tmp_path, base, out="b", steps=1), tmp_path / "b.json")
    other = launch.warm_worker()
    assert other.pid != trl.pid and trl.alive()  # the unsloth worker beside the trl one
    m = _warm(_job(tmp_path, base, out="c", steps=1), tmp_path / "c.json")
    assert launch.warm_worker() is trl and trl.jobs == 2 and m["worker"] == "warm"
    _warm(_job(tmp_path, base, out="d", steps=1), tmp_path / "d.json")
    assert launch.warm_worker().pid != trl.pid and _gone(trl.pid) and other.alive()  # another engine: replaced
    launch.close_worker()
    assert _gone(other.pid)


@pytest.mark.slow
def test_a_worker_killed_during_its_job_costs_the_job_a_rerun_in_a_fresh_child(tmp_path, base):
    _warm(_job(tmp_path, base, out="a", steps=1), tmp_path / "a.json")
    worker = launch.warm_worker()
    result = {}
    run = threading.Thread(target=lambda: result.update(_warm(_job(tmp_path, base, out="b", steps=40), tmp_path / "b.json")))
    run.start()
    deadline = time.monotonic() + 60
    while not (worker.jobs == 2 and worker.started) and time.monotonic() < deadline:  # it has taken job b
        time.sleep(0.05)
    assert worker.jobs == 2 and worker.started
    os.kill(worker.pid, signal.SIGKILL)
    run.join(timeout=300)
    assert result["worker"] == "fresh-after-warm" and result["steps"] == 40  # the job is not lost
    assert launch.warm_worker() is None  # the dead worker is retired


@pytest.mark.slow
def test_a_stop_request_ends_a_warm_job_at_once_and_the_next_job_starts_a_new_worker(tmp_path, base):
    _warm(_job(tmp_path, base, out="warmup", steps=1), tmp_path / "warmup.json")  # a warm worker...
    worker = launch.warm_worker()
    long = _job(tmp_path, base, out="long", steps=100_000)  # ...on a job that would train for hours

    def stop_once_training():
        while not (tmp_path / "long.tmp").exists():
            time.sleep(0.05)
        time.sleep(1.0)
        cancel.request("test")

    stopper = threading.Thread(target=stop_once_training, daemon=True)
    stopper.start()
    t0 = time.perf_counter()
    with pytest.raises(cancel.Cancelled):
        _warm(long, tmp_path / "long.json")
    assert time.perf_counter() - t0 < 30
    assert _gone(worker.pid, within=launch.GRACE_S + 5)
    assert launch.warm_worker() is None
    assert not (tmp_path / "long.tmp").exists() and not (tmp_path / "long").exists()  # scratch folder removed
    cancel.clear()
    m = _warm(_job(tmp_path, base, out="next", steps=1), tmp_path / "next.json")
    assert m["steps"] == 1 and launch.warm_worker().pid != worker.pid


@pytest.mark.slow
def test_a_training_error_in_the_worker_is_a_train_error_and_the_next_job_works(tmp_path, base):
    _warm(_job(tmp_path, base, out="a", steps=1), tmp_path / "a.json")
    bad = _job(tmp_path, tmp_path / "no-such-model", out="bad")
    with pytest.raises(launch.TrainError, match=r"training process failed \(exit 1; in the warm worker before: .*no-such-model.*\); job "):
        _warm(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad").exists()
    assert launch.warm_worker() is None  # a failed job retires its worker: nothing it left carries over
    m = _warm(_job(tmp_path, base, out="b", steps=1), tmp_path / "b.json")
    assert m["steps"] == 1


DAEMON = """
import os, signal, sys
from loop.trainers import launch
from tests.test_train import _job
from pathlib import Path
tmp = Path(sys.argv[1])
launch.run_child(_job(tmp, sys.argv[2], steps=1), tmp / "job.json", threads=1, worker="warm")
print(launch.warm_worker().pid, flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
@pytest.mark.parametrize("end", ["exit", "kill"])
def test_no_worker_outlives_its_daemon(tmp_path, base, end):
    """A clean exit closes the worker (atexit; `serve` closes it too); a killed daemon's worker
    dies by its parent-death signal."""
    proc = subprocess.run([sys.executable, "-c", DAEMON, str(tmp_path), str(base), end], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == (0 if end == "exit" else -signal.SIGKILL), proc.stderr[-2000:]
    assert _gone(int(proc.stdout.split()[-1]))


@pytest.mark.parametrize("mode, cuda, launcher, method, engine, expected", [
    ("auto", False, None, "sft", None, True),        # CPU: warm
    ("auto", False, None, "grpo", None, True),
    ("auto", True, None, "sft", None, False),        # CUDA: fresh unless asked
    ("warm", True, None, "sft", None, True),
    ("warm", True, None, "grpo", "hf", True),        # HF generate: no engine to re-create
    ("warm", True, None, "grpo", "vllm", True),      # TRL's colocated engine: the worker keeps it
    ("fresh", False, None, "sft", None, False),
    ("warm", False, "torchrun --nproc_per_node 2", "sft", None, False),  # a launcher: always fresh
    ("auto", False, "accelerate launch", "sft", None, False),
])
def test_use_worker(monkeypatch, mode, cuda, launcher, method, engine, expected):
    import importlib.util

    import torch
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    job = {"method": method, "backend": "trl", "grpo": {"generation": {"engine": engine or "auto"}}}
    assert launch.use_worker(mode, job, launcher) is expected


def test_unsloths_own_vllm_generation_always_runs_in_a_fresh_child(monkeypatch):
    import importlib.util

    import torch
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    job = {"method": "grpo", "backend": "unsloth", "grpo": {"generation": {"engine": "vllm"}}}
    assert launch.use_worker("warm", job, None) is False  # fast_inference builds it inside its loader


GRPO = {"max_completion_length": 128, "batch_size": 64, "num_generations": 8, "learning_rate": 3e-5}


@pytest.mark.parametrize("method, backend, engine, cuda, expected", [
    ("sft", "trl", None, False, ("trl", "")),                    # one worker per backend
    ("sft", "unsloth", None, True, ("unsloth", "")),             # unsloth's patches stay in its own
    ("grpo", "trl", "hf", True, ("trl", "")),                    # HF generate: no engine to keep
    ("grpo", "trl", "vllm", False, ("trl", "")),                 # CPU: always HF generate
    ("grpo", "trl", "vllm", True, ("trl", '["/m", {"batch_size": 64, "generation": {"engine": "vllm"}, '
                                   '"max_completion_length": 128, "num_generations": 8}]')),  # the engine's settings
])
def test_worker_flavor(monkeypatch, method, backend, engine, cuda, expected):
    import importlib.util

    import torch
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    job = {"method": method, "backend": backend, "base": "/m", "grpo": {**GRPO, "generation": {"engine": engine}}}
    assert launch.worker_flavor(job) == expected


def test_a_kept_engine_differs_only_in_the_learning_rate_not_in_its_flavor(monkeypatch):
    import importlib.util

    import torch
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    job = {"method": "grpo", "backend": "trl", "base": "/m", "grpo": {**GRPO, "generation": {"engine": "vllm"}}}
    other = {**job, "grpo": {**job["grpo"], "learning_rate": 1e-6}}
    longer = {**job, "grpo": {**job["grpo"], "max_completion_length": 256}}
    assert launch.worker_flavor(job) == launch.worker_flavor(other)  # same engine: same worker
    assert launch.worker_flavor(job) != launch.worker_flavor(longer)  # another max_model_len: a new one


class FakeLLM:
    """Stands in for vllm.LLM: counts builds and wake-ups."""
    built = 0

    def __init__(self, **kwargs):
        FakeLLM.built += 1
        self.kwargs, self.woken = kwargs, 0

    def wake_up(self):
        self.woken += 1


def test_the_kept_engine_is_built_once_and_handed_to_each_equal_request():
    from loop.trainers.gpu import KeptEngine
    kept, FakeLLM.built = KeptEngine(), 0
    kept.make = FakeLLM
    first = kept(model="/m", gpu_memory_utilization=0.1, enable_sleep_mode=False)
    again = kept(gpu_memory_utilization=0.1, model="/m", enable_sleep_mode=False)  # order does not matter
    assert again is first and FakeLLM.built == 1 and kept.reused == 1 and first.woken == 0
    with pytest.raises(RuntimeError, match="was built with .*gpu_memory_utilization.*new worker"):
        kept(model="/m", gpu_memory_utilization=0.2, enable_sleep_mode=False)
    assert FakeLLM.built == 1  # never a second engine in one process


def test_a_kept_engine_with_sleep_mode_is_woken_before_it_is_handed_on():
    from loop.trainers.gpu import KeptEngine
    kept = KeptEngine()
    kept.make = FakeLLM
    first = kept(model="/m", enable_sleep_mode=True)
    assert first.woken == 0  # new: awake already
    kept(model="/m", enable_sleep_mode=True)
    assert first.woken == 1  # TRL slept it after the last generation; its start-up sleeps it again


def test_install_puts_the_kept_engine_in_trls_place_once(monkeypatch):
    pytest.importorskip("vllm")
    from trl.generation import vllm_generation

    from loop.trainers.gpu import KeptEngine
    original = vllm_generation.LLM
    monkeypatch.setattr(vllm_generation, "LLM", original)  # undone after the test
    kept = KeptEngine()
    kept.install()
    kept.install()  # twice: still TRL's own class behind it, not itself
    assert vllm_generation.LLM is kept and kept.make is original


@pytest.mark.parametrize("value, ok", [("auto", True), ("warm", True), ("fresh", True), ("hot", False)])
def test_train_worker_key(tmp_path, value, ok):
    from loop.config import Config, load_config
    assert Config().train.worker == "auto"
    if ok:
        assert load_config(None, [f"train.worker={value}"]).train.worker == value
    else:
        with pytest.raises(Exception, match="train.worker"):
            load_config(None, [f"train.worker={value}"])


@pytest.mark.parametrize("started, env, change", [
    ({"A": "1"}, {"A": "1"}, None),                                   # unchanged
    ({"A": "1"}, {"A": "1", "VLLM_X": "0"}, None),                    # added since (a sampler's): handed on
    ({"A": "1"}, {"A": "2"}, None),                                   # changed, not read at start: handed on
    ({"A": "1", "B": "2"}, {"A": "1"}, None),                         # removed, likewise
    ({"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}, "CUDA_VISIBLE_DEVICES '0' -> '1'"),  # its GPU
    ({"OMP_NUM_THREADS": "1"}, {}, "OMP_NUM_THREADS '1' -> None"),   # its threads, gone
    ({}, {"UNSLOTH_PADDING_CHOICE": "padded"}, "UNSLOTH_PADDING_CHOICE None -> 'padded'"),  # read at import
    ({"LOOP_PARENT_PID": "7"}, {"LOOP_PARENT_PID": "8"}, "LOOP_PARENT_PID '7' -> '8'"),  # another daemon
])
def test_start_change(started, env, change):
    assert launch.start_change(started, env) == change


@pytest.mark.parametrize("line, expected", [
    ('{"job": "/j.json", "env": {"A": "1"}}', ("/j.json", {"A": "1"})),  # the job's own environment
    ('{"job": "/j.json"}', ("/j.json", {"S": "0"})),                      # none given: the start's
    ("/j.json\n", ("/j.json", {"S": "0"})),                                # a bare path, as before
    ("\n", ("", {"S": "0"})),                                              # a blank line: skipped
])
def test_worker_reads_a_job_line(line, expected):
    from loop.trainers.worker import read_job
    assert read_job(line, {"S": "0"}) == expected


@pytest.mark.slow
def test_a_prestarted_worker_takes_the_first_job_and_sees_variables_set_since(tmp_path, base, monkeypatch):
    """launch.prestart starts the worker the job goes to (it imports meanwhile); the job then runs
    in that process, with a variable the daemon set after the worker started."""
    job = _job(tmp_path, base, out="a", steps=1)
    assert launch.prestart(job, tmp_path / "pre.json", 1, None, "warm")
    pid = launch._WORKERS["trl"].pid
    assert not launch.prestart(job, tmp_path / "pre.json", 1, None, "warm")  # up already: not started twice
    assert not launch.prestart(job, tmp_path / "pre.json", 1, None, "fresh")  # fresh: nothing to start
    monkeypatch.setenv("LOOP_TEST_SET_SINCE", "yes")  # not a start variable (start_change): handed on
    m = _warm(job, tmp_path / "a.json")
    assert m["worker"] == "warm" and m["steps"] == 1
    assert launch.warm_worker().pid == pid and launch.warm_worker().jobs == 1


def test_each_job_runs_in_the_environment_its_line_gives(monkeypatch):
    """The worker puts each job's environment in place before it runs (worker.serve)."""
    import io

    from loop.trainers import worker
    seen = []
    monkeypatch.setattr(worker, "run_job", lambda path: seen.append((str(path), os.environ.get("LOOP_T"))))
    monkeypatch.setattr(worker, "fresh_state", lambda env: (os.environ.clear(), os.environ.update(env)))
    saved = dict(os.environ)
    try:
        lines = io.StringIO('{"job": "/a", "env": {"LOOP_T": "1"}}\n/b\n{"job": "/c", "env": {"LOOP_T": "3"}}\n')
        reply = io.StringIO()
        worker.serve(lines, reply, {"LOOP_T": "start"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert seen == [("/a", "1"), ("/b", "start"), ("/c", "3")]
    assert [json.loads(x) for x in reply.getvalue().splitlines()][1::2] == [{"ok": True}] * 3


@pytest.mark.slow
def test_a_run_starts_its_worker_before_round_0_and_trains_in_it(tiny_cfg, monkeypatch):
    """run_rounds on the tiny config (train.worker warm, GRPO on every problem): one worker, started
    with the preload before the baseline evaluation, runs round 1's GRPO job (the tiny model
    verifies no chain, so SFT has nothing to train)."""
    from loop.runner import run_rounds
    started = []
    real = launch.Worker.__init__

    def spy(self, env, flavor=("trl", ""), preload=None):
        started.append(preload)
        real(self, env, flavor, preload)

    monkeypatch.setattr(launch.Worker, "__init__", spy)
    tiny_cfg.train.worker = "warm"
    tiny_cfg.train.grpo.every, tiny_cfg.train.grpo.band = 1, (-1.0, 2.0)
    ctx = run_rounds(tiny_cfg, 1)
    assert len(started) == 1 and started[0] is not None and started[0].name == "prestart.json"
    assert launch.warm_worker().jobs == 1
    from store.db import Store
    with Store(tiny_cfg.store_path, read_only=True) as st:
        rows = st.query("SELECT metrics FROM models WHERE run_id = ?", [ctx.run_id])
    assert [json.loads(r["metrics"])["worker"] for r in rows] == ["warm"]


@pytest.mark.parametrize("sample, evaluate, kv_gib, safe", [
    ("vllm", "auto", None, False),    # the sampler's engine measures free memory at its start
    ("vllm", "auto", 12.0, True),     # its KV cache given: nothing measured
    ("auto", "auto", None, False),    # auto may be vllm
    ("hf", "auto", None, True),       # evaluation follows sampling: HF generate, no engine
    ("hf", "vllm", None, False),      # evaluation by its own vLLM engine
    ("openai", "auto", None, False),  # a teacher samples; evaluation then uses vllm when installed
    ("openai", "hf", None, True),
])
def test_no_measuring_engine(sample, evaluate, kv_gib, safe):
    from loop.config import Config
    from loop.stages.train import no_measuring_engine
    cfg = Config()
    cfg.sample.backend, cfg.evaluate.backend, cfg.sample.vllm.kv_cache_gib = sample, evaluate, kv_gib
    assert no_measuring_engine(cfg) is safe


def test_an_early_engine_gets_its_extra_arguments_once_and_keeps_the_jobs_key():
    from loop.trainers.gpu import KeptEngine
    built = []
    kept = KeptEngine()
    kept.make = lambda **kw: built.append(kw) or object()
    kept.extra = {"kv_cache_memory_bytes": 123}
    engine = kept(model="/m", seed=0)
    assert built == [{"model": "/m", "seed": 0, "kv_cache_memory_bytes": 123}] and kept.extra == {}
    assert kept(model="/m", seed=0) is engine and kept.reused == 1  # the job's own arguments: the same key
    with pytest.raises(RuntimeError):
        kept(model="/m", seed=1)


def test_the_early_flag_does_not_change_the_workers_flavor(monkeypatch):
    import importlib.util

    import torch
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    job = {"method": "grpo", "backend": "trl", "base": "/m", "grpo": {**GRPO, "generation": {"engine": "vllm"}}}
    early = {**job, "grpo": {**GRPO, "generation": {"engine": "vllm", "early": True}}}
    assert launch.worker_flavor(early) == launch.worker_flavor(job)


@pytest.mark.slow
def test_an_engine_built_early_is_the_one_the_jobs_trainer_is_handed(tmp_path, base, monkeypatch):
    """build_engine_early runs TRL's own GRPOTrainer set-up on one row, so the engine it builds
    (a stand-in for vllm.LLM here: no GPU) has the arguments the job's trainer then asks for: the
    job's trainer is handed it (KEPT.reused), and only the early build got kv_cache_memory_bytes."""
    import importlib.util

    from loop.trainers import gpu, trl
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    built = []

    class Engine:
        def __init__(self, **kw):
            built.append(kw)

    monkeypatch.setattr(gpu, "KEPT", gpu.KeptEngine())
    gpu.KEPT.enabled = True
    from trl.generation import vllm_generation
    monkeypatch.setattr(vllm_generation, "LLM", Engine)
    monkeypatch.setattr(trl, "colocated_vllm", lambda job, cuda: (
        gpu.KEPT.install(), ("vllm-colocate", dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.1,
                                                   vllm_max_model_length=528)))[1])
    job = _job(tmp_path, base, method="grpo", steps=1)
    job["grpo"]["generation"] = {"engine": "vllm", "early": True}
    saved = dict(os.environ)
    try:
        assert trl.build_engine_early(job, str(tmp_path / "early"))
        assert len(built) == 1 and built[0]["kv_cache_memory_bytes"] == gpu.early_kv_bytes(base, job)
        model, peft_config, tok = trl._model_and_peft(job)
        from datasets import Dataset
        ds = Dataset.from_parquet(job["data"])
        trl.grpo_trainer({**job, "tmp": str(tmp_path / "t")}, model, tok, False, peft_config, "GRPO",
                         trl.colocated_vllm(job, False), ds)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert len(built) == 1 and gpu.KEPT.reused == 1  # the same arguments: no second engine
