"""Store: real DuckDB file, migrations, idempotent inserts, atomic transactions."""
import duckdb
import pytest

from store.db import SCHEMA_VERSION, Store, StoreError


def test_fresh_store_is_migrated(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        assert st.scalar("SELECT max(version) FROM schema_migrations") == SCHEMA_VERSION
        tables = {r["table_name"] for r in st.query("SELECT table_name FROM information_schema.tables")}
    assert {"runs", "rounds", "steps", "problems", "samples", "models", "evaluations"} <= tables


def test_newer_store_is_refused(tmp_path):
    p = tmp_path / "s.duckdb"
    Store(p).close()
    con = duckdb.connect(str(p))
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    con.close()
    with pytest.raises(StoreError, match="newer than this loop supports"):
        Store(p)


def test_insert_is_idempotent_on_keys(tmp_path):
    rows = [{"problem_id": f"p{i}", "source": "t", "kind": "k", "level": 1, "question": f"q{i}",
             "answer": str(i), "meta": {"i": i}} for i in range(50)]
    with Store(tmp_path / "s.duckdb") as st:
        st.insert_rows("problems", rows)
        st.insert_rows("problems", rows[10:30])  # a re-run after a crash
        assert st.scalar("SELECT count(*) FROM problems") == 50
        assert st.scalar("SELECT json_extract(meta, '$.i')::INT FROM problems WHERE problem_id = 'p7'") == 7


def test_failed_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(RuntimeError):
            with st.transaction():
                st.insert_rows("runs", [{"run_id": "r1", "config": {}, "loop_version": "x"}])
                raise RuntimeError("crash mid-stage")
        assert st.scalar("SELECT count(*) FROM runs") == 0


def test_update_samples_sets_verdicts(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        st.insert_rows("samples", [{"sample_id": f"s{i}", "run_id": "r", "round": 1, "completion": "c"}
                                   for i in range(3)])
        st.update_samples([{"sample_id": "s1", "verified": True, "reward_total": 2.5,
                            "rewards": {"correctness": 1.0, "int": None}}])
        got = st.query("SELECT sample_id, verified, reward_total, rewards FROM samples ORDER BY sample_id")
    assert [g["verified"] for g in got] == [None, True, None]
    assert got[1]["reward_total"] == 2.5 and '"int": null' in got[1]["rewards"]


def test_corrupt_file_gives_clear_error(tmp_path):
    p = tmp_path / "bad.duckdb"
    p.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(StoreError, match=str(p)):
        Store(p)


def test_read_only_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "none.duckdb", read_only=True)


def _store_at_001(path):
    """A store as loop 0.1 (schema 001 only) left it, with one model and one sample."""
    from store.db import migrations
    version, name, sql = migrations()[0]
    assert version == 1
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)")
    con.execute(sql)
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
    con.execute("INSERT INTO models (model_version, parent, kind) VALUES ('m1', 'm0', 'lora')")
    con.execute("INSERT INTO samples (sample_id, run_id, round, problem_id, model_version, completion, "
                "verified, reward_total) VALUES ('s1', 'r', 1, 'p1', 'm1', 'old chain', true, 3.0), "
                "('s2', 'r', 1, 'p2', 'm1', 'other', NULL, NULL)")
    con.execute("INSERT INTO steps (run_id, round, stage, status) VALUES ('r', 1, 'sample', 'done')")
    con.execute("INSERT INTO round_problems VALUES ('r', 1, 'p1'), ('r', 1, 'p2'), ('r', 2, 'p1')")
    con.close()


