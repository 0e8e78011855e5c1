"""The daemon: the loop's rounds on a schedule, and `loop start / status / stop`.

Contract:
- `serve(cfg, rounds, every)` runs the loop in this process (foreground `loop start`,
  and the detached daemon). One loop per run directory: it holds `loop.pid`
  (`runfiles.PidFile`) for its lifetime; a second one is refused naming the pid.
  - `every=None`: one job, until the run has `rounds` rounds (`loop start --rounds N`).
  - `every=S`: an APScheduler `BackgroundScheduler` with one job `run_round`
    (IntervalTrigger(S), max_instances=1, coalesce=True, first run at once); each job
    adds one round (resuming an unfinished one first). With `rounds`, the process
    exits once the run has that many; without, it runs until stopped. A job that
    overran its interval is followed at once by the next one.
  Jobs run in a worker thread; the main thread only waits and takes signals:
  SIGTERM or SIGINT = graceful: the running stage is cancelled within seconds (loop.cancel;
  a training child's process group is ended), nothing of it is committed, then exit 0 and
  the next start reruns that stage; a second SIGINT = at once (children killed; exit 130).
  A failed job is logged; `daemon.max_failures` failures in a row end the daemon (1).
- `status.json` in the run directory is rewritten (atomically) on every stage start
  and end, round end and scheduling: pid, mode, state (starting, running, idle,
  stopping, then stopped / finished / failed; `killed` by `stop --now`), round,
  stage, next_run_at, started_at, last_round (held-out accuracy, verified %, ...).
  Events also go to the structured log `loop.log` (loop/log.py).
- `start_daemon` detaches `python -m loop.daemon` (new session, stdin/stdout off the
  terminal, output to `daemon.out`) and returns once it holds the run directory.
- `status(cfg)` reads status.json and checks the pid file's holder is alive; last
  round's numbers come from status.json, or from the store (read-only) when no loop
  is running (DuckDB refuses readers while another process writes).
- `stop(cfg)` sends SIGTERM and waits; `now=True` SIGKILLs the process and its
  children at once (a restart resumes: stages commit transactionally).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loop import log, tracking
from loop import runner as round_runner  # a module attribute: tests swap round_runner.run_rounds
from loop.config import Config, parse_duration
from loop.daemon.runfiles import AlreadyRunning, PidFile, kill_tree, read_status, running_pid, wait_gone, write_status
from loop.trainers.launch import close_worker
from store import queries
from store.db import Store, StoreError

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

__all__ = ["serve", "start_daemon", "status", "stop", "DaemonError", "AlreadyRunning", "parse_duration"]
JOB_ID, OUT_NAME = "run_round", "daemon.out"


class DaemonError(RuntimeError):
    """The daemon could not be started or stopped; the message says why."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Runner:
    """One loop process: its jobs, its status file, its signals."""

    def __init__(self, cfg: Config, rounds: int | None, every_s: float | None, mode: str):
        self.cfg, self.rounds, self.every_s = cfg, rounds, every_s
        self.run_dir = Path(cfg.run.dir)
        self.token = round_runner.StopToken()
        # one tracker for all jobs: a wandb run per daemon, not per round
        self.tracker = tracking.RoundTracker(cfg.train.report_to, self.run_dir, cfg.model_dump(mode="json"))
        self.finished: int | None = None  # rounds the run has, learned from events
        self.failures = 0
        self.error: BaseException | None = None
        self.sched: BackgroundScheduler | None = None
        self._busy = threading.Event()
        self._overran = False
        self._lock = threading.Lock()
        self.status = {
            "pid": os.getpid(),
            "mode": mode,
            "state": "starting",
            "started_at": _now(),
            "run_dir": str(self.run_dir),
            "rounds_target": rounds,
            "every_s": every_s,
            "run_id": None,
            "round": None,
            "stage": None,
            "next_run_at": None,
            "finished_rounds": None,
            "last_round": None,
            "last_stage": None,
            "last_error": None,
            "log": str(self.run_dir / log.LOG_NAME),
        }

    def update(self, **fields) -> None:
        with self._lock:
            self.status.update(fields, updated_at=_now())
            write_status(self.run_dir, self.status)

    # --- events from run_rounds (worker thread) ---------------------------------------
    def on_event(self, ev: dict) -> None:
        name = ev["event"]
        if name == "run_start":
            self.finished = ev["finished"]
            self.update(run_id=ev["run_id"], finished_rounds=ev["finished"])
        elif name == "stage_start":
            self.update(
                round=ev["round"],
                stage=ev["stage"],
                stage_started_at=_now(),
                state="stopping" if self.token.stopped else "running",
                next_run_at=self.next_run_at(),
            )
        elif name == "stage_end":
            self.update(last_stage={k: ev[k] for k in ("round", "stage", "seconds", "counts")})
        elif name == "round_end":
            self.finished = max(self.finished or 0, ev["round"])
            self.update(finished_rounds=self.finished, last_round=ev["numbers"])
        elif name == "stage_error":
            self.update(last_error=f"round {ev['round']} {ev['stage']}: {ev['error']}")

    # --- jobs -----------------------------------------------------------------------------
    def job(self, max_new: int | None) -> None:
        """Run rounds (one job); errors are counted, logged and kept, never raised."""
        if self.token.stopped:
            return
        self._busy.set()
        self.update(state="running")
        try:
            round_runner.run_rounds(
                self.cfg, self.rounds, self.token, max_new=max_new, on_event=self.on_event, tracker=self.tracker
            )
            self.failures = 0
        except BaseException as e:  # noqa: BLE001 - a round's failure must not kill the daemon
            self.failures += 1
            self.error = e
            log.event("job_error", "error", exc_info=True, failures=self.failures, error=f"{type(e).__name__}: {e}")
            self.update(last_error=f"{type(e).__name__}: {e}")
            if self.failures >= self.cfg.daemon.max_failures or max_new is None:
                self.token.stop("failed")
        finally:
            self._busy.clear()
        if self.rounds is not None and (self.finished or 0) >= self.rounds:
            self.token.stop("done")

    def run_once(self) -> None:
        worker = threading.Thread(target=self.job, args=(None,), name="loop-rounds")
        worker.start()
        self._wait_stop(worker.is_alive)
        worker.join()

    def run_scheduled(self) -> None:
        self.sched = sched = _scheduler(self)
        sched.start()
        self.update(next_run_at=self.next_run_at())  # the first job starts at once
        self._wait_stop(lambda: not self.token.stopped)
        sched.shutdown(wait=True)  # the running job (if any) has finished its stage by now

    def _wait_stop(self, alive) -> None:
        """Wait (taking signals) while `alive()`; once a stop is requested, wait for the job."""
        noted = False
        while alive() or (self.token.stopped and self._busy.is_set()):
            if self.token.stopped:
                time.sleep(0.1)
            else:
                self.token.wait(0.2)
            if self.token.stopped and not noted and self.token.reason not in ("done", "failed"):
                noted = True
                log.event(
                    "stop_requested", reason=self.token.reason, round=self.status["round"], stage=self.status["stage"]
                )
                self.update(state="stopping", next_run_at=None)

    def next_run_at(self) -> str | None:
        """The scheduler's next fire time; an overrun job is followed as soon as it ends."""
        if self._overran:
            return "when the current round ends"
        job = self.sched.get_job(JOB_ID) if self.sched and not self.token.stopped else None
        return job.next_run_time.isoformat(timespec="seconds") if job and job.next_run_time else None

    def after_job(self, event) -> None:
        """Scheduler listener (after a job): catch up an overrun at once; record the next run."""
        if self.token.stopped:
            return
        if self._overran:
            self._overran = False
            assert self.sched is not None  # a listener of the running scheduler
            self.sched.modify_job(JOB_ID, next_run_time=dt.datetime.now(dt.UTC))
        self.update(state="idle", round=None, stage=None, next_run_at=self.next_run_at())
        log.event("scheduled", next_run_at=self.status["next_run_at"])

    def overran(self, event) -> None:
        if not self._overran:
            self._overran = True
            log.event("job_overran", "warning", every_s=self.every_s)

    # --- signals ----------------------------------------------------------------------------
    def on_signal(self, signum, frame) -> None:
        """Only flags here: the main thread logs and writes the status when it wakes."""
        if signum == signal.SIGINT and self.token.stopped and self.token.reason not in ("done",):
            os.write(2, b"\nloop: second interrupt, stopping at once\n")
            kill_tree(os.getpid())  # children only: the training job leads its own group
            os._exit(130)
        self.token.stop(f"signal {signal.Signals(signum).name}")
        if signum == signal.SIGINT:
            os.write(2, b"\nloop: stopping; the next start reruns the cancelled stage (Ctrl-C again: at once)\n")


