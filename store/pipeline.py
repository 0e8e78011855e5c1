"""Stage-side queries: the model lineage, the gate's history, and problems' pass rates.

Contract:
- Every function takes an open `Store`; values travel only as query parameters.
- A model's gate verdict is the `models.accepted` / `models.rejected_because` columns
  (migration 005). `reject_models` keeps the older `metrics` JSON keys ("accepted",
  "rejected_because") in step, so readers of either agree.
- Writers (`reject_models`) run no transaction of their own: call them inside the
  transaction that commits the stage's outputs (`Store.transaction()`).
- A problem's pass rate has one definition, `PASS_RATES_SQL`: verified over judged
  samples (`verified IS NOT NULL`) in an inclusive round range, NULL when none is judged.
  It is the per-round `problem_pass_rates` view (migration 004) summed over rounds.
"""

from __future__ import annotations

import json
from typing import Any

from store.db import Store

# Named parameters $run, $first_round, $last_round (inclusive; NULL = unbounded).
# Use it as a CTE: f"WITH pr AS ({PASS_RATES_SQL}) SELECT ... FROM pr ..." and pass exactly
# those parameters plus the outer query's (DuckDB refuses unused named parameters).
PASS_RATES_SQL = """
SELECT problem_id, count(verified) AS judged, count(*) FILTER (WHERE verified) AS verified,
       count(*) FILTER (WHERE verified) / nullif(count(verified), 0) AS pass_rate
FROM samples
WHERE run_id = $run AND ($first_round IS NULL OR round >= $first_round)
      AND ($last_round IS NULL OR round <= $last_round)
GROUP BY problem_id
"""


def pass_rate_params(run_id: str, first_round: int | None, last_round: int | None) -> dict[str, Any]:
    """The parameters `PASS_RATES_SQL` needs (merge the outer query's into them)."""
    return {"run": run_id, "first_round": first_round, "last_round": last_round}


