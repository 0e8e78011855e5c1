"""Bad stores: corrupt or truncated files, a read-only directory, a full disk.
Each gives a clear error (StoreError / exit code 2 naming the file and cause) and
does no further damage: the file is byte-for-byte unchanged, or its committed data intact.

Read-only and full-disk cases mount a small tmpfs (we run as root in CI); they are
skipped with the reason when mounting is not permitted.
"""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from store.db import Store, StoreError
from tests import storefix
from tests.conftest import ROOT

runner = CliRunner()
TINY = ROOT / "configs" / "tiny.yaml"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _counts(path: Path) -> dict:
    with Store(path, read_only=True) as st:
        return {t: st.scalar(f"SELECT count(*) FROM {t}") for t in ("runs", "problems", "samples", "steps")}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "s.duckdb"
    storefix.populate(path)
    return path


def _damage(good: Path, how: str, dst: Path) -> None:
    data = bytearray(good.read_bytes())
    if how == "garbage":
        data = bytearray(b"this is not a duckdb file" * 100)
    elif how == "empty":
        data = bytearray()
    elif how.startswith("cut:"):
        data = data[:int(how[4:])]
    elif how == "half":
        data = data[:len(data) // 2]
    elif how.startswith("flip:"):
        data[int(how[5:])] ^= 0xFF
    dst.write_bytes(bytes(data))


DAMAGE = [  # (how, what the error says); every case: StoreError, file unchanged, nothing created
    ("garbage", "not a DuckDB store"),                 # another file type
    ("empty", "not a DuckDB store"),                   # zero bytes
    ("cut:100", "truncated or damaged file"),          # cut inside the file header
    ("cut:12288", "truncated or damaged file"),        # headers only, no blocks
    ("half", "store file is truncated"),               # half the blocks missing
    ("flip:12296", "checksum does not match"),         # a flipped byte in the catalog block
    ("flip:274532", "checksum does not match"),        # a flipped byte in a data block
]


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("how, needle", DAMAGE)
def test_damaged_file_clear_error_and_untouched(good, tmp_path, how, needle, read_only):
    p = tmp_path / "s.duckdb"
    _damage(good, how, p)
    before = _sha(p)
    with pytest.raises(StoreError, match=needle) as err:
        with Store(p, read_only=read_only) as st:  # opening may pass; reading the damage may not
            for t in ("runs", "problems", "samples", "steps", "models", "evaluations"):
                st.query(f"SELECT * FROM {t}")
    assert str(p) in str(err.value)
    assert _sha(p) == before and sorted(os.listdir(tmp_path)) == ["s.duckdb"]


@pytest.mark.parametrize("read_only", [True, False])
def test_trimmed_free_tail_is_not_truncation(tmp_path, read_only):
    """DuckDB cuts free blocks off the end of the file: fewer bytes than total blocks, all data there."""
    import duckdb
    p = tmp_path / "s.duckdb"
    Store(p).close()
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE big AS SELECT range AS a, md5(range::VARCHAR) AS b FROM range(1000000)")
    con.execute("CHECKPOINT")
    con.execute("DROP TABLE big")
    con.close()
    con = duckdb.connect(str(p), read_only=True)  # the reopened header still counts the trimmed blocks
    block, total = con.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchall()[0]
    con.close()
    assert p.stat().st_size < block * total  # the situation under test
    with Store(p, read_only=read_only) as st:
        assert st.scalar("SELECT max(version) FROM schema_migrations") >= 3


@pytest.mark.parametrize("how", ["garbage", "cut:100", "half"])
@pytest.mark.parametrize("cmd", [["inspect", "summary"], ["inspect", "export", "--out", "EXP"], ["start"]])
def test_damaged_file_commands_exit_2(good, tmp_path, how, cmd):
    run = tmp_path / "run"
    run.mkdir()
    p = run / "loop.duckdb"
    _damage(good, how, p)
    before = _sha(p)
    args = [str(tmp_path / "exp") if a == "EXP" else a for a in cmd]
    if cmd[0] == "start":
        args += ["--rounds", "1", "-c", str(TINY), "--set", f"run.dir={run}"]
    else:
        args = ["inspect", "--store", str(p), *args[1:]]
    res = runner.invoke(cli.app, args)
    assert res.exit_code == 2, res.output
    assert str(p) in res.output and "Traceback" not in res.output
    assert _sha(p) == before
    assert not (tmp_path / "exp").exists()


# --- read-only directory and full disk: a small tmpfs ---------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """An 8 MiB tmpfs at tmp_path/mnt; unmounted afterwards whatever happens."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _remount_ro(mnt: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)


def test_read_only_directory(tmpfs, good):
    p = tmpfs / "loop.duckdb"
    p.write_bytes(good.read_bytes())
    before, counts = _sha(p), _counts(p)
    _remount_ro(tmpfs)
    with pytest.raises(StoreError, match="read-only file system"):
        Store(p)                                            # writing is refused ...
    assert _counts(p) == counts                             # ... reading still works
    res = runner.invoke(cli.app, ["inspect", "--store", str(p), "summary", "--json"])
    assert res.exit_code == 0 and '"samples": 20' in res.output
    for args, needle in [(["--set", f"run.dir={tmpfs}"], "Read-only file system"),            # existing store
                         (["--set", f"run.dir={tmpfs / 'new'}"], "Read-only file system")]:   # a new one
        res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(TINY), *args])
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
    with pytest.raises(StoreError, match="read-only file system"):
        Store(tmpfs / "other.duckdb")
    assert _sha(p) == before and sorted(os.listdir(tmpfs)) == ["loop.duckdb"]


