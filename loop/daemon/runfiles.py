"""The files a running loop keeps in its run directory, and process helpers.

Contract:
- `loop.pid` (PidFile): one running loop per run directory. `acquire()` takes an
  exclusive `flock` on the file (held for the process lifetime, close-on-exec so
  children never inherit it) and writes the pid; a second acquire, from any
  process, raises `AlreadyRunning` naming the holder's pid. The kernel drops the
  lock when the holder dies (even SIGKILL), so a leftover file is stale by
  construction and the next acquire takes it over. `release()` removes the file.
  The locking itself is `store.filelock.FileLock` (shared with the store's writer lock).
- `status.json`: written atomically (tmp file + rename), so a reader sees the old
  or the new status, never a torn one; `read_status` returns {} when absent.
- `pid_alive(pid)` is false for a zombie; `kill_tree(pid)` SIGKILLs a process and
  the process groups of its children that lead their own group (the training
  child runs in its own session so a Ctrl-C on the terminal does not reach it).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

from store.filelock import EXIT_GRACE_S, FileLock, exiting, pid_alive  # one definition; re-exported here

PID_NAME, STATUS_NAME = "loop.pid", "status.json"


class AlreadyRunning(RuntimeError):
    """Another live loop process holds the run directory."""

    def __init__(self, run_dir: Path, pid: int | None):
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"{run_dir}: a loop is already running here ({who}); see `loop status`, stop it with `loop stop`"
        )


class PidFile:
    """`loop.pid` as a `store.filelock.FileLock`: held while the loop runs, removed on release."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / PID_NAME
        self._lock = FileLock(self.path)
        self.stale_pid: int | None = None  # pid recorded by a holder that died

    def acquire(self, tries: int = 5) -> PidFile:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire(tries):
            raise AlreadyRunning(self.run_dir, _read_pid(self.path))
        self.stale_pid = _read_pid(self.path)
        try:
            self._lock.write(f"{os.getpid()}\n".encode())
        except OSError:
            self._lock.release()  # e.g. a full disk: never keep holding a pid file we could not write
            raise
        return self

    def release(self) -> None:
        self._lock.release(unlink=True)


def running_pid(run_dir: str | Path) -> int | None:
    """The pid of the live loop holding `run_dir`, or None (no pid file, or its holder died).
    A holder on its way out (killed, exiting) is waited for, up to EXIT_GRACE_S: the lock
    decides once it is released, not the pid of a process that is going."""
    path = Path(run_dir) / PID_NAME
    pid = _read_pid(path)
    end = time.monotonic() + EXIT_GRACE_S
    while pid is not None and pid_alive(pid) and FileLock.is_held(path) and exiting(pid) and time.monotonic() < end:
        time.sleep(0.01)
    if pid is None or not pid_alive(pid):
        return None
    # not held: the recorded pid is a different, unrelated process
    return pid if FileLock.is_held(path) else None


def _read_pid(path: Path) -> int | None:
    raw = FileLock(path).read()
    if raw is None:
        return None
    try:
        return int(raw.decode().strip() or 0) or None
    except ValueError:
        return None


# --- status.json ----------------------------------------------------------------------
def write_status(run_dir: str | Path, status: dict) -> None:
    """Best effort on a full disk: status.json is a view, the store's own error is the one to report."""
    path = Path(run_dir) / STATUS_NAME
    tmp = path.with_name(f".{STATUS_NAME}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(status, default=str, indent=1))
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        tmp.unlink(missing_ok=True)


def read_status(run_dir: str | Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# --- processes ------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d.name))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` (first, so it spawns no more; never this process itself) and its children;
    a child that leads its own process group takes its group along."""
    kids = children(pid)
    if pid != os.getpid():
        _kill(pid)
    for c in kids:
        try:
            if os.getpgid(c) == c:
                os.killpg(c, signal.SIGKILL)
                continue
        except OSError:
            pass
        _kill(c)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def wait_gone(pid: int, timeout: float, poll: float = 0.1) -> bool:
    """Wait until `pid` is gone (or a zombie); True if it is."""
    end = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= end:
            return False
        time.sleep(poll)
    return True
