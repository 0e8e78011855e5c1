"""One writer per store: a second `loop start` is refused naming the holder; a lock
left by a killed process is taken over; `inspect` during a run says who writes."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from store.lock import StoreLock, StoreLocked, holder, lock_path
from tests.conftest import ROOT

runner = CliRunner()
HOLD = """
import sys, time
from store.lock import StoreLock
from store.db import Store
lock = StoreLock(sys.argv[1]).acquire()
st = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""


@pytest.fixture
def writer(tmp_path):
    """A live process holding the store's lock and its DuckDB file, like a running `loop start`."""
    store = tmp_path / "run" / "loop.duckdb"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stdout.readline().strip() == "ready"
    yield store, p
    p.kill()
    p.wait()


def test_second_start_is_refused_naming_the_holder(writer, tmp_path):
    store, p = writer
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={store.parent}"])
    assert res.exit_code == 2
    assert f"pid {p.pid} on host {socket.gethostname()}" in res.output and "in use" in res.output


def test_inspect_blocked_past_the_wait_names_the_writer(writer, monkeypatch):
    """A writer that keeps the DuckDB file open past READ_WAIT_S (a run holds it only inside its
    transactions) is named; the reader retried meanwhile."""
    import store.db
    monkeypatch.setattr(store.db, "READ_WAIT_S", 0.3)
    path, p = writer
    res = runner.invoke(cli.app, ["inspect", "--store", str(path), "summary"])
    assert res.exit_code == 2 and f"running `loop start` (pid {p.pid}" in res.output
    assert "held it open for 0 s" in res.output


def test_lock_of_a_killed_process_is_taken_over(writer):
    store, p = writer
    with pytest.raises(StoreLocked):
        StoreLock(store).acquire()
    assert holder(store)["alive"] is True
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert holder(store) == {**json.loads(lock_path(store).read_text()), "alive": False}  # stale file stays
    lock = StoreLock(store).acquire()
    try:
        assert lock.took_over["pid"] == p.pid
        assert json.loads(lock_path(store).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


@pytest.mark.parametrize("content", [
    '{"pid": 999999999, "host": "h", "since": "x"}',   # a dead holder's record
    "garbage {",                                        # a torn or foreign file
    "",                                                 # empty
])
def test_leftover_lock_file_is_not_a_lock(tmp_path, content):
    store = tmp_path / "s.duckdb"
    lock_path(store).write_text(content)
    with StoreLock(store) as lock:
        assert lock.took_over == (json.loads(content) if content.startswith("{") else None)
        assert holder(store)["pid"] == os.getpid()


FORK_AND_EXIT = """
import os, sys, time
from store.lock import StoreLock
lock = StoreLock(sys.argv[1]).acquire()
if os.fork() == 0:  # the forked child shares the locked descriptor
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
os._exit(0)  # the recorded holder dies; its child keeps the lock
"""


def test_lock_kept_by_a_forked_child_is_explained(tmp_path):
    store = tmp_path / "s.duckdb"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, "-c", FORK_AND_EXIT, str(store)], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)
    child_pid = int(parent.stdout.readline())
    parent.wait()
    try:
        with pytest.raises(StoreLocked, match=f"pid {parent.pid} .*a process it forked still holds the lock"):
            StoreLock(store).acquire()
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_clean_release_leaves_no_stale_record(tmp_path):
    store = tmp_path / "s.duckdb"
    with StoreLock(store):
        assert holder(store)["alive"] is True
    assert holder(store) is None and lock_path(store).exists()
    with StoreLock(store) as again:
        assert again.took_over is None


GOING = """
import sys, time
from store.filelock import FileLock
assert FileLock(sys.argv[1]).acquire()
print("ready", flush=True)
time.sleep(float(sys.argv[2]))  # then exit: the kernel drops the lock
"""


@pytest.mark.parametrize("going, expect", [
    (True, True),    # the holder is on its way out (as after SIGKILL): waited for, then taken
    (False, False),  # a live holder: refused after the usual tries
])
def test_a_holder_on_its_way_out_is_waited_for(tmp_path, monkeypatch, going, expect):
    import store.filelock as fl
    path = tmp_path / "loop.pid"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", GOING, str(path), "0.8"], stdout=subprocess.PIPE, text=True,
                         env=env, cwd=ROOT)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert fl.lock_holders(path) == [p.pid]
        monkeypatch.setattr(fl, "exiting", lambda pid: going and pid == p.pid)  # as if a SIGKILL were pending
        lock = fl.FileLock(path)
        assert lock.acquire() is expect  # the 5 usual tries span 0.25 s of the holder's 0.8 s
        lock.release()
    finally:
        p.kill()
        p.wait()


def test_exiting():
    import store.filelock as fl
    zombie = subprocess.Popen(["true"])
    while not Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
        pass  # not reaped yet: a zombie
    table = [(os.getpid(), False),      # this process, alive
             (zombie.pid, False),       # exited, not reaped: its locks are already dropped
             (2 ** 22 + 12345, False)]  # no such process
    try:
        assert [fl.exiting(pid) for pid, _ in table] == [want for _, want in table]
    finally:
        zombie.wait()
