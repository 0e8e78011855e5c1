"""The DuckDB store: schema via numbered migrations, transactional stage writes.

Invariants:
- The schema version is the highest applied migration in `schema_migrations`;
  opening an older store applies the missing ones; a newer store is refused.
- A stage writes all its outputs and marks its step done in ONE transaction
  (`Store.transaction()`), with content-hash keys and ON CONFLICT DO NOTHING, so a
  crash leaves either nothing or everything of a stage and a re-run never duplicates.
- Only parameterized queries; identifiers never come from user input.
- Every failure to open or write the file surfaces as `StoreError` naming the file
  and the cause (corrupt, disk full, read-only, in use by a running `loop start`);
  a failed write rolls back, so what was committed before stays intact.
- One writer: `loop start` holds `store.lock.StoreLock` while it writes.
- Readers while a run writes: DuckDB admits one read-write process OR any number of
  read-only ones. The run's writer opens the store with `hold=False`: it holds the
  file only inside `session()` (each `transaction()`, `query()`, `scalar()` opens one
  when none is open, closing it, and so checkpointing, at the end), never across a
  stage's sampling or training. A reader (`read_only=True`) that finds the file locked
  retries for up to `READ_WAIT_S`; the writer that finds it held by readers retries
  for up to `WRITE_WAIT_S`, saying on stderr whom it waits for. Writers come first: a `hold=False`
  store closes `<store>.gate` (store.filelock.Gate) while it has the file open or waits to,
  and a reader passes that gate before opening, so back-to-back readers cannot starve the
  writer (bench/store_readers.py). A reader sees the store
  as of the writer's last commit: a committed stage, never half of one.
- Before a writable open appends anything, every block of every table is read
  (`_check_blocks`: a checksum-corrupt block is refused, not appended after); a file
  that is not a loop store (a SQLite file, a DuckDB database with other tables) is
  refused; DuckDB never installs or loads extensions on its own; a first migration
  that fails removes the file it created (the directory is as it was).
- `StoreError` lives in `store.errors` (no dependencies) and is re-exported here.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from store.errors import StoreError
from store.filelock import Gate
from store.lock import StoreLock, describe, holder  # store.lock imports store.errors, never this module

MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every shipped migration, in order."""
    out = []
    for f in resources.files("store.migrations").iterdir():
        m = MIGRATION_RE.match(f.name)
        if m:
            out.append((int(m.group(1)), m.group(2), f.read_text()))
    return sorted(out)


SCHEMA_VERSION = migrations()[-1][0]
READ_WAIT_S = 30.0  # a reader waits this long for the writer's transaction to end
WRITE_WAIT_S = 600.0  # the writer waits this long for readers (a stage's outputs wait to commit)
RETRY_S = (0.01, 0.2)  # first and longest pause between tries
SQL_MEMORY_LIMIT = "1GB"  # user-typed queries (`external_access=False`): a runaway query errors, not the machine
DAMAGE_ERRORS = (duckdb.IOException, duckdb.SerializationException, duckdb.FatalException, duckdb.InternalException)