# --- model lineage ------------------------------------------------------------------
def current_model(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's current model: its newest accepted LoRA adapter (highest round, then the
    latest registered), as {model_version, path}. None when the run has none (no model
    trained yet, or every one rejected): the base model is current."""
    rows = store.query(
        "SELECT model_version, path FROM models WHERE run_id = ? AND kind = 'lora' AND accepted "
        "ORDER BY round DESC, created_at DESC LIMIT 1",
        [run_id],
    )
    return rows[0] if rows else None


def model_parent(store: Store, version: str) -> str | None:
    """The parent model version of `version`; None for the base model or a version the store
    does not know (e.g. an endpoint's own weights)."""
    return store.scalar("SELECT parent FROM models WHERE model_version = ?", [version])


def reject_models(store: Store, run_id: str, after_round: int, upto_round: int, reason: str) -> int:
    """Mark rejected every still-accepted model of the run trained in a round in
    (`after_round`, `upto_round`]: accepted = false, rejected_because = `reason`, and the
    same two keys merged into `metrics`. Already rejected models keep their first reason.
    Returns how many models it rejected. Runs in the caller's transaction."""
    rows = store.con.execute(
        "UPDATE models SET accepted = false, rejected_because = $reason, metrics = json_merge_patch(metrics, $patch) "
        "WHERE run_id = $run AND round > $after AND round <= $upto AND accepted",
        {
            "reason": reason,
            "patch": json.dumps({"accepted": False, "rejected_because": reason}),
            "run": run_id,
            "after": after_round,
            "upto": upto_round,
        },
    ).fetchall()
    return rows[0][0] if rows else 0


def accepted_evaluations(store: Store, run_id: str, before_round: int) -> list[dict[str, Any]]:
    """The run's evaluations {round, accuracy, model_version} from rounds before `before_round`
    whose model is accepted (a version not in `models`, like the base model, counts as
    accepted), newest round first: what the evaluate stage's gate compares against (the gated
    set's split, `heldout`)."""
    return store.query(
        "SELECT e.round, e.accuracy, e.model_version FROM evaluations e LEFT JOIN models m USING (model_version) "
        "WHERE e.run_id = ? AND e.round < ? AND e.split = 'heldout' AND coalesce(m.accepted, true) "
        "ORDER BY e.round DESC",
        [run_id, before_round],
    )


# --- pass rates ---------------------------------------------------------------------
def pass_rates(
    store: Store, run_id: str, first_round: int | None = None, last_round: int | None = None
) -> list[dict[str, Any]]:
    """Per problem sampled in the run's rounds [`first_round`, `last_round`] (None: unbounded):
    {problem_id, judged, verified, pass_rate}, pass_rate = verified / judged (None when no
    sample of it is judged yet), ordered by problem_id. See `PASS_RATES_SQL`."""
    return store.query(f"{PASS_RATES_SQL} ORDER BY problem_id", pass_rate_params(run_id, first_round, last_round))


# --- what a round's stages read -------------------------------------------------------
def round_problems(store: Store, run_id: str, r: int) -> list[dict[str, Any]]:
    """(problem_id, question, meta) of round r's problems, in problem_id order."""
    return store.query(
        "SELECT p.problem_id, p.question, p.meta FROM round_problems rp JOIN problems p USING (problem_id) "
        "WHERE rp.run_id = ? AND rp.round = ? ORDER BY p.problem_id",
        [run_id, r],
    )


def round_samples(store: Store, run_id: str, r: int) -> list[dict[str, Any]]:
    """Round r's samples with their problem's question and gold answer, grouped by problem."""
    return store.query(
        "SELECT s.sample_id, s.problem_id, s.completion, p.question, p.answer FROM samples s "
        "JOIN problems p USING (problem_id) WHERE s.run_id = ? AND s.round = ? "
        "ORDER BY s.problem_id, s.idx",
        [run_id, r],
    )


def verified_chains(store: Store, run_id: str, first: int, last: int) -> list[dict[str, Any]]:
    """Verified samples of rounds first..last with question, answer, kind, the problem's pass rate
    over those rounds (`PASS_RATES_SQL`), and `strict` (the strict-format reward was positive)."""
    return store.query(
        f"WITH pr AS ({PASS_RATES_SQL}) "
        "SELECT s.problem_id, s.completion, s.extracted, p.question, p.answer, p.kind, pr.pass_rate, "
        "coalesce(TRY_CAST(json_extract(s.rewards, '$.strict_format') AS DOUBLE), 0) > 0 AS strict "
        "FROM samples s JOIN problems p USING (problem_id) JOIN pr USING (problem_id) "
        "WHERE s.run_id = $run AND s.verified AND s.round <= $last_round AND s.round >= $first_round",
        pass_rate_params(run_id, first, last),
    )


def problem_meta(store: Store, problem_ids: list[str]) -> dict[str, Any]:
    """problem_id -> its meta (JSON text as stored), for the given problems."""
    if not problem_ids:
        return {}
    rows = store.query(
        "SELECT problem_id, meta FROM problems WHERE problem_id IN (SELECT unnest($ids))", {"ids": problem_ids}
    )
    return {r["problem_id"]: r["meta"] for r in rows}


def problems_in_band(store: Store, run_id: str, r: int, lo: float, hi: float) -> list[dict[str, Any]]:
    """Round r's problems whose pass rate in the round (`PASS_RATES_SQL`) lies strictly between lo
    and hi, with question and gold answer, in problem_id order."""
    return store.query(
        f"WITH pr AS ({PASS_RATES_SQL}) "
        "SELECT p.problem_id, p.question, p.answer, pr.pass_rate FROM pr JOIN problems p USING (problem_id) "
        "WHERE pr.pass_rate > $lo AND pr.pass_rate < $hi ORDER BY p.problem_id",
        pass_rate_params(run_id, r, r) | {"lo": lo, "hi": hi},
    )
