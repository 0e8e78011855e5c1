"""The scheduler: runs rounds of stages, resumably.

A round is the stages in STAGES order. Each stage commits its outputs together
with its `steps` row; a stage whose step is done is skipped on restart. So
`loop start` after a crash (or kill) resumes the unfinished round at the
unfinished stage, and `--rounds N` means "this run has N rounds when done".
Round 0 holds only the baseline evaluation.

Invariants:
- One writer: `open_run` takes the store's lock (`store.lock`) before opening it and
  holds it until `RunContext.close()`; a second `loop start` is refused.
- A stage is marked 'running' (own transaction) before it starts and 'done' in the
  same transaction as its outputs; a round is marked done, idempotently, whenever
  all its stages are done, so a kill between the last stage and that mark heals.
- Every write is idempotent (content-hash keys, ON CONFLICT), so any prefix of a
  run followed by a restart ends in the same store as an uninterrupted run.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Callable

from loop.config import Config
from loop.context import RunContext
from loop.progress import console

STAGE_NAMES = ["propose", "sample", "verify", "train", "evaluate"]


def _stages() -> dict[str, Callable]:
    from loop import evaluate, propose, sample, train, verify
    return {"propose": propose.stage, "sample": sample.stage, "verify": verify.stage,
            "train": train.stage, "evaluate": evaluate.stage}


def open_run(cfg: Config) -> RunContext:
    """Lock and open (or create) the run in the configured store; resolve the base model."""
    from loop.models import model_hash, resolve_model
    from store.db import Store
    from store.lock import StoreLock, describe
    base_dir = resolve_model(cfg.model.name, cfg.model.cache_dir)
    base_version = model_hash(base_dir)
    lock = StoreLock(cfg.store_path).acquire()
    try:
        if lock.took_over:
            console.print(f"[yellow]took over a stale store lock[/] from a process that is gone "
                          f"({describe(lock.took_over, held=False)})")
        store = Store(cfg.store_path)
        run_id = _register_run(store, cfg, base_dir, base_version)
        run_dir = Path(cfg.run.dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    except BaseException:
        lock.release()
        raise
    return RunContext(cfg=cfg, store=store, run_id=run_id, base_dir=base_dir,
                      base_version=base_version, lock=lock)


def _register_run(store, cfg: Config, base_dir: Path, base_version: str) -> str:
    """The latest run (resumed) or a new one; its config and base model rows, idempotently."""
    from loop import __version__
    row = store.query("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
    run_id = row[0]["run_id"] if row else f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with store.transaction():
        store.insert_rows("runs", [{"run_id": run_id, "config": cfg.model_dump(mode="json"),
                                    "loop_version": __version__}],
                          conflict="(run_id) DO UPDATE SET config = excluded.config")
        store.insert_rows("models", [{"model_version": base_version, "parent": None, "run_id": run_id,
                                      "round": 0, "kind": "base", "base_path": str(base_dir),
                                      "path": str(base_dir), "config": {"name": cfg.model.name}}])
    return run_id


def run_rounds(cfg: Config, rounds: int) -> RunContext:
    """Run (or resume) until the run has `rounds` finished rounds."""
    _set_threads(cfg.run.threads)
    ctx = open_run(cfg)
    stages = _stages()
    console.print(f"[bold]run[/] {ctx.run_id}  store {cfg.store_path}  model {cfg.model.name}")
    try:
        if not ctx.is_done(0, "evaluate"):
            _run_stage(ctx, 0, "evaluate", stages["evaluate"])
        for r in range(1, rounds + 1):
            if not all(ctx.is_done(r, s) for s in STAGE_NAMES):
                _begin_round(ctx, r)
                for name in STAGE_NAMES:
                    if not ctx.is_done(r, name):
                        _run_stage(ctx, r, name, stages[name])
            _end_round(ctx, r)
    finally:
        ctx.close()
    return ctx


def _run_stage(ctx: RunContext, r: int, name: str, fn: Callable) -> None:
    t0 = time.time()
    ctx.mark_running(r, name)
    console.print(f"  round {r} {name:<8} started", style="dim", highlight=False)
    info = fn(ctx, r)
    brief = {k: v for k, v in info.items() if not isinstance(v, (list, dict))}
    console.print(f"  round {r} {name:<8} {time.time() - t0:6.1f}s  {json.dumps(brief, default=str)}")


def _begin_round(ctx: RunContext, r: int) -> None:
    version, _ = ctx.current_model()
    with ctx.store.transaction():
        ctx.store.insert_rows("rounds", [{"run_id": ctx.run_id, "round": r, "status": "running",
                                          "model_version": version}])


def _end_round(ctx: RunContext, r: int) -> None:
    """Idempotent: only a round not yet marked done is updated (its finish time is kept)."""
    with ctx.store.transaction():
        ctx.store.con.execute("UPDATE rounds SET status = 'done', finished_at = current_timestamp "
                              "WHERE run_id = ? AND round = ? AND status <> 'done'", [ctx.run_id, r])


def _set_threads(n: int | None) -> None:
    if n:
        import torch
        torch.set_num_threads(n)
