"""One writer per store: an exclusive `flock` on `<store>.lock`, held for the process lifetime.

Contract:
- `StoreLock(store_path).acquire()` takes the lock or raises `StoreLocked`, whose
  message names the holder's pid, host and start time (read from the lock file).
- The lock is the kernel's `flock`, not the file's existence: a killed process
  (even SIGKILL) releases it automatically, so a lock file left behind by a dead
  process is stale by construction; acquiring over it reports the previous holder
  in `StoreLock.took_over` ("stale lock from pid N ... taken over"). A clean
  release empties the file, so only a holder that died leaves its record.
- The file's content (JSON: pid, host, since) is informational only and rewritten
  by each new holder; `holder(store_path)` reads it without taking the lock.
- The file descriptor is close-on-exec, so child processes (the training job)
  never inherit the lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


from store.db import StoreError


class StoreLocked(StoreError):
    """Another live process holds the store's writer lock."""


def lock_path(store_path: str | Path) -> Path:
    p = Path(store_path)
    return p.with_name(p.name + ".lock")


def holder(store_path: str | Path) -> dict | None:
    """The lock file's recorded holder {pid, host, since} plus `alive` (lock currently held), or None."""
    path = lock_path(store_path)
    info = _read(path)
    if info is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {**info, "alive": None}
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        alive = False
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        alive = True
    finally:
        os.close(fd)
    return {**info, "alive": alive}


def describe(info: dict, held: bool = True) -> str:
    """'pid N on host H since T'; for a lock still `held` whose recorded pid is gone, says why."""
    text = f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')}"
    if held and info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) \
            and not pid_alive(info["pid"]):
        text += " (that process is gone; a process it forked still holds the lock)"
    return text


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone (Linux /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
    return True


class StoreLock:
    def __init__(self, store_path: str | Path):
        self.path = lock_path(store_path)
        self.fd: int | None = None
        self.took_over: dict | None = None   # the dead holder recorded in a stale lock file

    def acquire(self, tries: int = 5) -> "StoreLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create the store's lock file: {e.strerror}") from e
        if not _flock(fd, tries):
            os.close(fd)
            info = _read(self.path) or {}
            raise StoreLocked(f"store {self.path.with_suffix('')} is in use by another `loop start`: "
                              f"{describe(info)} (lock file {self.path})")
        self.took_over = _read(self.path)
        self.fd = fd
        try:
            self._write({"pid": os.getpid(), "host": socket.gethostname(),
                         "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError as e:
            self.release()
            raise StoreError(f"{self.path}: cannot write the store's lock file: {e.strerror}") from e
        return self

    def _write(self, info: dict) -> None:
        data = json.dumps(info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Empty the file, then unlock: a file that still names a holder was left by a process
        that died holding the lock (the file itself stays; it is never the lock)."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # a read-only or full disk: the record stays; it only describes, never locks
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _flock(fd: int, tries: int) -> bool:
    """Exclusive lock; retried briefly, since a `holder()` probe holds a shared lock for microseconds."""
    for i in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i < tries - 1:
                time.sleep(0.05)
    return False


def _read(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
