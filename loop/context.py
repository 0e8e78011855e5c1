"""The state a round's stages share (`RunContext`) and the stage protocol.

Contract:
- A stage is `stage(ctx, r) -> StageResult`; the result is the step's info as stored in
  `steps.info`. A stage writes its outputs only through `ctx.commit(r, name, info, *writes)`,
  which runs the writes and marks the step done in ONE transaction: a kill at any point
  leaves either all of a stage or none of it.
- The current model version is derived from the store (the newest accepted model of this
  run), never kept only in memory, so a restarted process sees the same.
- Samplers are built once per run and switched to a new adapter in place; `gpu_released()`
  lets the train stage hand a shared GPU to the training process (loop.samplers.share).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loop.config import Config
from loop.samplers import Sampler, build_sampler, choose_backend, eval_backend
from loop.samplers.share import released
from store import pipeline, runs
from store.db import Store

StageResult = dict[str, Any]  # the step's info, as recorded in `steps.info`
Write = Callable[[Store], None]


class Stage(Protocol):
    def __call__(self, ctx: RunContext, r: int) -> StageResult: ...


@dataclass
class RunContext:
    cfg: Config
    store: Store
    run_id: str
    base_dir: Path  # resolved base model folder
    base_version: str
    lock: Any = field(default=None, repr=False)  # store.lock.StoreLock held while writing
    _samplers: dict[str, Sampler] = field(default_factory=dict, repr=False)  # backend -> sampler
    _loaded: dict[str, str] = field(default_factory=dict, repr=False)  # backend -> model version

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run.dir)

    def round_seed(self, r: int, salt: str = "") -> int:
        h = hashlib.sha256(f"{self.cfg.run.seed}:{r}:{salt}".encode()).hexdigest()
        return int(h[:8], 16)

    def current_model(self) -> tuple[str, Path | None]:
        """(model_version, adapter folder or None for the base)."""
        row = pipeline.current_model(self.store, self.run_id)
        if not row:
            return self.base_version, None
        return row["model_version"], Path(row["path"])

    def model_parent(self, version: str) -> str | None:
        """The parent model version of `version` (None for the base model)."""
        return pipeline.model_parent(self.store, version)

    # --- samplers ------------------------------------------------------------------
    def sampler(self) -> Sampler:
        """The sample stage's sampler, loaded with the current model."""
        return self._sampler_for(choose_backend(self.cfg.sample.backend))

    def eval_sampler(self) -> Sampler:
        """The sampler that evaluates the trained model: the sample stage's when that runs the
        local model, else (a teacher endpoint samples) a local one of its own."""
        name = eval_backend(self.cfg.evaluate.backend, self.cfg.sample.backend)
        return self._sampler_for(choose_backend(name))

    def use_sampler(self, sampler: Sampler) -> None:
        """Install `sampler`, already loaded with the current model, as the sample stage's (an
        embedding application's engine, or a test's scripted one)."""
        backend = choose_backend(self.cfg.sample.backend)
        self._samplers[backend] = sampler
        self._loaded[backend] = self.current_model()[0]

    def _sampler_for(self, backend: str) -> Sampler:
        version, adapter = self.current_model()
        if backend not in self._samplers:
            self._samplers[backend] = build_sampler(backend, self.base_dir, adapter, self.cfg.sample, self.cfg.model)
        elif self._loaded.get(backend) != version:
            self._samplers[backend].set_adapter(adapter)
        self._loaded[backend] = version
        return self._samplers[backend]

    def gpu_released(self) -> AbstractContextManager[list[Sampler]]:
        """A context: the loaded samplers free their GPU memory (vLLM sleep mode) for the block
        (a training child on the same GPU) and take it back after (loop.samplers.share)."""
        return released(list(self._samplers.values()))

    def close(self) -> None:
        for s in self._samplers.values():
            s.close()
        self._samplers.clear()
        self.store.close()
        if self.lock is not None:
            self.lock.release()

    # --- steps ---------------------------------------------------------------------
    def commit(self, r: int, stage: str, info: StageResult, *writes: Write) -> StageResult:
        """Run `writes` and mark the step done in one transaction; return `info`."""
        with self.store.transaction():
            for write in writes:
                write(self.store)
            runs.mark_done(self.store, self.run_id, r, stage, info)
        return info

    def mark_running(self, r: int, stage: str) -> None:
        runs.mark_running(self.store, self.run_id, r, stage)

    def is_done(self, r: int, stage: str) -> bool:
        return runs.is_done(self.store, self.run_id, r, stage)
