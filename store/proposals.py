"""Queries behind the self-proposer and the curriculum: few-shot pool, pass-rate history,
retirements, the problems a new proposal must not duplicate, proposer training rows.

Pass rates come from the `problem_pass_rates` view (judged samples per problem and round).
"""

from __future__ import annotations

from typing import Any

from store.db import Store


def verified_programs(store: Store, run_id: str) -> list[tuple[str, str, str, str]]:
    """(problem_id, source, question, answer program) of problems with at least one verified
    sample in the run, by question."""
    rows = store.query(
        "SELECT DISTINCT p.problem_id, p.source, p.question, json_extract_string(p.meta, '$.program') AS program "
        "FROM problems p JOIN samples s USING (problem_id) WHERE s.run_id = ? AND s.verified "
        "AND json_extract_string(p.meta, '$.program') IS NOT NULL ORDER BY p.question, p.problem_id",
        [run_id],
    )
    return [(r["problem_id"], r["source"], r["question"], r["program"]) for r in rows]


def code_programs(store: Store) -> list[str]:
    """Every stored code task's program (`meta.code`), for the code proposer's dedup."""
    rows = store.query(
        "SELECT DISTINCT json_extract_string(meta, '$.code') AS code FROM problems "
        "WHERE json_extract_string(meta, '$.code') IS NOT NULL ORDER BY 1"
    )
    return [r["code"] for r in rows]


def pass_rate_rows(store: Store, run_id: str, before: int, source: str | None = None) -> list[tuple]:
    """(problem_id, round, n, n_verified) of rounds < `before`, optionally of one source."""
    sql = (
        "SELECT pp.problem_id, pp.round, pp.n, pp.n_verified FROM problem_pass_rates pp "
        "JOIN problems p USING (problem_id) WHERE pp.run_id = ? AND pp.round < ?"
    )
    params: list[Any] = [run_id, before]
    if source:
        sql += " AND p.source = ?"
        params.append(source)
    return [(r["problem_id"], r["round"], r["n"], r["n_verified"]) for r in store.query(sql, params)]


def problem_sources(store: Store, run_id: str) -> dict[str, str]:
    """problem_id -> `problems.source` of every problem with judged samples in the run."""
    rows = store.query(
        "SELECT DISTINCT p.problem_id, p.source FROM problem_pass_rates pp JOIN problems p USING (problem_id) "
        "WHERE pp.run_id = ?",
        [run_id],
    )
    return {r["problem_id"]: r["source"] for r in rows}


def question_texts(store: Store, source: str) -> dict[str, str]:
    """problem_id -> question for every stored problem of `source`."""
    return {
        x["problem_id"]: x["question"]
        for x in store.query("SELECT problem_id, question FROM problems WHERE source = ?", [source])
    }


def retired_ids(store: Store, run_id: str) -> set[str]:
    return {x["problem_id"] for x in store.query("SELECT problem_id FROM retirements WHERE run_id = ?", [run_id])}


def stored_questions(store: Store) -> list[tuple[str, str]]:
    """(problem_id, question) of every stored problem, oldest first."""
    return [
        (x["problem_id"], x["question"])
        for x in store.query("SELECT problem_id, question FROM problems ORDER BY created_at, problem_id")
    ]


def proposals_with_pass_rates(store: Store, run_id: str, include_rejected: bool) -> list[dict[str, Any]]:
    """Each proposal with the judged (n) and verified samples of its problem in its round."""
    return store.query(
        "SELECT pr.proposal_id, pr.round, pr.prompt, pr.raw, pr.status, pr.reason, "
        "sum(pp.n) AS n, sum(pp.n_verified) AS n_verified FROM proposals pr "
        "LEFT JOIN problem_pass_rates pp ON pp.run_id = pr.run_id AND pp.problem_id = pr.problem_id "
        "AND pp.round = pr.round WHERE pr.run_id = ? AND (pr.status = 'kept' OR ?) "
        "GROUP BY ALL ORDER BY pr.round, pr.proposal_id",
        [run_id, include_rejected],
    )


def round_summary(store: Store, run_id: str, r: int) -> dict[str, Any]:
    """Round r's proposals (status, reason), pass rates with problem kinds, and evaluate step info."""
    return {
        "proposals": store.query("SELECT status, reason FROM proposals WHERE run_id = ? AND round = ?", [run_id, r]),
        "rates": store.query(
            "SELECT p.kind, pp.pass_rate FROM problem_pass_rates pp JOIN problems p USING (problem_id) "
            "WHERE pp.run_id = ? AND pp.round = ?",
            [run_id, r],
        ),
        "evaluate": store.scalar(
            "SELECT info FROM steps WHERE run_id = ? AND round = ? AND stage = 'evaluate'", [run_id, r]
        ),
    }


def recent_prompts(store: Store, run_id: str, last_round: int, limit: int) -> list[str]:
    """The most recent distinct prompts (chat JSON) of natural-language self proposals up to
    `last_round` (code-program proposals, whose meta lists `inputs`, are left out)."""
    rows = store.query(
        "SELECT prompt, max(round) AS r, max(proposal_id) AS pid FROM proposals WHERE run_id = ? AND round <= ? "
        "AND prompt IS NOT NULL AND json_extract(meta, '$.inputs') IS NULL "
        "GROUP BY prompt ORDER BY r DESC, pid LIMIT ?",
        [run_id, last_round, limit],
    )
    return [x["prompt"] for x in rows]


def proposal_counts(store: Store, run_id: str) -> list[dict[str, Any]]:
    """(round, status, reason, n): how many proposals of the run had each outcome per round."""
    return store.query(
        "SELECT round, status, reason, count(*) AS n FROM proposals WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
        [run_id],
    )


def produced_pass_rates(store: Store, run_id: str) -> list[dict[str, Any]]:
    """(round, problem_id, n, n_verified) of each problem a kept proposal produced (a self problem;
    every task of a code program, `meta.problem_ids`), with its judged samples in the proposal's
    round (n NULL when not sampled yet)."""
    return store.query(
        "WITH kept AS (SELECT round, problem_id, meta FROM proposals WHERE run_id = $1 AND status = 'kept'), "
        "produced AS (SELECT round, problem_id FROM kept WHERE problem_id IS NOT NULL UNION "
        "SELECT round, unnest(json_extract_string(meta, '$.problem_ids[*]')) FROM kept) "
        "SELECT d.round, d.problem_id, pp.n, pp.n_verified FROM produced d LEFT JOIN problem_pass_rates pp "
        "ON pp.run_id = $1 AND pp.problem_id = d.problem_id AND pp.round = d.round ORDER BY 1, 2",
        [run_id],
    )
