"""Bounded-time sympy work in a small pool of persistent worker processes.

Contract
--------
* ``run(task, args, timeout_s) -> (status, value)`` with status ``'ok'``,
  ``'timeout'``, ``'error'`` or ``'off'``.  It returns within about
  ``timeout_s + GRACE_S`` from any thread and inside any process (including
  daemonic pool workers): the caller waits on a pipe with ``select``, never on
  signals.  A worker that overruns is killed (SIGKILL), reaped and replaced
  lazily on the next call.
* Workers are plain subprocesses (``python -c ...`` via ``subprocess``), not
  ``multiprocessing`` children, so they work under any start method, inside
  ``ProcessPoolExecutor``/``multiprocessing.Pool`` workers, and never
  re-import the caller's ``__main__``.  They import sympy once at start
  (the first call in a process also waits up to ``STARTUP_TIMEOUT_S`` for
  that), set their own ``setitimer`` alarm per task as a second bound, and exit
  when the parent's pipe closes.  ``atexit`` kills the rest; after ``fork`` the
  child starts with an empty pool.
* Modes (``configure(mode=...)`` or env ``REWARDS_SYMPY_MODE``): ``'pool'``
  (default), ``'inprocess'`` for contexts that cannot start processes (runs in
  the caller: bounded by ``setitimer`` on the main thread and by the input
  guards elsewhere), ``'off'`` (sympy tasks report ``'off'``, verdict None).
  If starting a worker fails, the pool falls back to ``'inprocess'``.
* Messages are pickles of our own ASTs over private pipes between this
  process and its own children; model text never reaches ``pickle``.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import IO, cast

__all__ = ["run", "configure", "warm", "shutdown", "live_pids", "confirm_equal", "solve_relation"]

GRACE_S = 0.5
STARTUP_TIMEOUT_S = 60.0
_HDR = struct.Struct(">I")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", "from rewards.pool import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        # Both are PIPEs, so never None (typed handles for the type checker).
        self.stdin = cast(IO[bytes], self.proc.stdin)
        self.stdout = cast(IO[bytes], self.proc.stdout)
        self.ready = False
        self.ready_before = False  # set after its first task

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        fd, buf = self.stdout.fileno(), b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None  # worker died
            buf += chunk
        return buf

    def wait_ready(self) -> bool:
        self.ready = self._read_exact(1, time.monotonic() + STARTUP_TIMEOUT_S) == b"R"
        return self.ready

    def call(self, task: str, args: tuple, timeout_s: float):
        data = pickle.dumps((task, args, timeout_s))
        try:
            self.stdin.write(_HDR.pack(len(data)) + data)
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        deadline = time.monotonic() + timeout_s + GRACE_S
        hdr = self._read_exact(_HDR.size, deadline)
        body = None if hdr is None else self._read_exact(_HDR.unpack(hdr)[0], deadline)
        return None if body is None else pickle.loads(body)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.stdin, self.stdout):
            try:
                f.close()
            except OSError:
                pass


class _Pool:
    def __init__(self, max_workers: int = 2) -> None:
        self.max_workers = max_workers
        self.mode = os.environ.get("REWARDS_SYMPY_MODE", "pool")
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._cond = threading.Condition()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # inherited handles belong to the parent
            self._reset()

    def _acquire(self, deadline: float) -> _Worker | None:
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.max_workers:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            worker = _Worker()
            self._all.add(worker)
        if not worker.wait_ready():
            self._release(worker, ok=False)
            raise OSError("sympy worker failed to start")
        return worker

    def _release(self, worker: _Worker, ok: bool) -> None:
        if not ok:
            worker.kill()
        with self._cond:
            if ok and worker.proc.poll() is None and os.getpid() == self._pid:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify()

    def run(self, task: str, args: tuple, timeout_s: float):
        self._check_fork()
        if self.mode == "off":
            return "off", None
        if self.mode == "inprocess":
            return _run_inprocess(task, args, timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            worker = self._acquire(deadline)
        except OSError:
            self.mode = "inprocess"  # cannot start processes here
            return _run_inprocess(task, args, timeout_s)
        if worker is None:
            return "timeout", None  # every worker busy for the whole bound
        # waiting for a busy worker counts against the bound; a fresh start does not
        left = max(0.05, deadline - time.monotonic()) if worker.ready_before else timeout_s
        worker.ready_before = True
        reply = worker.call(task, args, left)
        self._release(worker, ok=reply is not None)  # a worker that answered is healthy
        return ("timeout", None) if reply is None else reply

    def shutdown(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._cond:
            workers, self._idle, self._all = list(self._all), [], set()
        for w in workers:
            w.kill()

    def live_pids(self) -> list[int]:
        with self._cond:
            return [w.proc.pid for w in self._all if w.proc.poll() is None]


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def configure(mode: str | None = None, max_workers: int | None = None) -> None:
    if mode is not None:
        if mode not in ("pool", "inprocess", "off"):
            raise ValueError(f"bad mode {mode!r}; valid: pool, inprocess, off")
        _POOL.mode = mode
    if max_workers is not None:
        _POOL.max_workers = max(1, int(max_workers))


def run(task: str, args: tuple, timeout_s: float):
    return _POOL.run(task, args, timeout_s)


def warm() -> None:
    """Start one worker now (e.g. before timing-sensitive work)."""
    status, _ = run("ping", (), STARTUP_TIMEOUT_S)
    if status not in ("ok", "off"):
        raise RuntimeError(f"sympy worker not available: {status}")


def shutdown() -> None:
    _POOL.shutdown()


def live_pids() -> list[int]:
    return _POOL.live_pids()


# ------------------------------------------------------------ task wrappers
def _left(budget) -> float:
    return max(0.05, budget.deadline - time.monotonic())


class SympyTimeout(TimeoutError):
    """A sympy task overran: the verdict is None and is not cached."""


def _task(task: str, args: tuple, budget):
    status, value = run(task, args, _left(budget))
    if status == "timeout":
        raise SympyTimeout(task)
    return value if status == "ok" else None


def confirm_equal(g, p, budget) -> bool | None:
    """sympy's exact answer to "is g - p zero?"; None if it cannot tell."""
    return _task("equal", (g, p), budget)


