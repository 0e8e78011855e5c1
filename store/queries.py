"""Read queries behind `loop inspect`: plain parameterized SQL returning dicts.

Contract: every function takes an open `Store` and a run id where it is run-scoped;
values from the user only ever travel as query parameters, never as SQL text.
"""

from __future__ import annotations

import json

from store.db import Store
from store.pipeline import PASS_RATES_SQL, pass_rate_params

ROUNDS_SQL = """
WITH rp AS (SELECT round, count(*) AS problems FROM round_problems WHERE run_id = $run GROUP BY round),
s AS (SELECT round, samples, CASE WHEN samples > 0 THEN verified / samples END AS verified_frac,
             CASE WHEN reward_n > 0 THEN reward_sum / reward_n END AS mean_reward, problems_solved AS solved
      FROM round_stats WHERE run_id = $run),
e AS (SELECT round, accuracy, format_rate, model_version FROM evaluations WHERE run_id = $run AND split = 'heldout'),
t AS (SELECT round, json_extract_string(info, '$.examples') AS train_examples,
             json_extract_string(info, '$.last_loss') AS train_loss
      FROM steps WHERE run_id = $run AND stage = 'train.sft'),
g AS (SELECT round, TRY_CAST(json_extract_string(info, '$.gate.accepted') AS BOOLEAN) AS accepted
      FROM steps WHERE run_id = $run AND stage = 'evaluate')
SELECT e.round AS round, coalesce(rp.problems, 0) AS problems, coalesce(s.samples, 0) AS samples,
       s.verified_frac, s.mean_reward, s.solved, TRY_CAST(t.train_examples AS INTEGER) AS train_examples,
       TRY_CAST(t.train_loss AS DOUBLE) AS train_loss, e.accuracy AS heldout_accuracy, e.format_rate,
       e.model_version, g.accepted
FROM e LEFT JOIN rp USING (round) LEFT JOIN s USING (round) LEFT JOIN t USING (round) LEFT JOIN g USING (round)
UNION ALL
SELECT rp.round, rp.problems, coalesce(s.samples, 0), s.verified_frac, s.mean_reward, s.solved,
       TRY_CAST(t.train_examples AS INTEGER), TRY_CAST(t.train_loss AS DOUBLE), NULL, NULL, NULL, NULL
FROM rp LEFT JOIN s USING (round) LEFT JOIN t USING (round)
WHERE rp.round NOT IN (SELECT round FROM e)
ORDER BY round
"""


def latest_run(store: Store) -> str | None:
    return store.scalar("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")


