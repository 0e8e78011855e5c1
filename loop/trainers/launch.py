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
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from loop import cancel
from loop.trainers.job import TrainJob

CHILD_MODULE = "loop.trainers.child"
GRACE_S = 5.0  # a stopped child's group gets this long after SIGTERM before SIGKILL
POLL_S = 0.2  # how often the wait looks at the stop flag


class TrainError(RuntimeError):
    pass


def run_child(job: TrainJob, job_path: Path, threads: int | None, launcher: str | None = None) -> dict:
    """Run the training job in a child process (under `launcher`, e.g. `accelerate launch
    --num_processes 4`, one per GPU); return its metrics."""
    job_path.write_text(json.dumps(job, indent=2))
    # a direct child dies with the daemon by the kernel's parent-death signal; a launcher's
    # workers are grandchildren, so they watch the daemon's pid instead (die_with_parent)
    env = {k: v for k, v in os.environ.items() if k not in ("LOOP_PARENT_PID", "LOOP_DAEMON_PID")}
    env["LOOP_DAEMON_PID" if launcher else "LOOP_PARENT_PID"] = str(os.getpid())
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if not launcher:
        env.update(one_gpu(env))
    # own session: a Ctrl-C at the terminal reaches only the daemon, whose stop request ends this
    # child's whole group (wait_cancellable); a hard stop (`loop stop --now`) kills the group too
    cmd = [*launch_command(launcher), "-m", CHILD_MODULE, str(job_path)]
    out = Path(job["out"])
    try:
        code = wait_cancellable(subprocess.Popen(cmd, env=env, start_new_session=True))
    except cancel.Cancelled:
        for tmp in out.parent.glob(out.name + ".tmp*"):  # the child's unfinished output (rank 0 and others)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if code != 0 or not (out / "metrics.json").exists():
        raise TrainError(f"training process failed (exit {code}); job {job_path}")
    return json.loads((out / "metrics.json").read_text())


def wait_cancellable(proc: subprocess.Popen, grace_s: float = GRACE_S) -> int:
    """Wait for `proc` (the leader of its own process group) and return its exit code; on a stop
    request, or any exception here, end its group (end_group) first, then raise."""
    try:
        while proc.poll() is None:
            cancel.check()
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