def _scheduler(runner: _Runner) -> BackgroundScheduler:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skipped overlaps are our own events
    utc = dt.UTC
    sched = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(1)},
        timezone=utc,
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
    )
    sched.add_listener(runner.after_job, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    sched.add_listener(runner.overran, EVENT_JOB_MAX_INSTANCES)
    sched.add_job(
        runner.job,
        IntervalTrigger(seconds=runner.every_s, timezone=utc),
        args=(1,),
        id=JOB_ID,
        name=JOB_ID,
        next_run_time=dt.datetime.now(utc),
    )
    return sched


def serve(cfg: Config, rounds: int | None, every: float | str | None = None, mode: str = "foreground") -> dict:
    """Run the loop in this process until done or stopped; returns the final status.
    Foreground without `every`: a job's error is raised (after cleanup)."""
    every_s = None if every is None else parse_duration(every)
    if every_s is None and rounds is None:
        raise DaemonError("without --every, give --rounds")
    pidfile = PidFile(cfg.run.dir).acquire()
    close_log, old, runner = None, None, None
    try:
        close_log = log.configure(cfg.run.dir, cfg.daemon.log_max_bytes, cfg.daemon.log_backups)
        runner = _Runner(cfg, rounds, every_s, mode)
        old = _install_signals(runner.on_signal)
        runner.update(state="starting")
        log.event("start", mode=mode, rounds=rounds, every_s=every_s, stale_pid=pidfile.stale_pid)
        if every_s is None:
            runner.run_once()
        else:
            runner.run_scheduled()
        final = _final_state(runner)
        runner.update(state=final, round=None, stage=None, next_run_at=None, stopped_at=_now())
        log.event("exit", state=final, reason=runner.token.reason, finished_rounds=runner.finished)
    finally:
        _restore_signals(old)
        if runner is not None:
            runner.tracker.close()
        close_worker()  # the warm training process (loop.trainers.launch) ends with the loop
        if close_log is not None:
            close_log()
        pidfile.release()
    if runner.error is not None and every_s is None:
        raise runner.error
    return dict(runner.status)


def _final_state(runner: _Runner) -> str:
    if runner.token.reason == "failed":
        return "failed"
    if runner.rounds is not None and (runner.finished or 0) >= runner.rounds:
        return "finished"
    return "stopped"


def _install_signals(handler) -> dict | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may take signals (library use from a thread)
    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}


