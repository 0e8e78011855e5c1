"""An exclusive, non-blocking `flock` on a file: the one lock behind `store.lock.StoreLock`
(the store's writer lock) and `loop.daemon.runfiles.PidFile` (one loop per run directory).

Contract:
- `FileLock(path).acquire(tries)` opens `path` (created 0o644 if missing, O_CLOEXEC so
  children never inherit the lock) and takes `LOCK_EX | LOCK_NB`; it retries `tries`
  times, 50 ms apart, since an `is_held()` probe holds a shared lock for microseconds.
  True: held (`fd` is set). False: another open file description holds it (any process,
  this one included, so acquiring a held FileLock again fails too). An `OSError`
  opening the file propagates.
- A lock taken on a file that was unlinked meanwhile (its previous holder released it
  with `unlink=True` between our open and our flock) is not a lock anyone else can see:
  acquire checks the locked descriptor is still the file at `path`, else reopens
  (each reopen counts as a try).
- The lock is the kernel's, not the file: a holder that dies (even SIGKILL) releases it,
  so a file left behind is stale by construction and the next acquire takes it.
- `write(data)` replaces the file's content (a record for readers: pid, host, ...);
  `read()` returns the content without taking the lock (None when unreadable).
- `release(unlink)` removes the file (`unlink=True`) or empties it (`unlink=False`,
  errors ignored: the record only describes, never locks), then unlocks and closes.
  A no-op when not held.
- `FileLock.is_held(path)` probes with a shared non-blocking lock: True held, False free,
  None when the file cannot be opened (absent).
- A holder on its way out is not a holder: when every try fails and every process holding
  the lock (Linux /proc/locks) is exiting (SIGKILL pending, or in do_exit), acquire keeps trying
  for up to EXIT_GRACE_S: a process killed with SIGKILL keeps its locks until the kernel has
  torn down its memory, which for a loaded model takes a noticeable moment.
- `pid_alive(pid)`: True while `pid` runs; a zombie counts as gone (Linux /proc).
Dependency-free (standard library only).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

RETRY_S = 0.05
EXIT_GRACE_S = 10.0
PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit


class FileLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self, tries: int = 5) -> bool:
        """Take the exclusive lock (see the module docstring); True when taken."""
        if self._try(tries):
            return True
        end = time.monotonic() + EXIT_GRACE_S
        while time.monotonic() < end and (pids := lock_holders(self.path)) and all(map(exiting, pids)):
            if self._try(1):
                return True
            time.sleep(RETRY_S / 5)
        return self._try(1)

    def _try(self, tries: int) -> bool:
        for i in range(tries):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if i < tries - 1:
                    time.sleep(RETRY_S)
                continue
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                self.fd = fd
                return True
            os.close(fd)  # a file its previous holder unlinked meanwhile: reopen
        return False

    def write(self, data: bytes) -> None:
        """Replace the file's content with `data` (held only; OSError propagates)."""
        if self.fd is None:
            raise RuntimeError(f"{self.path}: write without holding the lock")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def read(self) -> bytes | None:
        """The file's content, read by path without locking; None when it cannot be read."""
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def release(self, unlink: bool = False) -> None:
        """Remove (`unlink`) or empty the file, then unlock and close; no-op when not held.
        An error removing the file propagates (after the lock is dropped); one emptying it is ignored."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if unlink:
                self.path.unlink(missing_ok=True)
            else:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass  # a read-only or full disk: the record stays; it only describes, never locks
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @staticmethod
    def is_held(path: str | Path) -> bool | None:
        """Whether some process holds the lock on `path` now (None: the file cannot be opened)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


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


def lock_holders(path: str | Path) -> list[int]:
    """Pids holding a flock on `path` (Linux /proc/locks; [] when unknown)."""
    try:
        st = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[-3].rsplit(":", 1)[-1] == str(st.st_ino) and f[4].isdigit():
            pids.append(int(f[4]))
    return pids


def exiting(pid: int) -> bool:
    """True while `pid` is on its way out: one of its threads in do_exit or a SIGKILL pending (a
    killed multi-threaded process can show a zombie leader while its other threads still exit,
    holding the open files). A process wholly gone (or a lone zombie) has dropped its locks, so a
    lock still held after it is someone else's (a process it forked): False, not worth waiting for."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except (OSError, IndexError):
            continue  # that thread is gone
        if fields[0] in ("Z", "X"):
            continue
        pending = [int(ln.split()[1], 16) for ln in status.splitlines() if ln.startswith(("SigPnd:", "ShdPnd:"))]
        if int(fields[6]) & PF_EXITING or any(mask & (1 << (9 - 1)) for mask in pending):  # SIGKILL = 9
            return True
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


class Gate:
    """Writer priority for a file many readers open (the DuckDB store): the writer closes the
    gate (exclusive `flock` on `path`, blocking: readers hold it only for an instant) before it
    opens the file and reopens it after; a reader passes the gate (a shared lock taken and
    dropped at once) before it opens the file, so while the writer waits for the readers
    already in, no new reader gets in ahead of it."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False: close() is a no-op (a writer that holds the file throughout)
        self.fd: int | None = None

    def close(self) -> None:
        if self.enabled and self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                return  # e.g. a read-only directory: no gate; opening the store itself reports the cause
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.fd = fd

    def reopen(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @staticmethod
    def pass_through(path: str | Path, timeout: float) -> bool:
        """Wait (up to `timeout` s) until the gate is open; True once passed (or no gate file)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return True  # no writer ever closed it
        try:
            end = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= end:
                        return False
                    time.sleep(0.005)
        finally:
            os.close(fd)  # closing drops the shared lock
