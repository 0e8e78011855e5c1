"""Launching a training job as a child process, and the child's tie to the daemon.

The child (`python -m loop.trainers.child JOB.json`, or under `train.launcher`, e.g.
`accelerate launch --num_processes 4`) only reads the job's Parquet snapshot and writes
the adapter folder, renamed into place when complete, so a crash in training cannot
corrupt the store or take the daemon down. The child dies with the daemon (Linux
parent-death signal; a launcher's workers watch the daemon's pid), so a killed daemon
leaves no orphan still writing the folder its restarted attempt rewrites.

A stop request (loop.cancel: SIGTERM/SIGINT to the daemon, `loop stop`) ends the child at once:
`wait_cancellable` polls the flag while it waits, then sends the child's process group (its own
session: launcher and workers included) SIGTERM, SIGKILL after `GRACE_S`, removes the job's
scratch folders and raises `Cancelled`. Nothing was registered (the stage commits the adapter
with its step), so the next `loop start` reruns the job from its Parquet snapshot.

A warm worker (`train.worker`: `auto` = on CPU, `warm`, `fresh`) keeps one training process between
jobs instead (loop.trainers.worker: the libraries stay imported; a small job's fresh child spends
most of its time importing them): started on the first job like a child (own session, the child's
environment, parent-death signal), handed each job's path on its stdin, answering on a pipe of its
own, running the job by the child's code path. It gives what the child gives: it only writes the
adapter folder (renamed into place when complete); a stop request ends its process group as it
ends a child's, and the next job starts a new worker; one that died (killed, crashed) is replaced
on the next job, and so is one whose start variables (GPU, threads, parent, import path, unsloth's
switches: `start_change`) the next job's child would get otherwise; other variables set since reach
the job with it, and a replacement prints why. `prestart` starts a run's
workers before its first round, each importing what its first job will import (the worker's
preload), so that the import overlaps the round's first stages instead of its train stage. A job
that failed there (TrainError) retires the worker and runs again once in a fresh child, so the
warm path can cost a round time but not the round (metrics `worker`: warm, fresh, or
fresh-after-warm); `close_worker` (at exit, and when `serve` ends) ends them all.

There is one warm worker per `worker_flavor`: per training backend (importing unsloth patches
TRL's trainers for the whole process), and for a TRL GRPO job generating with vLLM on CUDA per
engine as well (the worker keeps that engine between jobs: loop.trainers.gpu.KEPT). Jobs under
`train.launcher` and unsloth's own vLLM generation (fast_inference, built inside its model
loader) always run in a fresh child; `auto` keeps CUDA jobs fresh (a kept engine's memory share
stays taken between jobs; configs/gpu.yaml asks for `warm`).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from loop import cancel
from loop.trainers import choose_trainer, gpu
from loop.trainers.job import TrainJob

CHILD_MODULE = "loop.trainers.child"
WORKER_MODULE = "loop.trainers.worker"
WorkerMode = Literal["auto", "warm", "fresh"]
GRACE_S = 5.0  # a stopped child's group gets this long after SIGTERM before SIGKILL
POLL_S = 0.2  # how often the wait looks at the stop flag


class TrainError(RuntimeError):
    pass


def run_child(
    job: TrainJob, job_path: Path, threads: int | None, launcher: str | None = None, worker: WorkerMode = "fresh"
) -> dict:
    """Run the training job in a child process (under `launcher`, e.g. `accelerate launch
    --num_processes 4`, one per GPU) or, as `worker` (train.worker) decides, in the warm worker;
    return its metrics."""
    job_path.write_text(json.dumps(job, indent=2))
    env = child_env(threads, launcher)
    # own session: a Ctrl-C at the terminal reaches only the daemon, whose stop request ends this
    # child's whole group (wait_cancellable); a hard stop (`loop stop --now`) kills the group too
    out = Path(job["out"])
    code: int | None
    where, failed = "fresh", ""
    try:
        warm = use_worker(worker, job, launcher) and _run_warm(job_path, env, worker_flavor(job))
        if warm and warm != (0, None):
            why = warm[1] or f"exit {warm[0]}"
            print(f"train: the job failed in the warm worker ({why}); running it again in a fresh child")
            where, failed = "fresh-after-warm", f"; in the warm worker before: {why}"
        if warm == (0, None):
            code, where = 0, "warm"
        else:
            cmd = [*launch_command(launcher), "-m", CHILD_MODULE, str(job_path)]
            code = wait_cancellable(subprocess.Popen(cmd, env=env, start_new_session=True))
    except cancel.Cancelled:
        for tmp in out.parent.glob(out.name + ".tmp*"):  # the child's unfinished output (rank 0 and others)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if code != 0 or not (out / "metrics.json").exists():
        raise TrainError(f"training process failed (exit {code}{failed}); job {job_path}")
    return {**json.loads((out / "metrics.json").read_text()), "worker": where}


def child_env(threads: int | None, launcher: str | None) -> dict[str, str]:
    """The training process's environment: the daemon's, tied to the daemon's pid, its threads."""
    # a direct child dies with the daemon by the kernel's parent-death signal; a launcher's
    # workers are grandchildren, so they watch the daemon's pid instead (die_with_parent)
    env = {k: v for k, v in os.environ.items() if k not in ("LOOP_PARENT_PID", "LOOP_DAEMON_PID")}
    env["LOOP_DAEMON_PID" if launcher else "LOOP_PARENT_PID"] = str(os.getpid())
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if not launcher:
        env.update(one_gpu(env))
    return env


