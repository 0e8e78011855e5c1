"""`loop inspect proposer` on a real DuckDB store written through the store API: per round, proposals
drawn / kept / share kept / rejected per reason, and the mean learnability of the kept proposals'
problems over those sampled in their round (code programs count every task they produced)."""
import json

import pytest
from typer.testing import CliRunner

import cli
from loop import inspection as lib
from loop.problems.curriculum import learnability
from store.db import Store

runner = CliRunner()
PLAN = [  # (run, round, proposal, status, reason, problem_id, meta)
    ("run-p", 1, "a1", "kept", "ok", "s1", {}),
    ("run-p", 1, "a2", "kept", "ok", "s2", {}),
    ("run-p", 1, "a3", "kept", "ok", "s3", {}),                  # kept, never sampled
    ("run-p", 1, "a4", "rejected", "duplicate", None, {}),
    ("run-p", 1, "a5", "rejected", "duplicate", None, {}),
    ("run-p", 1, "a6", "rejected", "parse:no_program", None, {}),
    ("run-p", 1, "a7", "rejected", "quota", None, {}),
    ("run-p", 2, "b1", "kept", "ok", "c1", {"problem_ids": ["c1", "c2", "c3"]}),  # a code program: 3 tasks
    ("run-p", 2, "b2", "rejected", "static:import os", None, {"problem_ids": []}),
    ("run-p", 3, "d1", "kept", "ok", "s4", {}),                  # the round's samples are not in yet
    ("run-q", 1, "q1", "kept", "ok", "s1", {}),                  # another run: not counted
]
SAMPLES = [  # (run, round, problem, n, verified)
    ("run-p", 1, "s1", 4, 2), ("run-p", 1, "s2", 4, 4),
    ("run-p", 2, "s1", 4, 0),                                    # s1 resampled in round 2: not a round-2 proposal
    ("run-p", 2, "c1", 4, 1), ("run-p", 2, "c2", 2, 0),
    ("run-q", 1, "s1", 4, 4),
]
EXPECT = [  # (round, drawn, kept, share, rejected, problems, sampled, learnability pass rates)
    (1, 7, 3, 3 / 7, {"duplicate": 2, "parse:no_program": 1, "quota": 1}, 3, 2, [0.5, 1.0]),
    (2, 2, 1, 0.5, {"static:import os": 1}, 3, 2, [0.25, 0.0]),
    (3, 1, 1, 1.0, {}, 1, 0, []),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("proposer") / "s.duckdb"
    with Store(path) as st, st.transaction():
        st.insert_rows("runs", [{"run_id": r, "config": {}, "loop_version": "0.1.0", "created_at": f"2026-0{m}-01"}
                                for m, r in ((1, "run-q"), (2, "run-p"))])
        pids = sorted({p for *_, p, _ in PLAN if p} | {"c2", "c3"})
        st.insert_rows("problems", [{"problem_id": p, "source": "self", "kind": "self", "question": f"Q {p}?",
                                     "answer": "1", "meta": {}} for p in pids])
        st.insert_rows("proposals", [{"proposal_id": f"{run}-{pid}", "run_id": run, "round": r, "status": status,
                                      "reason": reason, "problem_id": prob, "meta": meta, "shots": []}
                                     for run, r, pid, status, reason, prob, meta in PLAN])
        st.insert_rows("samples", [{"sample_id": f"{run}-{r}-{p}-{i}", "run_id": run, "round": r, "problem_id": p,
                                    "idx": i, "verified": i < k} for run, r, p, n, k in SAMPLES for i in range(n)])
    return path


def test_proposer_curve_per_round(store):
    data = lib.proposer(store, "run-p")
    assert data["run_id"] == "run-p" and [r["round"] for r in data["rounds"]] == [1, 2, 3]
    for row, (r, drawn, kept, share, rejected, problems, sampled, rates) in zip(data["rounds"], EXPECT):
        assert (row["round"], row["drawn"], row["kept"], row["problems"], row["sampled"]) == (
            r, drawn, kept, problems, sampled)
        assert row["kept_share"] == pytest.approx(share) and row["rejected"] == rejected
        want = sum(map(learnability, rates)) / len(rates) if rates else None  # the curriculum's function
        assert row["mean_learnability"] == (None if want is None else pytest.approx(want))


def test_proposer_cli_json_is_the_library_and_latest_run_is_the_default(store):
    res = runner.invoke(cli.app, ["inspect", "--store", str(store), "proposer", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == json.loads(lib.dumps(lib.proposer(store, "run-p")))  # run-p is the latest


def test_proposer_table_and_empty_run(store, tmp_path):
    res = runner.invoke(cli.app, ["inspect", "proposer", "--store", str(store), "--run", "run-p"])
    assert res.exit_code == 0, res.output
    assert all(t in res.output for t in ("duplicate 2,", "quota 1", "static:import os 1", "42.9"))  # 3 of 7 kept
    empty = tmp_path / "e.duckdb"
    with Store(empty) as st:
        st.insert_rows("runs", [{"run_id": "run-e", "config": {}, "loop_version": "0.1.0"}])
    res = runner.invoke(cli.app, ["inspect", "proposer", "--store", str(empty)])
    assert res.exit_code == 0 and "no proposals in this run" in res.output


def test_unknown_run_is_a_clear_error(store):
    res = runner.invoke(cli.app, ["inspect", "proposer", "--store", str(store), "--run", "nope"])
    assert res.exit_code == 2 and "no run 'nope'" in res.output
