"""Run bookkeeping: the `runs`, `rounds` and `steps` tables.

Contract:
- A run is registered idempotently (`register_run`): the latest run is resumed, its
  config row rewritten; otherwise (or with `new_run`) a new id is made. The run's
  result config and its hash are pinned when the run is made and never rewritten;
  `check` (a callable given the pinned tree, or the old `config` for runs from before
  migration 006) runs first and may raise: nothing is written then.
- A stage's step is `running` from `mark_running` (its own small transaction, before any
  output) and `done` from `mark_done`, which the caller runs inside the transaction that
  writes the stage's outputs, so outputs and the mark commit together.
- A round is done, idempotently, once every stage is (`end_round` changes nothing twice).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from store.db import Store


def register_run(
    store: Store,
    config: dict[str, Any],
    loop_version: str,
    result_config: dict[str, Any] | None = None,
    config_hash: str | None = None,
    new_run: bool = False,
    check: Callable[[str, dict[str, Any]], None] | None = None,
) -> str:
    """The latest run (resumed) or a new one, with its config, idempotently."""
    with store.session():
        row = None if new_run else latest_pinned(store)
        if row and check is not None:
            check(row["run_id"], row["pinned"])
        run_id = row["run_id"] if row else f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with store.transaction():
            store.insert_rows(
                "runs",
                [
                    {
                        "run_id": run_id,
                        "config": config,
                        "loop_version": loop_version,
                        "result_config": result_config,
                        "config_hash": config_hash,
                    }
                ],
                conflict="(run_id) DO UPDATE SET config = excluded.config, result_config = "
                "coalesce(runs.result_config, excluded.result_config), config_hash = "
                "coalesce(runs.config_hash, excluded.config_hash)",
            )
    return run_id


def latest_pinned(store: Store) -> dict[str, Any] | None:
    """{run_id, pinned, hashed}: the latest run and the config it pinned (its result_config, or
    for a run from before migration 006 its last `config`); None for an empty store."""
    rows = store.query("SELECT run_id, result_config, config FROM runs ORDER BY created_at DESC LIMIT 1")
    if not rows:
        return None
    raw = rows[0]["result_config"] or rows[0]["config"]
    pinned = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return {"run_id": rows[0]["run_id"], "pinned": pinned, "hashed": rows[0]["result_config"] is not None}


def mark_running(store: Store, run_id: str, r: int, stage: str) -> None:
    """Record that a stage starts (own transaction); attempts > 1 means it was resumed."""
    with store.transaction():
        store.con.execute(
            "INSERT INTO steps (run_id, round, stage, status, started_at, finished_at, attempts) "
            "VALUES (?, ?, ?, 'running', now(), NULL, 1) ON CONFLICT (run_id, round, stage) DO UPDATE "
            "SET status = 'running', started_at = now(), finished_at = NULL, attempts = steps.attempts + 1 "
            "WHERE steps.status <> 'done'",
            [run_id, r, stage],
        )


def mark_done(store: Store, run_id: str, r: int, stage: str, info: dict[str, Any]) -> None:
    """Call inside the stage's output transaction: outputs and 'done' commit together."""
    store.insert_rows(
        "steps",
        [{"run_id": run_id, "round": r, "stage": stage, "status": "done", "info": info, "attempts": 1}],
        conflict="(run_id, round, stage) DO UPDATE SET status = excluded.status, "
        "info = excluded.info, finished_at = now()",
    )


def is_done(store: Store, run_id: str, r: int, stage: str) -> bool:
    return bool(
        store.scalar(
            "SELECT count(*) FROM steps WHERE run_id = ? AND round = ? AND stage = ? AND status = 'done'",
            [run_id, r, stage],
        )
    )


def finished_rounds(store: Store, run_id: str, stages: list[str]) -> int:
    """How many rounds (1..N) of the run have every one of `stages` done."""
    return store.scalar(
        "SELECT count(*) FROM (SELECT round FROM steps WHERE run_id = ? AND round >= 1 AND status = 'done' "
        "AND stage IN (SELECT unnest(?::VARCHAR[])) GROUP BY round HAVING count(DISTINCT stage) = ?)",
        [run_id, stages, len(stages)],
    )


def step_infos(store: Store, run_id: str, r: int) -> dict[str, dict[str, Any]]:
    """stage -> the info its done step recorded, for round r."""
    rows = store.query("SELECT stage, info FROM steps WHERE run_id = ? AND round = ? AND status = 'done'", [run_id, r])
    return {x["stage"]: json.loads(x["info"]) if isinstance(x["info"], str) else (x["info"] or {}) for x in rows}


def begin_round(store: Store, run_id: str, r: int, model_version: str) -> None:
    with store.transaction():
        store.insert_rows(
            "rounds", [{"run_id": run_id, "round": r, "status": "running", "model_version": model_version}]
        )


def end_round(store: Store, run_id: str, r: int) -> bool:
    """Mark round r done unless it already is (its finish time is kept); True if it changed."""
    with store.transaction():
        changed = store.con.execute(
            "UPDATE rounds SET status = 'done', finished_at = current_timestamp "
            "WHERE run_id = ? AND round = ? AND status <> 'done'",
            [run_id, r],
        ).fetchall()
    return bool(changed and changed[0][0])
