"""TRL + PEFT backend: SFTTrainer and GRPOTrainer with a LoRA adapter, CPU or GPU.

On CPU: fp32, no gradient checkpointing, `use_cpu=True`, and the pure-torch
fallback for TRL's Triton-only fused LM head (loop.trainers.trl_compat).
On CUDA: the frozen base in bf16 (where supported), LoRA weights in fp32 (PEFT's
default), bf16 autocast: the usual TRL recipe, half the base memory of fp32.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

from loop.models import quiet_transformers
from loop.progress import train_callback
from loop.samplers.vllm import set_env
from loop.trainers import gpu, trl_compat
from loop.trainers.args import extra_args
from loop.trainers.gpu import DevicePeak
from rewards import build_reward


def _setup(job: dict):
    import torch

    trl_compat.install()
    quiet_transformers()
    watch_device_memory()
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    return torch.cuda.is_available()


def _model_and_peft(job: dict):
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(job["base"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(job["base"], dtype=base_dtype())
    if job.get("parent_adapter"):  # continue the current adapter
        return PeftModel.from_pretrained(model, job["parent_adapter"], is_trainable=True), None, tok
    lora = job["lora"]
    return (
        model,
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        ),
        tok,
    )


def base_dtype():
    """bf16 for the frozen base on a bf16-capable GPU, else fp32 (CPU training stays fp32)."""
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if cuda else torch.float32


def _common_args(job: dict, cfg: dict, cuda: bool) -> dict:
    return dict(
        output_dir=str(Path(job["tmp"]) / "trainer"),
        max_steps=cfg["max_steps"],
        per_device_train_batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[t for t in job.get("report_to") or [] if t != "none"],  # TRL's logs: loop.tracking
        run_name=Path(job["tracker_dir"]).name if job.get("tracker_dir") else None,
        use_cpu=not cuda,
        bf16=cuda,
        seed=job["seed"],
        data_seed=job["seed"],
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=checkpointing(job, cuda),
    )


def checkpointing(job: dict, cuda: bool) -> bool:
    """train.gradient_checkpointing for trl: on/offload recompute; auto recomputes for GRPO on
    CUDA only (a 64-completion step's activations are most of its peak memory; the measured cost
    is in bench/results/README.md), not on CPU or for SFT."""
    mode = job.get("gradient_checkpointing", "auto")
    if mode == "auto":
        return cuda and job.get("method") == "grpo"
    return cuda and mode in ("on", "offload")


def step_timer():
    """A TrainerCallback recording each optimizer step's wall time (for s/step after warm-up) and
    the profiled phase totals at its end (per-step phase times are their differences)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.phases: list[dict[str, float]] = []  # _PHASES at each step's end

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t0)
            self.phases.append(dict(_PHASES))

    return StepTimer()


_PHASES: dict[str, float] = {}  # this job's; a warm worker's next job starts from none
_DEVICE_PEAK = None  # loop.trainers.gpu.DevicePeak of this job


def watch_device_memory() -> None:
    """Start sampling the device's used memory (metrics: device_peak_gb) and the phase times
    anew; once per job (a warm worker runs several: loop.trainers.worker)."""
    global _DEVICE_PEAK
    if _DEVICE_PEAK is not None:
        _DEVICE_PEAK.stop()
    _DEVICE_PEAK = DevicePeak().start()
    _PHASES.clear()


def phase_times() -> dict[str, float]:
    """Seconds per TRL profiling block (generate, each reward, compute_loss, ...), summed over the
    run. TRL times these blocks but only reports them to wandb/mlflow/trackio; this keeps them in
    the train metrics (the model's row in the store, bench/train_gpu.py) so a slow phase shows."""
    from trl.extras.profiling import ProfilingContext

    if not getattr(ProfilingContext, "_loop_patched", False):
        original = ProfilingContext._log_metrics

        def log_metrics(self, duration: float) -> None:
            key = self.name.split(".", 1)[-1]  # drop the trainer class: same key for both backends
            _PHASES[key] = _PHASES.get(key, 0.0) + duration
            original(self, duration)

        ProfilingContext._log_metrics = log_metrics  # type: ignore[method-assign]  # TRL has no hook for it
        ProfilingContext._loop_patched = True  # type: ignore[attr-defined]
    return _PHASES


