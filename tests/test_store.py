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