def _restore_signals(old: dict | None) -> None:
    for s, h in (old or {}).items():
        signal.signal(s, h)


# --- the CLI's side: start detached, status, stop ------------------------------------------
def start_daemon(cfg: Config, rounds: int | None, every: float | str, wait_s: float = 60.0) -> dict:
    """Detach a daemon on this config; return its status once it holds the run directory."""
    run_dir = Path(cfg.run.dir)
    pid = running_pid(run_dir)
    if pid is not None:
        raise AlreadyRunning(run_dir, pid)
    round_runner.validate_run(cfg)  # a bad seed file fails here, not in the detached daemon's log
    run_dir.mkdir(parents=True, exist_ok=True)
    _rotate(run_dir / OUT_NAME, cfg.daemon.log_max_bytes)
    argv = [sys.executable, "-m", "loop.daemon", "--every", str(parse_duration(every))]
    argv += [] if rounds is None else ["--rounds", str(rounds)]
    with open(run_dir / OUT_NAME, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd(), start_new_session=True
        )
    assert proc.stdin is not None  # stdin=PIPE
    proc.stdin.write(json.dumps(cfg.model_dump(mode="json")).encode())
    proc.stdin.close()
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        st = read_status(run_dir)
        if st.get("pid") == proc.pid and st.get("state") != "starting":
            return st
        if proc.poll() is not None:
            st = read_status(run_dir)
            if proc.returncode == 0 and st.get("pid") == proc.pid:
                return st  # it had nothing left to do
            raise DaemonError(f"the daemon exited at start (code {proc.returncode}): {_tail(run_dir / OUT_NAME)}")
        time.sleep(0.1)
    return {**read_status(run_dir), "pid": proc.pid, "state": "starting"}


def _rotate(path: Path, max_bytes: int) -> None:
    """The daemon's raw output (progress bars, tracebacks) is kept to about one file's size."""
    if path.exists() and path.stat().st_size > max_bytes:
        os.replace(path, path.with_name(path.name + ".1"))


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no output)"