def _quiet(trainer) -> None:
    """Our rich bar shows progress; drop transformers' per-step dict printer. Start phase timing."""
    from transformers.trainer_callback import PrinterCallback

    phase_times()
    trainer.remove_callback(PrinterCallback)


def _finish(trainer, result, n_examples: int, tmp: str) -> dict:
    trainer.model.save_pretrained(tmp)
    timer = next((c for c in trainer.callback_handler.callbacks if type(c).__name__ == "StepTimer"), None)
    hist = trainer.state.log_history
    losses = [h["loss"] for h in hist if "loss" in h]
    rewards = [h["reward"] for h in hist if "reward" in h]
    return {
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": trainer.state.global_step,
        "examples": n_examples,
        "runtime_s": result.metrics.get("train_runtime"),
        "first_reward": rewards[0] if rewards else None,
        "last_reward": rewards[-1] if rewards else None,
        "peak_memory_gb": _peak_memory(),
        "step_times": timer.times if timer else [],
        "device_peak_gb": _DEVICE_PEAK.stop() if _DEVICE_PEAK else None,
        "phase_s": {k: round(v, 3) for k, v in sorted(_PHASES.items())},
        "phase_steps": _per_step(timer.phases if timer else []),
    }


def _per_step(snapshots: list[dict[str, float]]) -> dict[str, list[float]]:
    """Cumulative phase snapshots -> seconds per step for each phase."""
    keys = sorted({k for s in snapshots for k in s})
    prev: dict[str, float] = {}
    out: dict[str, list[float]] = {k: [] for k in keys}
    for snap in snapshots:
        for k in keys:
            out[k].append(round(snap.get(k, 0.0) - prev.get(k, 0.0), 3))
        prev = snap
    return out


def _peak_memory() -> float | None:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return peak_rss_kib() / 2**20  # CPU: peak RSS


def peak_rss_kib() -> int:
    """This process's peak RSS (KiB) since it started or since a warm worker's reset before
    this job (VmHWM, which /proc/self/clear_refs resets; ru_maxrss where /proc has none)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")), 0)


def sft_args(job: dict, cuda: bool) -> dict:
    """SFTConfig arguments shared by both backends; `train.*extra_args` last (loop.trainers.args:
    the config refuses the keys loop owns, so they override only loop's defaults)."""
    cfg = job["sft"]
    return dict(
        _common_args(job, cfg, cuda),
        gradient_accumulation_steps=cfg["grad_accum"],
        max_length=cfg["max_seq_len"],
        pad_to_multiple_of=cfg.get("pad_to_multiple_of"),
        **extra_args(job, "sft"),
    )


def grpo_args(job: dict, cuda: bool, generation: dict | None = None) -> dict:
    """GRPOConfig arguments shared by both backends; `generation`: the arguments that select its
    generation engine (colocated_vllm); `train.*extra_args` last, as in sft_args."""
    cfg = job["grpo"]
    _, weights = reward_funcs(job, build=False)
    return dict(
        _common_args(job, cfg, cuda),
        num_generations=cfg["num_generations"],
        max_completion_length=cfg["max_completion_length"],
        beta=cfg["beta"],
        temperature=cfg["temperature"],
        reward_weights=weights,
        log_completions=False,
        **(generation or {}),
        **extra_args(job, "grpo"),
    )


def sft(job: dict) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cuda = _setup(job)
    model, peft_config, tok = _model_and_peft(job)
    ds = Dataset.from_parquet(job["data"])
    args = SFTConfig(**sft_args(job, cuda))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[train_callback("train (SFT)"), step_timer()],
    )
    _quiet(trainer)
    return _finish(trainer, trainer.train(), len(ds), job["tmp"])


def reward_funcs(job: dict, build: bool = True) -> tuple[list, list[float]]:
    """The job's reward functions (none unless `build`) and their weights."""
    funcs = [build_reward(r["name"], r["params"]) for r in job["rewards"]] if build else []
    return funcs, [r["weight"] for r in job["rewards"]]


