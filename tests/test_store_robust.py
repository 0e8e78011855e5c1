"""Store robustness (issue 21): integrity before appending, foreign files refused, no
extension downloads, a failed first migration leaves the file as it was."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import cli
from store import db as store_db
from store.db import Store, StoreError
from tests import storefix
from tests.conftest import ROOT

runner = CliRunner()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "s.duckdb"
    storefix.populate(path)
    return path


def test_checksum_corrupt_block_is_refused_before_appending(good, tmp_path):
    """`inspect summary` refused this store while `start` appended round 4 and exited 0."""
    run = tmp_path / "run"
    run.mkdir()
    p = run / "loop.duckdb"
    data = bytearray(good.read_bytes())
    data[274532] ^= 0xFF  # a data block (tests/test_bad_store.py)
    p.write_bytes(bytes(data))
    before = _sha(p)
    with pytest.raises(StoreError, match="checksum does not match") as err:
        Store(p)                                                     # a writable open, nothing read yet
    assert str(p) in str(err.value) and _sha(p) == before
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={run}"])
    assert res.exit_code == 2 and "checksum does not match" in res.output and "Traceback" not in res.output
    assert _sha(p) == before


# (how the file is made, what the error says)
FOREIGN = [
    ("duckdb", "not a loop store (tables: measurements)"),           # someone else's DuckDB database
    ("sqlite", "a SQLite database, not a loop store"),                # DuckDB would fetch sqlite_scanner
]


@pytest.mark.parametrize("kind,needle", FOREIGN)
@pytest.mark.parametrize("read_only", [False, True])
def test_foreign_file_is_refused_untouched(tmp_path, kind, needle, read_only):
    p = tmp_path / "other.db"
    if kind == "duckdb":
        con = duckdb.connect(str(p))
        con.execute("CREATE TABLE measurements AS SELECT 1 AS x")
        con.close()
    else:
        con3 = sqlite3.connect(p)
        con3.execute("CREATE TABLE measurements (x)")
        con3.commit()
        con3.close()
    before = _sha(p)
    with pytest.raises(StoreError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Store(p, read_only=read_only)
    assert _sha(p) == before
    if kind == "duckdb":
        assert _tables(p) == ["measurements"]                        # not given loop's tables


def test_extensions_are_never_installed_or_loaded_on_their_own(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        got = st.con.execute("SELECT current_setting('autoinstall_known_extensions'), "
                             "current_setting('autoload_known_extensions')").fetchall()[0]
    assert got == (False, False)


@pytest.mark.parametrize("existing", [False, True])
def test_failed_first_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch, existing):
    p = tmp_path / "s.duckdb"
    if existing:  # an empty DuckDB file (no tables) is a store not yet initialized
        duckdb.connect(str(p)).close()
    shipped = store_db.migrations()
    monkeypatch.setattr(store_db, "migrations", lambda: shipped + [(999, "broken", "THIS IS NOT SQL")])
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", 999)
    with pytest.raises(StoreError, match="write failed"):
        Store(p)
    if existing:
        assert _tables(p) == []                                       # nothing of 001.. committed either
    else:
        assert sorted(x.name for x in tmp_path.iterdir()) == []       # no file, no .wal left behind