class Store:
    """A DuckDB store file. `read_only` never writes; `external_access=False` also
    forbids the SQL from touching any other file (for user-typed queries)."""

    def __init__(self, path: str | Path, read_only: bool = False, external_access: bool = True, hold: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        self.migrated_from: int | None = None  # schema version before this open migrated it
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no store here (run `loop start` first)")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"{self.path.parent}: cannot create store directory: {e.strerror}") from e
        self._config: dict[str, str | bool | int | float | list[str]] = (
            {}
            if external_access
            else {"enable_external_access": False, "memory_limit": SQL_MEMORY_LIMIT, "lock_configuration": True}
        )
        self._config |= {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        existed = self.path.exists()
        _refuse_foreign(self.path)
        self._gate = Gate(self.path.with_name(self.path.name + ".gate"), enabled=not hold and not read_only)
        try:
            self._con: duckdb.DuckDBPyConnection | None = self._connect()
        except StoreError:
            _remove_new(self.path, existed)
            raise
        try:
            self._check_intact()
            self._check_loop_store()
            if read_only:
                self._check_version(self._version(), read_only=True)
            else:
                self._check_blocks()
                self.migrate()
        except BaseException as e:
            self.close()
            _remove_new(self.path, existed)
            if isinstance(e, duckdb.Error):
                raise StoreError(_open_error(self.path, e)) from e
            raise
        if not hold:
            self.close()  # from now on only inside session(): readers may open the file between

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The open connection (inside `session()`/`transaction()`, or for a holding store)."""
        if self._con is None:
            raise StoreError(f"{self.path}: no connection open (use Store.session())")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            try:
                con.close()
            finally:
                self._gate.reopen()

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the file for this block (reentrant); a store opened with hold=False closes it after."""
        if self._con is not None:
            yield self._con
            return
        self._con = self._connect()
        try:
            yield self._con
        finally:
            self.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file, retrying while another process holds a conflicting DuckDB lock."""
        wait = READ_WAIT_S if self.read_only else WRITE_WAIT_S
        t0, pause, told = time.monotonic(), RETRY_S[0], False
        if self.read_only and not Gate.pass_through(self._gate.path, wait):
            raise StoreError(_open_error(self.path, duckdb.IOException("Conflicting lock (the writer's gate)"), wait))
        elif not self.read_only:
            self._gate.close()
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=self.read_only, config=self._config)
            except (duckdb.Error, OSError) as e:
                waited = time.monotonic() - t0
                if "Conflicting lock" not in str(e) or waited >= wait:
                    self._gate.reopen()
                    raise StoreError(_open_error(self.path, e, waited)) from e
                if not self.read_only and not told and waited > 5:
                    told = True
                    who = _lock_pid(e) or "pid unknown"
                    sys.stderr.write(f"loop: waiting for a reader of {self.path} to close it ({who})\n")
            time.sleep(pause)
            pause = min(pause * 2, RETRY_S[1])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_intact(self) -> None:
        """Refuse a truncated file before reading or writing it: its used blocks must fit in it.
        (Free blocks may lie past the end: DuckDB trims a free tail. With a write-ahead log
        present the count can include replayed blocks, so then only reads detect damage.)"""
        if self.path.with_name(self.path.name + ".wal").exists():
            return
        block_size, used = self.con.execute(
            "SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchall()[0]
        size = self.path.stat().st_size
        if size < block_size * used:
            raise StoreError(
                f"{self.path}: store file is truncated ({size} bytes; its {used} used blocks need "
                f"at least {block_size * used}); nothing was read or written: restore it from a backup"
            )

    def _tables(self) -> list[str]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_catalog = current_database() ORDER BY 1"
            ).fetchall()
        ]

    def _check_loop_store(self) -> None:
        tables = self._tables()
        if tables and "schema_migrations" not in tables:
            raise StoreError(
                f"{self.path}: a DuckDB database but not a loop store (tables: "
                f"{', '.join(tables[:8])}); nothing was written: point run.store at a new file"
            )

    def _check_blocks(self) -> None:
        """Read every column of every table, so a block whose checksum does not match is found
        before anything is appended (DuckDB checks a block when it reads it)."""
        for table in self._tables():
            with self._reading():
                self.con.execute(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()

    # --- schema ---------------------------------------------------------------
    def _version(self) -> int:
        has = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()[0][0]
        if not has:
            return 0
        return self.con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]

    def _check_version(self, current: int, read_only: bool = False) -> None:
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {current} is newer than this "
                f"loop supports ({SCHEMA_VERSION}); upgrade loop"
            )
        if read_only and current < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {current} is older than this loop's "
                f"({SCHEMA_VERSION}) and a read-only open cannot migrate it; run "
                f"`loop migrate --store {self.path}` first"
            )

    def migrate(self) -> int:
        current = self._version()
        self._check_version(current)
        self.migrated_from = current
        pending = [m for m in migrations() if m[0] > current]
        if not pending:
            return current
        with self.transaction():  # all pending migrations, bookkeeping too, or none: a failure writes nothing
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)"
            )
            for version, name, sql in pending:
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        return self._version()

    # --- writing --------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing; a database failure (disk full, read-only) becomes StoreError."""
        with self.session() as con:
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    _rollback(con)
                    raise
                con.execute("COMMIT")
            except duckdb.Error as e:
                _rollback(con)
                raise StoreError(_write_error(self.path, e)) from e

    def insert_rows(self, table: str, rows: list[dict[str, Any]], conflict: str = "DO NOTHING") -> None:
        """Batched insert of dicts sharing keys; JSON-able dict/list values are encoded."""
        if not rows:
            return
        import pyarrow as pa

        cols = list(rows[0])
        batch = pa.table({c: [_enc(r[c]) for r in rows] for c in cols})
        with self.session():
            self.con.register("_loop_batch", batch)  # Arrow scan: one vectorized insert, not N statements
            try:
                self.con.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) "
                    f"SELECT {', '.join(cols)} FROM _loop_batch ON CONFLICT {conflict}"
                )
            finally:
                _unregister(self.con, "_loop_batch")

    def append_arrow(self, table: str, batch, conflict: str | None = "DO NOTHING") -> None:
        """Insert an Arrow table (or record batch) whose column names are `table` columns:
        the fast ingest path (no per-row Python). `conflict=None` skips the ON CONFLICT
        probe (faster; bench/results/README.md) for keys the caller knows are new, e.g. the outputs of a
        step that is not done; the primary key still refuses a duplicate (StoreError)."""
        cols = list(batch.schema.names)
        on_conflict = f" ON CONFLICT {conflict}" if conflict else ""
        with self.session():
            self.con.register("_loop_arrow", batch)
            try:
                self.con.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _loop_arrow{on_conflict}"
                )
            finally:
                _unregister(self.con, "_loop_arrow")

    def update_samples(self, rows: list[dict[str, Any]]) -> None:
        """Set verdict columns of existing samples, keyed by sample_id (one statement)."""
        if not rows:
            return
        import pyarrow as pa

        cols = [c for c in rows[0] if c != "sample_id"]
        batch = pa.table({c: [_enc(r[c]) for r in rows] for c in ["sample_id", *cols]})
        with self.session():
            self.con.register("_loop_upd", batch)
            try:
                sets = ", ".join(f"{c} = u.{c}" for c in cols)
                self.con.execute(f"UPDATE samples SET {sets} FROM _loop_upd u WHERE samples.sample_id = u.sample_id")
            finally:
                _unregister(self.con, "_loop_upd")

    # --- reading --------------------------------------------------------------
    def query(self, sql: str, params: list | dict | None = None) -> list[dict[str, Any]]:
        with self.session(), self._reading():
            cur = self.con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: list | dict | None = None) -> Any:
        with self.session(), self._reading():
            rows = self.con.execute(sql, params or []).fetchall()  # drain: duckdb 2 refuses new work otherwise
        return rows[0][0] if rows else None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged file (unreadable blocks) surfaces as StoreError; SQL mistakes stay as they are."""
        try:
            yield
        except duckdb.Error as e:
            if isinstance(e, DAMAGE_ERRORS) or "Corrupt database file" in str(e):
                raise StoreError(f"{self.path}: cannot read the store ({_cause(e)}): {e}") from e
            raise


def migrate_store(path: str | Path) -> tuple[int, int]:
    """Open for writing under the writer lock, apply missing migrations: (before, after)."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no store here")
    with StoreLock(p), Store(p) as st:
        assert st.migrated_from is not None  # a writable open always migrates
        return st.migrated_from, st._version()


