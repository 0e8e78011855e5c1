"""Queries behind `loop export model`: which model version to export and where it came from.

A model is "accepted" by its `models.accepted` column (migration 005); only LoRA models
(`kind = 'lora'`) are exported. Versions may be given by a unique prefix.
"""

from __future__ import annotations

from typing import Any

from store.db import Store

_LORA = "SELECT * FROM models WHERE kind = 'lora' AND "


def by_version_prefix(store: Store, prefix: str) -> list[dict[str, Any]]:
    return store.query(_LORA + "starts_with(model_version, ?) ORDER BY created_at", [prefix])


def accepted_in_round(store: Store, run_id: str, r: int) -> dict[str, Any] | None:
    """The newest accepted model trained in round r of the run."""
    rows = store.query(_LORA + "run_id = ? AND round = ? AND accepted ORDER BY created_at DESC LIMIT 1", [run_id, r])
    return rows[0] if rows else None


def rounds_with_model(store: Store, run_id: str) -> list[int]:
    rows = store.query(
        "SELECT DISTINCT round FROM models WHERE run_id = ? AND kind = 'lora' AND accepted ORDER BY round", [run_id]
    )
    return [r["round"] for r in rows]


def latest_accepted(store: Store, run_id: str) -> dict[str, Any] | None:
    rows = store.query(_LORA + "run_id = ? AND accepted ORDER BY round DESC, created_at DESC LIMIT 1", [run_id])
    return rows[0] if rows else None


def recent_versions(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """(model_version, round) of the newest LoRA models, oldest of them first."""
    rows = store.query(
        "SELECT model_version, round FROM models WHERE kind = 'lora' ORDER BY created_at DESC LIMIT ?", [limit]
    )
    return rows[::-1]


def model(store: Store, version: str) -> dict[str, Any] | None:
    rows = store.query("SELECT * FROM models WHERE model_version = ?", [version])
    return rows[0] if rows else None


def run(store: Store, run_id: str) -> dict[str, Any] | None:
    rows = store.query("SELECT run_id, config, loop_version FROM runs WHERE run_id = ?", [run_id])
    return rows[0] if rows else None


def heldout_curve(store: Store, run_id: str, upto_round: int) -> list[dict[str, Any]]:
    """Held-out evaluations of the run up to and including `upto_round`."""
    return store.query(
        "SELECT round, model_version, n, correct, accuracy, format_rate FROM evaluations "
        "WHERE run_id = ? AND split = 'heldout' AND round <= ? ORDER BY round",
        [run_id, upto_round],
    )