def _fill(mnt: Path, leave: int) -> Path:
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_rolls_back_and_keeps_committed_data(tmpfs, good):
    p = tmpfs / "loop.duckdb"
    p.write_bytes(good.read_bytes())
    counts = _counts(p)
    filler = _fill(tmpfs, leave=64 * 1024)
    big = [{"problem_id": f"x{i}", "question": "y" * 2000} for i in range(500)]  # ~1 MB: cannot fit
    st = Store(p)
    with pytest.raises(StoreError, match=r"write failed \(disk full\)"):
        with st.transaction():
            st.insert_rows("problems", big)
    st.close()
    filler.unlink()  # space again: nothing of the failed batch, everything from before
    assert _counts(p) == counts
    with Store(p) as st:  # and the store is still writable
        with st.transaction():
            st.insert_rows("problems", big[:10])
        assert st.scalar("SELECT count(*) FROM problems") == counts["problems"] + 10


@pytest.mark.parametrize("leave", [
    0,      # not even the run directory's pid/status/lock files fit
    8192,   # a few pages: the store's write-ahead log or the status/log files fill up mid-round
])
def test_full_disk_during_loop_start_then_resume(tmpfs, leave):
    """A run on a disk that fills up stops with a clear error, keeps every committed round,
    and completes once there is space again."""
    run = tmpfs / "run"
    args = ["start", "-c", str(TINY), "--set", f"run.dir={run}", "--rounds"]
    assert runner.invoke(cli.app, [*args, "1"]).exit_code == 0
    before = _round_rows(run / "loop.duckdb", 1)
    filler = _fill(tmpfs, leave=leave)
    res = runner.invoke(cli.app, [*args, "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "write failed (disk full)" in res.output or "No space left on device" in res.output
    filler.unlink()
    assert _round_rows(run / "loop.duckdb", 1) == before  # round 1 untouched
    with Store(run / "loop.duckdb", read_only=True) as st:  # round 2: only what a done stage committed
        done = {r["stage"] for r in st.query("SELECT stage FROM steps WHERE round = 2 AND status = 'done'")}
        assert st.scalar("SELECT count(*) FROM samples WHERE round = 2") == (8 if "sample" in done else 0)
        assert st.scalar("SELECT count(*) FROM round_problems WHERE round = 2") == (4 if "propose" in done else 0)
    assert runner.invoke(cli.app, [*args, "2"]).exit_code == 0  # resumes with space again
    with Store(run / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM samples") == 16
        assert st.scalar("SELECT count(*) FROM rounds WHERE status = 'done'") == 2


def _round_rows(path: Path, r: int) -> dict:
    with Store(path, read_only=True) as st:
        return {"samples": st.query("SELECT * EXCLUDE (created_at) FROM samples WHERE round = ? ORDER BY 1", [r]),
                "problems": st.query("SELECT problem_id FROM round_problems WHERE round = ? ORDER BY 1", [r]),
                "steps": st.query("SELECT stage, status FROM steps WHERE round = ? ORDER BY 1", [r])}
