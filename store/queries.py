"""Read queries behind `loop inspect`: plain parameterized SQL returning dicts."""
from __future__ import annotations

from store.db import Store

ROUNDS_SQL = """
WITH rp AS (SELECT round, count(*) AS problems FROM round_problems WHERE run_id = $run GROUP BY round),
s AS (SELECT round, count(*) AS samples, avg(CASE WHEN verified THEN 1.0 ELSE 0.0 END) AS verified_frac,
             avg(reward_total) AS mean_reward, count(DISTINCT problem_id) FILTER (WHERE verified) AS solved
      FROM samples WHERE run_id = $run GROUP BY round),
e AS (SELECT round, accuracy, format_rate, model_version FROM evaluations WHERE run_id = $run AND split = 'heldout'),
t AS (SELECT round, json_extract_string(info, '$.examples') AS train_examples,
             json_extract_string(info, '$.last_loss') AS train_loss
      FROM steps WHERE run_id = $run AND stage = 'train.sft')
SELECT e.round AS round, coalesce(rp.problems, 0) AS problems, coalesce(s.samples, 0) AS samples,
       s.verified_frac, s.mean_reward, s.solved, TRY_CAST(t.train_examples AS INTEGER) AS train_examples,
       TRY_CAST(t.train_loss AS DOUBLE) AS train_loss, e.accuracy AS heldout_accuracy, e.format_rate,
       e.model_version
FROM e LEFT JOIN rp USING (round) LEFT JOIN s USING (round) LEFT JOIN t USING (round)
UNION ALL
SELECT rp.round, rp.problems, coalesce(s.samples, 0), s.verified_frac, s.mean_reward, s.solved,
       TRY_CAST(t.train_examples AS INTEGER), TRY_CAST(t.train_loss AS DOUBLE), NULL, NULL, NULL
FROM rp LEFT JOIN s USING (round) LEFT JOIN t USING (round)
WHERE rp.round NOT IN (SELECT round FROM e)
ORDER BY round
"""


def latest_run(store: Store) -> str | None:
    return store.scalar("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")


def rounds(store: Store, run_id: str) -> list[dict]:
    """One row per round (round 0 = baseline evaluation)."""
    return store.query(ROUNDS_SQL.replace("$run", "$1"), [run_id])


def samples(store: Store, run_id: str, verified: bool | None = None, round: int | None = None,
            problem_id: str | None = None, limit: int = 10) -> list[dict]:
    where, params = ["s.run_id = ?"], [run_id]
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
        "SELECT s.sample_id, s.round, s.problem_id, p.question, p.answer, s.completion, s.extracted, "
        "s.verified, s.reward_total, s.advantage, s.rewards, s.model_version, s.completion_tokens "
        f"FROM samples s JOIN problems p USING (problem_id) WHERE {' AND '.join(where)} "
        "ORDER BY s.round, s.problem_id, s.idx LIMIT ?", params)
