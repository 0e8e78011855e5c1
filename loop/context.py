"""The state a round's stages share: config, store, run id, current model, sampler.

The current model version is derived from the store (the newest accepted model
of this run), never kept only in memory, so a restarted process sees the same.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.config import Config
from store.db import Store


@dataclass
class RunContext:
    cfg: Config
    store: Store
    run_id: str
    base_dir: Path                      # resolved base model folder
    base_version: str
    lock: Any = field(default=None, repr=False)  # store.lock.StoreLock held while writing
    _sampler: Any = field(default=None, repr=False)
    _sampler_model: str | None = field(default=None, repr=False)
    _eval_sampler: Any = field(default=None, repr=False)
    _eval_model: str | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run.dir)

    def round_seed(self, r: int, salt: str = "") -> int:
        h = hashlib.sha256(f"{self.cfg.run.seed}:{r}:{salt}".encode()).hexdigest()
        return int(h[:8], 16)

    def current_model(self) -> tuple[str, Path | None]:
        """(model_version, adapter folder or None for the base)."""
        row = self.store.query(
            "SELECT model_version, path FROM models WHERE run_id = ? AND kind = 'lora' "
            "AND coalesce(json_extract_string(metrics, '$.accepted'), 'true') = 'true' "
            "ORDER BY round DESC, created_at DESC LIMIT 1", [self.run_id])
        if not row:
            return self.base_version, None
        return row[0]["model_version"], Path(row[0]["path"])

    def model_parent(self, version: str) -> str | None:
        """The parent model version of `version` (None for the base model)."""
        return self.store.scalar("SELECT parent FROM models WHERE model_version = ?", [version])

    def sampler(self):
        """The sampler loaded with the current model (switched in place when it changes)."""
        from loop.sample import build_sampler
        version, adapter = self.current_model()
        if self._sampler is None:
            self._sampler = build_sampler(self.cfg.sample.backend, self.base_dir, adapter,
                                          self.cfg.sample, self.cfg.model)
        elif self._sampler_model != version:
            self._sampler.set_adapter(adapter)
        self._sampler_model = version
        return self._sampler

    def eval_sampler(self):
        """The sampler that evaluates the trained model: the sample stage's when that runs the
        local model, else (a teacher endpoint samples) a local one of its own."""
        from loop.sample import build_sampler, choose_backend, eval_backend
        name = eval_backend(self.cfg.evaluate.backend, self.cfg.sample.backend)
        if choose_backend(name) == choose_backend(self.cfg.sample.backend):
            return self.sampler()
        version, adapter = self.current_model()
        if self._eval_sampler is None:
            self._eval_sampler = build_sampler(name, self.base_dir, adapter, self.cfg.sample, self.cfg.model)
        elif self._eval_model != version:
            self._eval_sampler.set_adapter(adapter)
        self._eval_model = version
        return self._eval_sampler

    def gpu_released(self):
        """A context: the loaded samplers free their GPU memory (vLLM sleep mode) for the block
        (a training child on the same GPU) and take it back after (loop.samplers.share)."""
        from loop.samplers.share import released
        return released([self._sampler, self._eval_sampler])

    def close(self) -> None:
        for s in (self._sampler, self._eval_sampler):
            if s is not None:
                s.close()
        self._sampler = self._eval_sampler = None
        self.store.close()
        if self.lock is not None:
            self.lock.release()

    # --- step bookkeeping ----------------------------------------------------------
    def mark_running(self, r: int, stage: str) -> None:
        """Record that a stage starts (its own small transaction, before any output):
        `inspect` shows it as the unfinished stage if the process dies; attempts > 1 = resumed."""
        with self.store.transaction():
            self.store.con.execute(
                "INSERT INTO steps (run_id, round, stage, status, started_at, finished_at, attempts) "
                "VALUES (?, ?, ?, 'running', now(), NULL, 1) ON CONFLICT (run_id, round, stage) DO UPDATE "
                "SET status = 'running', started_at = now(), finished_at = NULL, attempts = steps.attempts + 1 "
                "WHERE steps.status <> 'done'", [self.run_id, r, stage])

    def mark_done(self, r: int, stage: str, info: dict) -> None:
        """Call inside the stage's output transaction: outputs and 'done' commit together."""
        self.store.insert_rows("steps", [{"run_id": self.run_id, "round": r, "stage": stage,
                                          "status": "done", "info": info, "attempts": 1}],
                               conflict="(run_id, round, stage) DO UPDATE SET status = excluded.status, "
                                        "info = excluded.info, finished_at = now()")

    def is_done(self, r: int, stage: str) -> bool:
        return bool(self.store.scalar("SELECT count(*) FROM steps WHERE run_id = ? AND round = ? "
                                      "AND stage = ? AND status = 'done'", [self.run_id, r, stage]))
