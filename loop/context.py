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
    _sampler: Any = field(default=None, repr=False)
    _sampler_model: str | None = field(default=None, repr=False)

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

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        self.store.close()

    # --- step bookkeeping (call inside the stage's transaction) -----------------
    def mark_done(self, r: int, stage: str, info: dict) -> None:
        self.store.insert_rows("steps", [{"run_id": self.run_id, "round": r, "stage": stage,
                                          "status": "done", "info": info}],
                               conflict="(run_id, round, stage) DO UPDATE SET status = excluded.status, "
                                        "info = excluded.info, finished_at = now()")

    def is_done(self, r: int, stage: str) -> bool:
        return bool(self.store.scalar("SELECT count(*) FROM steps WHERE run_id = ? AND round = ? "
                                      "AND stage = ? AND status = 'done'", [self.run_id, r, stage]))