def solve_relation(node, budget):
    """(variable, intervals) for a gold relation, or None if sympy cannot."""
    return _task("solve", (node,), budget)


# ------------------------------------------------------------ worker side
class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


def _run_task(task: str, args: tuple, timeout_s: float, use_alarm: bool):
    # Deferred on purpose: sympy_bridge imports sympy (about a second); only
    # workers and 'inprocess' mode may pay that, never `import rewards`.
    from . import sympy_bridge

    if use_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return "ok", sympy_bridge.TASKS[task](*args)
    except _Alarm:
        return "timeout", None
    except Exception as exc:  # sympy raises all kinds of things
        return "error", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _run_inprocess(task: str, args: tuple, timeout_s: float):
    main = threading.current_thread() is threading.main_thread()
    return _run_task(task, args, timeout_s, use_alarm=main and hasattr(signal, "setitimer"))


def _worker_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal Ctrl-C is for the daemon (graceful stop)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the reply pipe
    inp = sys.stdin.buffer
    import sympy  # noqa: F401  (pay the import before saying ready)

    from . import sympy_bridge  # noqa: F401

    out.write(b"R")
    out.flush()
    while True:
        hdr = inp.read(_HDR.size)
        if len(hdr) < _HDR.size:
            return  # parent went away
        task, args, timeout_s = pickle.loads(inp.read(_HDR.unpack(hdr)[0]))
        reply = pickle.dumps(_run_task(task, args, timeout_s, use_alarm=True))
        out.write(_HDR.pack(len(reply)) + reply)
        out.flush()