def use_worker(mode: WorkerMode, job: TrainJob, launcher: str | None) -> bool:
    """train.worker for this job: the warm worker, or a fresh child (see the contract)."""
    if launcher or mode == "fresh":
        return False
    import torch

    cuda = torch.cuda.is_available()
    try:
        engine = grpo_engine(job, cuda)
    except (ValueError, RuntimeError):
        return False  # the child reports the bad setting
    if engine == "vllm" and choose_trainer(job.get("backend", "auto")) != "trl":
        return False  # unsloth's engine is built inside its model loader: not kept
    return mode == "warm" or not cuda


def grpo_engine(job: TrainJob, cuda: bool) -> str | None:
    """Where a GRPO job generates ("hf", "vllm"); None for other methods."""
    if job.get("method") != "grpo":
        return None
    backend = choose_trainer(job.get("backend", "auto"))
    return gpu.generation_engine(dict(job), cuda, auto=gpu.AUTO[backend])


def worker_flavor(job: TrainJob) -> tuple[str, str]:
    """Which warm worker runs the job (see the contract): (its backend, "" or, for a GRPO job
    generating with vLLM, what its kept engine is built from: the base model, the generation settings)."""
    import torch

    backend = choose_trainer(job.get("backend", "auto"))
    if grpo_engine(job, torch.cuda.is_available()) != "vllm":
        return backend, ""
    grpo = dict(job["grpo"])
    grpo["generation"] = {k: v for k, v in (grpo.get("generation") or {}).items() if k != "early"}  # when, not what
    keys = ("max_completion_length", "batch_size", "num_generations", "generation")
    return backend, json.dumps([job["base"], {k: grpo.get(k) for k in keys}], sort_keys=True)