def status(cfg: Config) -> dict:
    """Running or not, pid, round and stage, last round's numbers, next run time."""
    run_dir = Path(cfg.run.dir)
    st = read_status(run_dir)
    pid = running_pid(run_dir)
    keep = (
        "mode",
        "state",
        "round",
        "stage",
        "stage_started_at",
        "next_run_at",
        "started_at",
        "updated_at",
        "run_id",
        "rounds_target",
        "every_s",
        "finished_rounds",
        "last_round",
        "last_stage",
        "last_error",
    )
    out = {
        "running": pid is not None,
        "pid": pid,
        "run_dir": str(run_dir),
        "log": str(run_dir / log.LOG_NAME),
        **{k: st.get(k) for k in keep},
    }
    if pid is None:
        out.update(
            state="not running",
            last_state=st.get("state"),
            last_pid=st.get("pid"),
            round=None,
            stage=None,
            next_run_at=None,
        )
        out.update(_from_store(cfg) or {})
    return out


def _from_store(cfg: Config) -> dict | None:
    """The last finished round's numbers, read-only from the store (only when no loop runs)."""
    if not cfg.store_path.exists():
        return None
    try:
        with Store(cfg.store_path, read_only=True) as st:
            run_id = queries.latest_run(st)
            if run_id is None:
                return None
            n = round_runner.finished_rounds(st, run_id)
            return {"run_id": run_id, "finished_rounds": n, "last_round": round_runner.round_summary(st, run_id, n)}
    except StoreError as e:
        return {"store_error": str(e)}


def describe(st: dict) -> str:
    """`status()` as a few human lines."""

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    if st["running"]:
        head = f"running  pid {st['pid']} ({st.get('mode')}, since {st.get('started_at')})  state {st.get('state')}"
    else:
        head = f"not running  (last: {st.get('last_state') or 'never started'}, pid {st.get('last_pid') or '-'})"
    lines = [
        head,
        f"run dir {st['run_dir']}  run {st.get('run_id') or '-'}  "
        f"rounds done {st.get('finished_rounds') if st.get('finished_rounds') is not None else '-'}"
        f"{' of ' + str(st['rounds_target']) if st.get('rounds_target') is not None else ''}",
    ]
    if st.get("round") is not None:
        lines.append(f"now      round {st['round']}  stage {st.get('stage')}  (since {st.get('stage_started_at')})")
    lr = st.get("last_round")
    if lr:
        lines.append(
            f"last     round {lr.get('round')}: held-out acc {pct(lr.get('heldout_accuracy'))}  "
            f"verified {pct(lr.get('verified_frac'))}  samples {lr.get('samples')}  "
            f"problems {lr.get('problems')}"
        )
    if st.get("next_run_at"):
        lines.append(f"next     round at {st['next_run_at']}  (every {st.get('every_s')}s)")
    for key in ("last_error", "store_error"):
        if st.get(key):
            lines.append(f"{key.replace('_', ' '):<8} {st[key]}")
    lines.append(f"log      {st['log']}")
    return "\n".join(lines)


def stop(cfg: Config, now: bool = False, timeout: float = 600.0) -> dict:
    """Stop the loop running in the run directory: SIGTERM (graceful) or, `now`, SIGKILL; wait."""
    run_dir = Path(cfg.run.dir)
    pid = running_pid(run_dir)
    if pid is None:
        return {"was_running": False, "run_dir": str(run_dir)}
    before = read_status(run_dir)
    t0 = time.monotonic()
    if now:
        kill_tree(pid)
        gone = wait_gone(pid, min(timeout, 30.0))
        if gone:
            write_status(run_dir, {**before, "state": "killed", "stopped_at": _now()})
    else:
        os.kill(pid, signal.SIGTERM)
        gone = wait_gone(pid, timeout)
    st = read_status(run_dir)
    return {
        "was_running": True,
        "pid": pid,
        "gone": gone,
        "seconds": round(time.monotonic() - t0, 1),
        "run_dir": str(run_dir),
        "state": st.get("state"),
        "round": before.get("round"),
        "stage": before.get("stage"),
        "finished_rounds": st.get("finished_rounds"),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m loop.daemon --every S [--rounds N]`, the resolved config as JSON on stdin."""
    ap = argparse.ArgumentParser(
        prog="python -m loop.daemon", description="Serve the loop in this process (started by `loop start --daemon`)."
    )
    ap.add_argument("--every", required=True, help="Seconds (or 30m, 2h) between round starts.")
    ap.add_argument("--rounds", type=int, default=None, help="Exit once the run has this many rounds.")
    args = ap.parse_args(argv)
    cfg = Config.model_validate(json.loads(sys.stdin.read()))
    try:
        final = serve(cfg, args.rounds, args.every, mode="daemon")
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if final["state"] == "failed" else 0
