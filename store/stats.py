"""Summary tables (migration 003) kept equal to the rows they summarize.

Contract:
- `record_proposed(store, run_id, r)` adds round r's problems to `run_problems`; call it
  in the transaction that wrote round r's `round_problems` (the propose stage does).
- `refresh_round(store, run_id, r)` recomputes round r's `round_stats` from its samples
  and adds its newly solved problems to `solved_problems`; call it in the transaction
  that changed round r's samples (the sample and verify stages do).
So the totals commit with the rows they describe. Both read only round r's rows
(appended round by round, so DuckDB's zone maps skip the rest) and are idempotent.
"""

from __future__ import annotations

from store.db import Store

REFRESH_SQL = """
INSERT INTO round_stats
SELECT $run, $round, count(*), count(verified), count(*) FILTER (WHERE verified), sum(reward_total),
       count(reward_total), count(DISTINCT problem_id) FILTER (WHERE verified)
FROM samples WHERE run_id = $run AND round = $round
ON CONFLICT (run_id, round) DO UPDATE SET samples = excluded.samples, judged = excluded.judged,
    verified = excluded.verified, reward_sum = excluded.reward_sum, reward_n = excluded.reward_n,
    problems_solved = excluded.problems_solved
"""
SOLVED_SQL = """
INSERT INTO solved_problems
SELECT DISTINCT $run, problem_id, $round FROM samples WHERE run_id = $run AND round = $round AND verified
ON CONFLICT (run_id, problem_id) DO NOTHING
"""


def refresh_round(store: Store, run_id: str, r: int) -> None:
    params = {"run": run_id, "round": r}
    store.con.execute(REFRESH_SQL, params)
    store.con.execute(SOLVED_SQL, params)


def record_proposed(store: Store, run_id: str, r: int) -> None:
    store.con.execute(
        "INSERT INTO run_problems SELECT run_id, problem_id, round FROM round_problems "
        "WHERE run_id = $run AND round = $round ON CONFLICT (run_id, problem_id) DO NOTHING",
        {"run": run_id, "round": r},
    )