class Worker:
    """The warm training process (loop.trainers.worker): job paths in on its stdin, one JSON answer
    a job back on a pipe of its own (its stdout and stderr are the daemon's, as a child's are)."""

    def __init__(self, env: dict[str, str], flavor: tuple[str, str] = ("trl", ""), preload: Path | None = None):
        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(write), *([str(preload)] if preload else [])],
                env=env,
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                start_new_session=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self.env, self.flavor, self.jobs, self._reply, self._buf = env, flavor, 0, read, b""
        self.started, self._eof = False, False
        self._answer: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def hand(self, job_path: Path, env: dict[str, str] | None = None) -> bool:
        """Give it one job (its path and its child's environment, one line on stdin); False when
        it is gone already."""
        assert self.proc.stdin is not None
        self.started, self._answer = False, {}
        line = json.dumps({"job": str(job_path), "env": env or self.env})
        try:
            self.proc.stdin.write(f"{line}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        self.jobs += 1
        return True

    def wait(self) -> tuple[int, str | None]:
        """Wait (cancellable, as for a child) for the job handed: (0, None) done, (1, error) the
        job failed, (exit code, None) the worker died (`started`: after it took the job)."""
        code = wait_cancellable(self.proc, reply=self._answered)
        if code is not None:
            while self._unread() and not self._answered(0.0):  # read what it wrote before it went
                pass
            if not self._answer:
                return code, None
        return (0, None) if self._answer["ok"] else (1, self._answer["error"])

    def _answered(self, timeout: float) -> bool:
        """Wait up to `timeout` for the job's answer; True once it is in. The worker's lines:
        `{"started": PATH}` when it takes a job, then `{"ok": ...}`."""
        if not self._unread(timeout):
            return False
        chunk = os.read(self._reply, 65536)
        if not chunk:  # its end closed: the worker is exiting; wait_cancellable sees it go
            self._eof = True
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            return False
        self._buf += chunk
        while b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            msg = json.loads(line)
            if "ok" in msg:
                self._answer = msg
                return True
            self.started = True
        return False

    def _unread(self, timeout: float = 0.0) -> bool:
        """Something (or the end) to read on the answer pipe within `timeout`."""
        return not self._eof and bool(select.select([self._reply], [], [], timeout)[0])

    def close(self, grace_s: float = GRACE_S) -> None:
        """End it: end of stdin (an idle worker exits at once), its group ended after `grace_s`."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        end_group(self.proc, grace_s)
        try:
            os.close(self._reply)
        except OSError:
            pass


_WORKERS: dict[str, Worker] = {}  # the warm workers, one per backend (its flavor in Worker.flavor)
_LAST: list[str] = []  # the backend of the worker that took the last job
_WORKER_LOCK = threading.Lock()  # one job at a time in them; a second job meanwhile runs in a fresh child


def warm_worker() -> Worker | None:
    """The warm worker that took the last job (started, maybe dead since), if any."""
    return _WORKERS.get(_LAST[-1]) if _LAST else None


def close_worker(backend: str | None = None) -> None:
    """End the warm workers (or `backend`'s): at exit, when the daemon's `serve` ends, in tests."""
    for name in [backend] if backend else list(_WORKERS):
        worker = _WORKERS.pop(name, None)
        if worker is not None:
            worker.close()


atexit.register(close_worker)  # a clean exit leaves no worker (a killed daemon's dies by its signal)


START_VARS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOOP_PARENT_PID", "PYTHONPATH", "PATH")
START_PREFIXES = ("UNSLOTH_",)  # unsloth reads its switches when it is imported


def start_change(started: dict[str, str], env: dict[str, str]) -> str | None:
    """Why a worker started with `started` cannot run a job whose child would get `env` (None: it
    can): a variable that decides what the process is at its start (which GPU, threads, its
    parent, where it imports from, unsloth's switches) changed, or came or went. Any other
    difference (a vLLM sampler's variables, set once its engine started) reaches the job with its
    hand-off line."""
    for k in sorted(set(started) | set(env)):
        if (k in START_VARS or k.startswith(START_PREFIXES)) and started.get(k) != env.get(k):
            return f"{k} {started.get(k)!r} -> {env.get(k)!r}"
    return None


def prestart(job: TrainJob, job_path: Path, threads: int | None, launcher: str | None, mode: WorkerMode) -> bool:
    """Start the warm worker that `job` would go to, importing what it imports (its preload),
    unless train.worker keeps it in a fresh child or that worker is up; True when one started.
    The run's first stages go on meanwhile (bench/results/README.md: round 1 of a GPU loop)."""
    if not use_worker(mode, job, launcher):
        return False
    flavor, env = worker_flavor(job), child_env(threads, launcher)
    if not _WORKER_LOCK.acquire(blocking=False):
        return False
    try:
        if _replace_reason(_WORKERS.get(flavor[0]), env, flavor) is None:
            return False  # the one up would take the job
        close_worker(flavor[0])
        job_path.parent.mkdir(parents=True, exist_ok=True)
        job_path.write_text(json.dumps(job, indent=2))
        _WORKERS[flavor[0]] = Worker(env, flavor, preload=job_path)
        return True
    finally:
        _WORKER_LOCK.release()


def _replace_reason(old: Worker | None, env: dict[str, str], flavor: tuple[str, str]) -> str | None:
    """Why the job cannot go to `old` (None: it can)."""
    if old is None:
        return "none yet"
    if not old.alive():
        return f"the last one exited: {old.proc.returncode}"
    if old.flavor != flavor:
        return "another GRPO engine"
    change = start_change(old.env, env)
    return f"{change} since it started" if change else None


def _run_warm(job_path: Path, env: dict[str, str], flavor: tuple[str, str]) -> tuple[int, str | None] | None:
    """Run the job in the warm worker of its flavor (a new one unless that backend's is alive with
    this flavor and environment); None when one is busy with another job. A failed job, a stop or
    a death retires the worker."""
    if "\n" in str(job_path) or not _WORKER_LOCK.acquire(blocking=False):
        return None
    backend = flavor[0]
    try:
        for _ in range(2):  # a worker gone before it took the job (dead at the hand-off) is replaced once
            old = _WORKERS.get(backend)
            why = _replace_reason(old, env, flavor)
            if why:
                if old is not None:
                    print(f"train: a new {backend} worker ({why})")
                close_worker(backend)
                _WORKERS[backend] = Worker(env, flavor)
            worker = _WORKERS[backend]
            _LAST[:] = [backend]
            if not worker.hand(job_path, env):
                close_worker(backend)
                continue
            try:
                code, error = worker.wait()
            except BaseException:  # a stop request: wait_cancellable ended its group
                close_worker(backend)
                raise
            if code != 0:
                close_worker(backend)
            if code == 0 or worker.started:
                return code, error
        return None  # two workers gone at the hand-off: a fresh child says why
    finally:
        _WORKER_LOCK.release()


def wait_cancellable(
    proc: subprocess.Popen, grace_s: float = GRACE_S, reply: Callable[[float], bool] | None = None
) -> int | None:
    """Wait for `proc` (the leader of its own process group) and return its exit code, or, with
    `reply` (a warm worker's: waits up to its argument, True once the job's answer is in), None
    once that answers; on a stop request, or any exception here, end its group (end_group) first,
    then raise."""
    try:
        while proc.poll() is None:
            cancel.check()
            if reply is not None:
                if reply(POLL_S):
                    return None
                continue
            try:
                proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
        return proc.returncode
    except BaseException:
        end_group(proc, grace_s)
        raise


def end_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL what is left of it after `grace_s` (its
    workers may outlive the leader), and reap the leader."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group has exited already
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def one_gpu(env: dict) -> dict[str, str]:
    """A job without train.launcher trains on one GPU, the first visible: one process seeing
    several makes Trainer wrap the model in nn.DataParallel, which TRL's trainers refuse
    (seen on a 2-GPU H200 host). `train.launcher` spreads a job over all of them."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return {"CUDA_VISIBLE_DEVICES": "0"}  # harmless without GPUs
    return {"CUDA_VISIBLE_DEVICES": visible.split(",")[0].strip()}  # "" (no GPU) stays ""


def launch_command(launcher: str | None) -> list[str]:
    """`train.launcher` as argv (before `-m loop.trainers.child JOB`); its program is looked up next to
    this Python first (a venv's `accelerate`/`torchrun` need not be on PATH)."""
    if not launcher:
        return [sys.executable]
    words = shlex.split(launcher)
    local = Path(sys.executable).parent / words[0]
    found = str(local) if local.is_file() else shutil.which(words[0])
    if not found:
        raise TrainError(
            f"train.launcher: {words[0]!r} not found next to {sys.executable} or on PATH "
            f"(e.g. 'accelerate launch --num_processes 2', 'torchrun --nproc_per_node 2')"
        )
    return [found, *words[1:]]


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has.
    Only a child started by `run_child` (LOOP_PARENT_PID set) checks its parent; the variable
    is not passed on. Under a launcher (LOOP_DAEMON_PID set) the parent is the launcher, so a
    thread also watches the daemon and exits when it is gone."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    expected = os.environ.pop("LOOP_PARENT_PID", None)
    if expected and os.getppid() != int(expected):  # parent died before prctl took effect
        os._exit(1)
    if os.environ.get("LOOP_DAEMON_PID"):
        watch_daemon(int(os.environ["LOOP_DAEMON_PID"]))


def watch_daemon(pid: int, every_s: float = 1.0) -> None:
    """Exit this process (no cleanup: the restarted daemon redoes the job) once `pid` is gone."""

    def watch():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, another user's
                pass
            time.sleep(every_s)

    threading.Thread(target=watch, name="loop-daemon-watch", daemon=True).start()
