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
The locking itself is `store.filelock.FileLock` (shared with the daemon's pid file).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from store.errors import StoreError
from store.filelock import FileLock, pid_alive

__all__ = ["StoreLock", "StoreLocked", "StoreError", "lock_path", "holder", "describe", "pid_alive"]


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
    return {**info, "alive": FileLock.is_held(path)}


def describe(info: dict, held: bool = True) -> str:
    """'pid N on host H since T'; for a lock still `held` whose recorded pid is gone, says why."""
    text = f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')}"
    if (
        held
        and info.get("host") == socket.gethostname()
        and isinstance(info.get("pid"), int)
        and not pid_alive(info["pid"])
    ):
        text += " (that process is gone; a process it forked still holds the lock)"
    return text


class StoreLock:
    def __init__(self, store_path: str | Path):
        self.path = lock_path(store_path)
        self._lock = FileLock(self.path)
        self.took_over: dict | None = None  # the dead holder recorded in a stale lock file

    @property
    def fd(self) -> int | None:
        """The locked descriptor while held, else None."""
        return self._lock.fd

    def acquire(self, tries: int = 5) -> StoreLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            locked = self._lock.acquire(tries)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create the store's lock file: {e.strerror}") from e
        if not locked:
            info = _read(self.path) or {}
            raise StoreLocked(
                f"store {self.path.with_suffix('')} is in use by another `loop start`: "
                f"{describe(info)} (lock file {self.path})"
            )
        self.took_over = _read(self.path)
        try:
            self._lock.write(
                json.dumps(
                    {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                ).encode()
            )
        except OSError as e:
            self.release()
            raise StoreError(f"{self.path}: cannot write the store's lock file: {e.strerror}") from e
        return self

    def release(self) -> None:
        """Empty the file, then unlock: a file that still names a holder was left by a process
        that died holding the lock (the file itself stays; it is never the lock)."""
        self._lock.release(unlink=False)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(path: Path) -> dict | None:
    raw = FileLock(path).read()
    if raw is None:
        return None
    try:
        info = json.loads(raw.decode() or "null")
    except ValueError:
        return None
    return info if isinstance(info, dict) else None
