"""Summary tables (`round_stats`, `solved_problems`, migration 003) kept equal to `samples`.

Contract: `refresh_round(store, run_id, r)` recomputes round r's totals from its samples
and records its newly solved problems; call it inside the transaction that changed
round r's samples (the sample and verify stages do), so the totals commit with the
samples they describe. It reads only round r's rows (samples are appended round by
round, so DuckDB's zone maps skip the rest), and is idempotent.
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