def run_exists(store: Store, run_id: str) -> bool:
    return bool(store.scalar("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]))


def rounds(store: Store, run_id: str) -> list[dict]:
    """One row per round (round 0 = baseline evaluation)."""
    return store.query(ROUNDS_SQL.replace("$run", "$1"), [run_id])


def round_row(store: Store, run_id: str, r: int) -> dict | None:
    """Round r's row of `rounds` (None when the round has none yet)."""
    rows = store.query(f"SELECT * FROM ({ROUNDS_SQL.replace('$run', '$1')}) WHERE round = $2", [run_id, r])
    return rows[0] if rows else None


def stage_seconds(store: Store, run_id: str, r: int) -> dict[str, float]:
    """Seconds of each done stage of round r (its last attempt: from started to done)."""
    rows = store.query(
        "SELECT stage, epoch(finished_at - started_at) AS s FROM steps WHERE run_id = ? AND round = ? "
        "AND status = 'done' AND started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY stage",
        [run_id, r],
    )
    return {x["stage"]: float(x["s"]) for x in rows}


def split_accuracies(store: Store, run_id: str, r: int) -> dict[str, float]:
    """Accuracy per evaluation split (heldout, each evaluate.sets name) of round r."""
    rows = store.query(
        "SELECT split, accuracy FROM evaluations WHERE run_id = ? AND round = ? AND accuracy IS NOT NULL "
        "ORDER BY split",
        [run_id, r],
    )
    return {x["split"]: float(x["accuracy"]) for x in rows}


def summary(store: Store, run_id: str) -> dict:
    """Whole-run totals, from the summary tables: O(rounds + solved problems), not O(samples)."""
    out = store.query(
        "SELECT r.run_id, r.created_at, r.loop_version, "
        "(SELECT count(*) FROM rounds WHERE run_id = $1 AND status = 'done') AS rounds_done, "
        "(SELECT max(round) FROM rounds WHERE run_id = $1) AS last_round, "
        "(SELECT count(*) FROM run_problems WHERE run_id = $1) AS problems, "
        "(SELECT count(*) FROM models WHERE run_id = $1 AND kind = 'lora') AS trained_models "
        "FROM runs r WHERE r.run_id = $1",
        [run_id],
    )[0]
    out |= store.query(  # summary tables (store/stats.py): no scan of the samples
        "SELECT coalesce(sum(samples), 0) AS samples, coalesce(sum(verified), 0) AS verified, "
        "coalesce(sum(judged), 0) AS judged, sum(reward_sum) / nullif(sum(reward_n), 0) AS mean_reward, "
        "(SELECT count(*) FROM solved_problems WHERE run_id = $1) AS problems_solved "
        "FROM round_stats WHERE run_id = $1",
        [run_id],
    )[0]
    out["verified_frac"] = out["verified"] / out["judged"] if out["judged"] else None
    acc = store.query(
        "SELECT round, accuracy, model_version FROM evaluations WHERE run_id = ? AND split = 'heldout' ORDER BY round",
        [run_id],
    )
    out["baseline_accuracy"] = acc[0]["accuracy"] if acc and acc[0]["round"] == 0 else None
    out["latest_accuracy"] = acc[-1]["accuracy"] if acc else None
    out["best_accuracy"] = max((a["accuracy"] for a in acc), default=None)
    out["current_model"] = acc[-1]["model_version"] if acc else None
    out["unfinished"] = unfinished_steps(store, run_id)
    return out


def unfinished_steps(store: Store, run_id: str) -> list[dict]:
    """Steps started but not done: what a crash interrupted (or what is running now)."""
    return store.query(
        "SELECT round, stage, status, started_at, attempts FROM steps "
        "WHERE run_id = ? AND status <> 'done' ORDER BY round, started_at",
        [run_id],
    )


def problems(
    store: Store, run_id: str, lo: float = 0.0, hi: float = 1.0, limit: int = 20, filtered: bool = False
) -> list[dict]:
    """Per problem of the run: judged samples, verified, pass rate (verified / judged, as
    `store.pipeline.PASS_RATES_SQL` defines it, over all rounds).
    With `filtered`, only problems whose pass rate lies in [lo, hi] (so never unjudged ones)."""
    return store.query(
        "WITH rp AS (SELECT problem_id, min(round) AS first_round, max(round) AS last_round "
        "            FROM round_problems WHERE run_id = $run GROUP BY problem_id), "
        f"s AS ({PASS_RATES_SQL}) "  # over all the run's rounds
        "SELECT p.problem_id, p.source, p.kind, p.level, p.question, p.answer, rp.first_round, rp.last_round, "
        "coalesce(s.judged, 0) AS judged, coalesce(s.verified, 0) AS verified, s.pass_rate "
        "FROM rp JOIN problems p USING (problem_id) LEFT JOIN s USING (problem_id) "
        "WHERE NOT $filtered OR s.pass_rate BETWEEN $lo AND $hi "
        "ORDER BY pass_rate NULLS LAST, p.problem_id LIMIT $limit",
        pass_rate_params(run_id, None, None) | {"filtered": filtered, "lo": lo, "hi": hi, "limit": limit},
    )


SAMPLE_COLS = (
    "s.sample_id, s.round, s.problem_id, s.idx, p.question, p.answer, s.completion, s.extracted, "
    "s.verified, s.reward_total, s.advantage, s.rewards, s.model_version, s.completion_tokens"
)


def samples(
    store: Store,
    run_id: str,
    verified: bool | None = None,
    round: int | None = None,
    problem_id: str | None = None,
    limit: int = 10,
) -> list[dict]:
    where: list[str] = ["s.run_id = ?"]
    params: list[object] = [run_id]
    if verified is not None:
        where.append("s.verified = ?")
        params.append(verified)
    if round is not None:
        where.append("s.round = ?")
        params.append(round)
    if problem_id is not None:
        where.append("s.problem_id = ?")
        params.append(problem_id)
    params.append(limit)
    return store.query(
        f"SELECT {SAMPLE_COLS} FROM samples s JOIN problems p USING (problem_id) "
        f"WHERE {' AND '.join(where)} ORDER BY s.round, s.problem_id, s.idx LIMIT ?",
        params,
    )


def find_samples(store: Store, prefix: str, limit: int = 3) -> list[str]:
    """Sample ids starting with `prefix` (a full id or a unique prefix)."""
    return [
        r["sample_id"]
        for r in store.query(
            "SELECT sample_id FROM samples WHERE starts_with(sample_id, ?) ORDER BY sample_id LIMIT ?", [prefix, limit]
        )
    ]


def sample_chain(store: Store, sample_id: str) -> dict:
    """Everything about one sample: its row, its problem, the model lineage, its group."""
    row = store.query(
        "SELECT s.*, p.question, p.answer, p.source, p.kind, p.level, p.meta AS problem_meta "
        "FROM samples s JOIN problems p USING (problem_id) WHERE s.sample_id = ?",
        [sample_id],
    )[0]
    row["lineage"] = store.query(
        "WITH RECURSIVE chain(model_version, depth) AS ("
        "  SELECT ?, 0 UNION ALL "
        "  SELECT m.parent, c.depth + 1 FROM chain c JOIN models m ON m.model_version = c.model_version "
        "  WHERE m.parent IS NOT NULL AND c.depth < 1000) "
        "SELECT c.depth, c.model_version, m.parent, m.kind, m.round, m.data_hash, m.path "
        "FROM chain c LEFT JOIN models m USING (model_version) ORDER BY c.depth",
        [row["model_version"]],
    )
    row["group"] = store.query(
        "SELECT sample_id, idx, verified, reward_total, advantage, extracted FROM samples "
        "WHERE run_id = ? AND round = ? AND problem_id = ? AND model_version = ? ORDER BY idx",
        [row["run_id"], row["round"], row["problem_id"], row["model_version"]],
    )
    return row


def curve(store: Store, run_id: str) -> list[dict]:
    """Held-out accuracy per round (round 0 = before training)."""
    return store.query(
        "SELECT round, accuracy, correct, n, format_rate, model_version FROM evaluations "
        "WHERE run_id = ? AND split = 'heldout' ORDER BY round",
        [run_id],
    )


EXPORT_SQL = """
SELECT s.sample_id, s.run_id, s.round, s.problem_id, s.idx, p.question, p.answer, p.source, p.kind,
       p.level, s.completion, s.extracted, s.verified, s.reward_total, s.advantage, s.rewards,
       s.model_version, s.model_parent, s.backend, s.sampling, s.prompt_version, s.verifier_version,
       s.loop_version, s.prompt_tokens, s.completion_tokens, s.finish_reason, s.created_at
FROM samples s JOIN problems p USING (problem_id)
WHERE s.run_id = $run AND (NOT $verified_only OR s.verified)
ORDER BY s.round, s.problem_id, s.idx
"""


def export_reward_names(store: Store, run_id: str, verified_only: bool) -> list[str]:
    return [
        r["k"]
        for r in store.query(
            "SELECT DISTINCT unnest(json_keys(rewards)) AS k FROM samples "
            "WHERE run_id = $run AND (NOT $verified_only OR verified) AND rewards IS NOT NULL ORDER BY k",
            {"run": run_id, "verified_only": verified_only},
        )
    ]


def instruct_models(store: Store, run_id: str) -> list[dict]:
    """The run's `loop sft` models (config.method = instruct), oldest first, with config and metrics."""
    return store.query(
        "SELECT model_version, round, path, data_hash, accepted, config, metrics, created_at "
        "FROM models WHERE run_id = ? AND json_extract_string(config, '$.method') = 'instruct' "
        "ORDER BY created_at",
        [run_id],
    )


def eval_sets(store: Store, run_id: str) -> list[dict]:
    """Every evaluation row of the run (one per round and set; split `heldout` = the gated set)."""
    return store.query(
        "SELECT round, split, model_version, n, correct, accuracy, format_rate, metrics FROM evaluations "
        "WHERE run_id = ? ORDER BY round, split <> 'heldout', split",
        [run_id],
    )


def run_config(store: Store, run_id: str) -> dict:
    """The config a run last ran with (the resolved tree; {} when none was stored)."""
    raw = store.scalar("SELECT config FROM runs WHERE run_id = ?", [run_id])
    tree = json.loads(raw) if isinstance(raw, str) else raw
    return tree if isinstance(tree, dict) else {}


def trl_problems(store: Store, run_id: str, first: int, last: int) -> list[dict]:
    """Every problem the run sampled in rounds first..last, with its gold answer and pass rate
    over those rounds (None: not judged yet), in problem_id order."""
    return store.query(
        f"WITH pr AS ({PASS_RATES_SQL}) "
        "SELECT p.problem_id, p.question, p.answer, pr.pass_rate FROM pr JOIN problems p USING (problem_id) "
        "ORDER BY p.problem_id",
        pass_rate_params(run_id, first, last),
    )