def test_store_at_001_is_migrated_by_002_and_003(tmp_path):
    p = tmp_path / "old.duckdb"
    _store_at_001(p)
    with pytest.raises(StoreError, match="older than this loop's"):  # read-only cannot migrate
        Store(p, read_only=True)
    with Store(p) as st:
        assert st.migrated_from == 1
        assert [r["version"] for r in st.query("SELECT version FROM schema_migrations ORDER BY 1")] == list(range(1, SCHEMA_VERSION + 1))
        row = st.query("SELECT completion, model_parent, loop_version FROM samples WHERE sample_id = 's1'")[0]
        assert row == {"completion": "old chain", "model_parent": "m0", "loop_version": None}  # 002 backfill
        assert st.scalar("SELECT attempts FROM steps") == 1
        stats = st.query("SELECT * EXCLUDE (run_id, round) FROM round_stats")                # 003 backfill
        assert stats == [{"samples": 2, "judged": 1, "verified": 1, "reward_sum": 3.0, "reward_n": 1,
                          "problems_solved": 1}]
        assert st.query("SELECT problem_id, first_round FROM solved_problems") == [{"problem_id": "p1", "first_round": 1}]
        assert st.query("SELECT problem_id, first_round FROM run_problems ORDER BY 1") == \
            [{"problem_id": "p1", "first_round": 1}, {"problem_id": "p2", "first_round": 1}]
    with Store(p) as st:  # reopening applies nothing twice
        assert st.migrated_from == SCHEMA_VERSION


def test_migrate_command_reports_versions(tmp_path):
    from typer.testing import CliRunner

    import cli
    p = tmp_path / "old.duckdb"
    _store_at_001(p)
    res = CliRunner().invoke(cli.app, ["migrate", "--store", str(p)])
    assert res.exit_code == 0 and f"schema version 1 -> {SCHEMA_VERSION}" in res.output
    with Store(p, read_only=True) as st:
        assert st.scalar("SELECT max(version) FROM schema_migrations") == SCHEMA_VERSION


def test_append_arrow_is_idempotent(tmp_path):
    import pyarrow as pa
    batch = pa.table({"sample_id": [f"s{i}" for i in range(1000)], "run_id": ["r"] * 1000,
                      "round": pa.array([1] * 1000, pa.int32()), "completion": ["c"] * 1000})
    with Store(tmp_path / "s.duckdb") as st:
        with st.transaction():
            st.append_arrow("samples", batch)
        with st.transaction():
            st.append_arrow("samples", batch.slice(500))  # a re-run after a crash
        assert st.scalar("SELECT count(*) FROM samples") == 1000


def test_append_arrow_fresh_keys_still_refuses_duplicates(tmp_path):
    import pyarrow as pa
    batch = pa.table({"sample_id": ["a", "b"], "run_id": ["r", "r"], "completion": ["c", "d"]})
    with Store(tmp_path / "s.duckdb") as st:
        with st.transaction():
            st.append_arrow("samples", batch, conflict=None)
        with pytest.raises(StoreError, match="Duplicate key"):
            with st.transaction():
                st.append_arrow("samples", batch.slice(1), conflict=None)
        assert st.scalar("SELECT count(*) FROM samples") == 2


def test_store_at_004_gets_model_verdict_columns_from_metrics(tmp_path):
    """005 turns the JSON metrics' accepted / rejected_because into real columns."""
    from store.db import migrations
    p = tmp_path / "old.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)")
    for version, name, sql in migrations():
        if version <= 4:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
    con.execute("INSERT INTO models (model_version, run_id, round, kind, metrics) VALUES "
                "('rej', 'r', 1, 'lora', ?), ('ok', 'r', 2, 'lora', ?)",
                ['{"accepted": false, "rejected_because": "x", "last_loss": 1.5}', '{"last_loss": 0.5}'])
    con.close()
    with Store(p) as st:
        assert st.migrated_from == 4
        assert st.scalar("SELECT max(version) FROM schema_migrations") == SCHEMA_VERSION
        got = st.query("SELECT model_version, accepted, rejected_because FROM models ORDER BY round")
        assert got == [{"model_version": "rej", "accepted": False, "rejected_because": "x"},
                       {"model_version": "ok", "accepted": True, "rejected_because": None}]
        st.insert_rows("models", [{"model_version": "new", "run_id": "r", "round": 3, "kind": "lora"}])
        assert st.scalar("SELECT accepted FROM models WHERE model_version = 'new'") is True  # the default
        with pytest.raises(duckdb.ConstraintException):
            st.con.execute("UPDATE models SET accepted = NULL WHERE model_version = 'ok'")  # NOT NULL