_FOREIGN = (
    (b"SQLite format 3\x00", "a SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a zip archive"),
)


def _refuse_foreign(path: Path) -> None:
    """Another database or file format is refused before DuckDB would try to attach it."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return  # missing or unreadable: connect() reports it
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            raise StoreError(f"{path}: {what}, not a loop store; nothing was read or written")


def _remove_new(path: Path, existed: bool) -> None:
    """A store this open created and could not finish is removed: the directory is as it was."""
    if existed:
        return
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            p.unlink()
        except OSError:
            pass


def _rollback(con) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction open, or the database is already invalidated: the cause propagates


def _cause(e: BaseException) -> str:
    text = str(e)
    for needle, why in (
        ("No space left", "disk full"),
        ("Read-only file system", "read-only file system"),
        ("Permission denied", "permission denied"),
        ("not a valid DuckDB database", "not a DuckDB store (corrupt or another file type)"),
        ("Could not read enough bytes", "truncated or damaged file"),
        ("Corrupt database file", "corrupt file: a block's checksum does not match"),
        ("Conflicting lock", "in use by another process"),
        ("is an existing extension", "not a DuckDB store (another database format)"),
    ):
        if needle in text:
            return why
    return type(e).__name__


def _open_error(path: Path, e: BaseException, waited: float = 0.0) -> str:
    if "Conflicting lock" in str(e):
        info = holder(path)
        pid = _lock_pid(e)
        held = f"held it open for {waited:.0f} s" + (f" ({pid})" if pid else "")
        if info and info.get("alive"):
            return f"{path}: store is in use by a running `loop start` ({describe(info)}) that {held}; try again"
        return f"{path}: another process {held}; try again when it closes the store"
    return f"{path}: cannot open store ({_cause(e)}): {e}"


def _lock_pid(e: BaseException) -> str:
    m = re.search(r"\(PID (\d+)\)", str(e))
    return f"pid {m.group(1)}" if m else ""


def _write_error(path: Path, e: BaseException) -> str:
    return (
        f"{path}: write failed ({_cause(e)}): {e}. Data committed before is intact; a stage whose "
        f"outputs did not commit runs again on the next `loop start`"
    )


def _enc(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v


def _unregister(con, name: str) -> None:
    try:
        con.unregister(name)
    except duckdb.Error:
        pass  # an aborted transaction refuses it; the real error is already propagating