def run_grpo(
    job: dict,
    model,
    tok,
    cuda: bool,
    peft_config=None,
    label: str = "GRPO",
    generation: tuple[str, dict] = ("hf", {}),
    dataset=None,
) -> dict:
    """GRPOTrainer on the job's prompts with its rewards and weights (shared by both backends and
    vision GRPO); `generation`: (its name for the metrics, GRPOConfig arguments that select it);
    `dataset`: the rows to train on (None: the job's Parquet snapshot); `tok`: a tokenizer or a
    VLM's processor."""
    from datasets import Dataset

    ds = Dataset.from_parquet(job["data"]) if dataset is None else dataset
    kept = gpu.KEPT.reused
    trainer = grpo_trainer(job, model, tok, cuda, peft_config, label, generation, ds)
    metrics = {**_finish(trainer, trainer.train(), len(ds), job["tmp"]), "generation": generation[0]}
    if generation[0] != "hf":  # whether this job built its engine or was handed the warm worker's
        metrics["engine"] = "kept" if gpu.KEPT.reused > kept else "new"
    return metrics


def grpo_trainer(job: dict, model, tok, cuda: bool, peft_config, label: str, generation: tuple[str, dict], ds):
    """TRL's GRPOTrainer for the job (its __init__ builds the colocated vLLM engine, if any)."""
    from trl import GRPOConfig, GRPOTrainer

    funcs, _ = reward_funcs(job)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=GRPOConfig(**grpo_args(job, cuda, generation[1])),
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[train_callback(f"train ({label})"), step_timer()],
    )
    _quiet(trainer)
    return trainer


def build_engine_early(job: dict, scratch: str) -> bool:
    """Build the GRPO job's colocated engine now, in this warm worker (gpu.KEPT keeps it): TRL's
    own trainer on one prompt row, so the engine's arguments are those the job's trainer will pass,
    then dropped; the engine's KV cache sized explicitly (gpu.early_kv_bytes). True when built."""
    from datasets import Dataset

    cuda = _setup(job)
    generation = colocated_vllm(job, cuda)
    if generation[0] == "hf" or not gpu.KEPT.enabled or gpu.KEPT.engine is not None:
        return False
    gpu.KEPT.extra = {"kv_cache_memory_bytes": gpu.early_kv_bytes(job["base"], job)}
    job = {**job, "parent_adapter": None, "tmp": scratch, "report_to": []}
    model, peft_config, tok = _model_and_peft(job)
    row = Dataset.from_list([{"prompt": [{"role": "user", "content": "1 + 1"}], "answer": "2"}])
    try:
        trainer = grpo_trainer(job, model, tok, cuda, peft_config, "GRPO", generation, row)
    finally:
        gpu.KEPT.extra = {}
    del trainer, model
    return gpu.KEPT.engine is not None


def colocated_vllm(job: dict, cuda: bool) -> tuple[str, dict]:
    """GRPO generation for this backend: TRL's colocated vLLM engine on CUDA when
    loop.trainers.gpu.generation_engine says vllm, else Hugging Face generate."""
    if gpu.generation_engine(job, cuda, auto=gpu.AUTO["trl"]) != "vllm":
        return "hf", {}
    import torch

    set_env()  # quiet logs (TRL's colocated engine runs in-process: external_launcher)
    if gpu.KEPT.enabled:
        gpu.KEPT.install()  # a warm worker keeps its engine for the next job
    share = gpu.engine_share(job["base"], job, torch.cuda.mem_get_info()[1])
    standby = bool((job["grpo"].get("generation") or {}).get("standby"))
    return "vllm-colocate", dict(
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=share,
        vllm_max_model_length=job["grpo"]["max_completion_length"] + gpu.PROMPT_TOKENS,
        vllm_enable_sleep_mode=standby,
    )


def preload(job: dict) -> None:
    """What a job of this kind imports before its model loads (a warm worker does it ahead of
    its first job: loop.trainers.worker); vllm too where its GRPO generates with it."""
    cuda = _setup(job)
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    if job.get("method") == "grpo" and gpu.generation_engine(job, cuda, auto=gpu.AUTO["trl"]) == "vllm":
        set_env()
        import vllm  # noqa: F401

        if (job["grpo"].get("generation") or {}).get("early"):  # the train stage says when it is safe
            try:
                build_engine_early(job, job["out"] + ".early")
            finally:
                shutil.rmtree(job["out"] + ".early", ignore_errors=True)


def grpo(job: dict) -> dict:
    cuda = _setup(job)
    model, peft_config, tok = _model_and_peft(job)
    return run_grpo(job, model, tok, cuda, peft_config, generation=colocated_vllm(job, cuda))
