"""The daemon: scheduling, status, graceful and hard stops, the pid file, the event log.

Fast tests drive the library in-process; slow ones start real `python -m cli`
processes on the tiny model and signal them, then check the store is consistent
(every done step has all its outputs, a step not done has none) and that a restart
ends in the same store as an uninterrupted run."""
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import cli
from loop import log
from loop.config import ConfigError, load_config, parse_duration
from loop.daemon.runfiles import (
    AlreadyRunning,
    PidFile,
    children,
    kill_tree,
    pid_alive,
    read_status,
    running_pid,
    wait_gone,
    write_status,
)
from loop.runner import STAGE_NAMES, StopToken, run_rounds
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()
TINY = ROOT / "configs" / "tiny.yaml"


# --- helpers ----------------------------------------------------------------------------
def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _cli(run_dir, *args, timeout=180):
    """`python -m cli ARGS -c tiny.yaml --set run.dir=RUN` in a real process."""
    return subprocess.run([sys.executable, "-m", "cli", *args, "-c", str(TINY), "--set", f"run.dir={run_dir}"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _loop(run_dir, *args):
    """`loop ARGS` in-process (status, stop and refused starts need no process of their own)."""
    return runner.invoke(cli.app, [*args, "-c", str(TINY), "--set", f"run.dir={run_dir}"])


def _poll(fn, timeout: float, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fn()
        if got:
            return got
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {fn}")


def _start_daemon(run_dir, *extra, every="1s") -> int:
    res = _cli(run_dir, "start", "--daemon", "--every", every, *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    return int(re.search(r"started daemon pid (\d+)", res.stdout).group(1))


def _invoke_start(run_dir, rounds, *extra):
    return runner.invoke(cli.app, ["start", "--rounds", str(rounds), "-c", str(TINY),
                                   "--set", f"run.dir={run_dir}", *extra])


def assert_consistent(db) -> dict:
    """Every done step has all its outputs; a step not done has none. Returns {(round, stage)} done."""
    with Store(db, read_only=True) as st:
        done = {(r["round"], r["stage"]) for r in st.query("SELECT round, stage FROM steps WHERE status = 'done'")}
        skipped = {r["round"] for r in st.query("SELECT round FROM steps WHERE stage = 'evaluate' AND status = 'done' "
                                                "AND json_extract_string(info, '$.skipped') IS NOT NULL")}
        for r in sorted({r for r, _ in done if r >= 1} | {x["round"] for x in st.query("SELECT round FROM round_problems")}):
            n = lambda sql, r=r: st.scalar(sql, [r])  # noqa: E731
            problems = n("SELECT count(*) FROM round_problems WHERE round = ?")
            samples = n("SELECT count(*) FROM samples WHERE round = ?")
            judged = n("SELECT count(*) FROM samples WHERE round = ? AND verifier_version IS NOT NULL")
            assert ((r, "propose") in done) == (problems == 4), (r, problems)
            assert samples == (8 if (r, "sample") in done else 0), (r, samples)
            assert judged == (samples if (r, "verify") in done else 0), (r, judged)
            evaluated = (r, "evaluate") in done and r not in skipped
            assert n("SELECT count(*) FROM evaluations WHERE round = ?") == int(evaluated)
            assert ((r, "train") in done) <= ({(r, "train.sft"), (r, "train.grpo")} <= done)
    return done


def _rows(db) -> list[tuple]:
    """What an uninterrupted run must also have: samples (content + verdict) and evaluations."""
    with Store(db, read_only=True) as st:
        samples = st.query("SELECT round, problem_id, idx, completion, verified, reward_total FROM samples "
                           "ORDER BY ALL")
        evals = st.query("SELECT round, accuracy, n FROM evaluations ORDER BY round")
        steps = st.query("SELECT round, stage FROM steps WHERE status = 'done' ORDER BY ALL")
    return [tuple(r.values()) for r in samples + evals + steps]


# --- fast: parsing, config, run files, log ------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("45s", 45), ("30m", 1800), ("2h", 7200), ("1h30m", 5400),
                                           ("1d", 86400), (90, 90), ("90", 90), ("0.5s", 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-1m", "5x", "m", "30 m", "1h-5m", True, "inf", "nan"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_daemon_and_evaluate_config():
    cfg = load_config(TINY, ["daemon.every=2h", "evaluate.every=3"])
    assert (cfg.daemon.every, cfg.evaluate.every, cfg.daemon.log_backups) == ("2h", 3, 3)
    with pytest.raises(ConfigError, match="daemon.every: .*invalid duration"):
        load_config(TINY, ["daemon.every=soon"])


def test_pid_file_one_holder_and_stale_takeover(tmp_path):
    first = PidFile(tmp_path).acquire()
    assert running_pid(tmp_path) == os.getpid()
    with pytest.raises(AlreadyRunning, match=f"already running here \\(pid {os.getpid()}\\)"):
        PidFile(tmp_path).acquire()  # a second open file description conflicts, even in one process
    first.release()
    assert running_pid(tmp_path) is None and not (tmp_path / "loop.pid").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "loop.pid").write_text(dead.stdout)  # left by a process that died
    assert running_pid(tmp_path) is None
    again = PidFile(tmp_path).acquire()
    assert again.stale_pid == int(dead.stdout) and running_pid(tmp_path) == os.getpid()
    again.release()


def test_status_file_is_replaced_atomically(tmp_path):
    assert read_status(tmp_path) == {}
    write_status(tmp_path, {"state": "running", "round": 1})
    write_status(tmp_path, {"state": "idle"})
    assert read_status(tmp_path) == {"state": "idle"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no tmp file left


def test_event_log_json_lines_and_rotation(tmp_path):
    close = log.configure(tmp_path, max_bytes=2000, backups=2)
    try:
        assert log.configure(tmp_path)() is None  # the same file is attached once
        for i in range(60):
            log.event("stage_end", round=i, stage="sample", seconds=0.5, counts={"samples": 8})
    finally:
        close()
    log.event("after_close", round=99)  # not written anywhere
    lines = log.read(tmp_path)
    assert lines and all(set(x) >= {"ts", "level", "event", "pid", "round", "stage", "counts"} for x in lines)
    assert lines[-1]["round"] == 59 and lines[-1]["counts"] == {"samples": 8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.log", "loop.log.1", "loop.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())


def test_kill_tree_kills_a_child_in_its_own_session():
    code = ("import subprocess, sys, time; subprocess.Popen(['sleep', '60'], start_new_session=True); "
            "print('ok', flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ok"
    (kid,) = children(parent.pid)
    kill_tree(parent.pid)
    parent.wait(5)
    assert wait_gone(kid, 5) and not pid_alive(parent.pid)


# --- in-process: the stop token, cadence, one round per job ---------------------------------
def test_stop_token_stops_between_stages_and_restart_resumes(tiny_cfg):
    token, seen = StopToken(), []

    def on_event(ev):
        seen.append((ev["event"], ev.get("round"), ev.get("stage")))
        if ev["event"] == "stage_end" and (ev["round"], ev["stage"]) == (1, "sample"):
            token.stop("test")
    run_rounds(tiny_cfg, 1, token, on_event=on_event)
    assert seen[-1] == ("stopped", 1, "verify")  # the sample stage finished; verify never started
    assert ("stage_start", 1, "verify") not in seen
    done = assert_consistent(tiny_cfg.store_path)
    assert (1, "sample") in done and (1, "verify") not in done
    run_rounds(tiny_cfg, 1)
    assert len(assert_consistent(tiny_cfg.store_path)) == 1 + len(STAGE_NAMES) + 2


def test_each_job_adds_one_round_and_evaluate_every(tmp_path):
    cfg = load_config(TINY, [f"run.dir={tmp_path / 'run'}", "evaluate.every=2"])
    events = []
    for _ in range(2):
        run_rounds(cfg, None, max_new=1, on_event=events.append)
    ends = [e for e in events if e["event"] == "round_end"]
    assert [e["round"] for e in ends] == [1, 2]
    assert ends[0]["numbers"]["evaluate_skipped"] == "evaluate.every=2"
    assert ends[1]["numbers"]["heldout_accuracy"] is not None and ends[1]["numbers"]["samples"] == 8
    with Store(cfg.store_path, read_only=True) as st:
        assert [r["round"] for r in st.query("SELECT round FROM evaluations ORDER BY round")] == [0, 2]
        assert json.loads(st.scalar("SELECT info FROM steps WHERE round = 1 AND stage = 'evaluate'")) == \
            {"skipped": "evaluate.every=2"}
    assert_consistent(cfg.store_path)


def test_foreground_start_log_status_stop_and_refusal(tmp_path):
    run, opts = tmp_path / "run", ["-c", str(TINY), "--set", f"run.dir={tmp_path / 'run'}"]
    res = runner.invoke(cli.app, ["stop", *opts])
    assert res.exit_code == 0 and "no loop running" in res.output
    assert json.loads(runner.invoke(cli.app, ["status", "--json", *opts]).output)["running"] is False
    res = _invoke_start(run, 1)
    assert res.exit_code == 0, res.output
    events = [e["event"] for e in log.read(run)]
    assert events[0] == "start" and events[-1] == "exit" and events.count("round_end") == 1
    st = read_status(run)
    assert (st["state"], st["mode"], st["finished_rounds"], st["last_round"]["samples"]) == ("finished", "foreground", 1, 8)
    st = json.loads(runner.invoke(cli.app, ["status", "--json", *opts]).output)
    assert (st["running"], st["last_state"], st["finished_rounds"]) == (False, "finished", 1)
    assert st["last_round"]["samples"] == 8 and st["last_round"]["heldout_accuracy"] == 0.0  # read from the store
    held = PidFile(run).acquire()
    try:
        res = _invoke_start(run, 2)
        assert res.exit_code == 2 and f"already running here (pid {os.getpid()})" in res.output
        res = runner.invoke(cli.app, ["status", *opts])
        assert f"running  pid {os.getpid()}" in res.output
    finally:
        held.release()


def test_scheduled_jobs_retry_then_give_up_after_max_failures(tmp_path):
    from loop.daemon import serve
    cfg = load_config(TINY, [f"run.dir={tmp_path / 'run'}", "model.name=/no/such/model", "daemon.max_failures=2"])
    final = serve(cfg, None, every="0.2s")
    assert final["state"] == "failed" and "no such folder" in final["last_error"]
    events = log.read(tmp_path / "run")
    assert [e["failures"] for e in events if e["event"] == "job_error"] == [1, 2]
    assert "scheduled" in [e["event"] for e in events]  # the first failure was followed by another run
    assert read_status(tmp_path / "run")["state"] == "failed" and running_pid(tmp_path / "run") is None


@pytest.mark.parametrize("cmd", [["status"], ["stop"]])
def test_new_commands_have_help(cmd):
    res = runner.invoke(cli.app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


# --- slow: real processes ----------------------------------------------------------------------
@pytest.mark.slow
def test_daemon_start_status_refuse_stop_then_resume(tmp_path):
    run = tmp_path / "run"
    pid = _start_daemon(run, "--rounds", "3", every="1h")  # one round at once, the next in an hour
    try:
        assert (run / "loop.pid").read_text().strip() == str(pid)
        st = _poll(lambda: (s := read_status(run)).get("stage") and s, 120, every=0.01)
        assert (st["pid"], st["state"], st["round"]) == (pid, "running", 0)  # round 0: the baseline
        _poll(lambda: read_status(run).get("state") == "idle", 120)
        st = json.loads(_loop(run, "status", "--json").output)
        assert st["state"] == "idle" and st["round"] is None
        assert st["running"] and st["pid"] == pid and st["mode"] == "daemon" and st["finished_rounds"] == 1
        assert st["last_round"]["round"] == 1 and st["last_round"]["samples"] == 8
        wait = dt.datetime.fromisoformat(st["next_run_at"]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(minutes=55) < wait <= dt.timedelta(hours=1)
        assert f"running  pid {pid} (daemon" in _loop(run, "status").output
        res = _cli(run, "start", "--daemon", "--every", "1s")  # a second loop here is refused, naming the pid
        assert res.returncode == 2 and f"already running here (pid {pid})" in res.stderr, res.stderr
        res = _loop(run, "start", "--rounds", "1")
        assert res.exit_code == 2 and f"already running here (pid {pid})" in res.output, res.output
        res = _loop(run, "stop", "--timeout", "120")
        assert res.exit_code == 0 and f"stopped pid {pid}" in res.output, res.output
        assert not pid_alive(pid) and not (run / "loop.pid").exists()
    finally:
        kill_tree(pid)
    st = json.loads(_loop(run, "status", "--json").output)
    assert (st["running"], st["last_state"], st["finished_rounds"]) == (False, "stopped", 1)
    assert_consistent(run / "loop.duckdb")
    events = [e["event"] for e in log.read(run)]
    assert "stop_requested" in events and events[-1] == "exit"
    pid2 = _start_daemon(run, "--rounds", "3")  # resumes, a round a second, until the run has 3
    assert wait_gone(pid2, 120)
    st = json.loads(_loop(run, "status", "--json").output)
    assert (st["last_state"], st["finished_rounds"], st["last_round"]["round"]) == ("finished", 3, 3)
    done = assert_consistent(run / "loop.duckdb")
    assert len(done) == 1 + 3 * (len(STAGE_NAMES) + 2)


@pytest.mark.slow
def test_sigterm_during_sampling_loses_nothing(tmp_path):
    run = tmp_path / "run"
    pid = _start_daemon(run, "--rounds", "1")
    try:
        st = _poll(lambda: (s := read_status(run)).get("stage") == "sample" and s, 120, every=0.01)
        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid, 60)
    finally:
        kill_tree(pid)
    r = st["round"]
    assert read_status(run)["state"] == "stopped"
    done = assert_consistent(run / "loop.duckdb")
    # the stop ends sampling within a batch (loop.cancel): nothing of that stage is stored, nothing after it
    assert (r, "sample") not in done and (r, "verify") not in done
    stopped = [e for e in log.read(run) if e["event"] == "stopped"]
    assert [(e["round"], e["stage"], e.get("during")) for e in stopped] == [(r, "sample", True)]
    assert _invoke_start(run, 1).exit_code == 0  # the restart completes the run
    assert_consistent(run / "loop.duckdb")
    assert _invoke_start(tmp_path / "straight", 1).exit_code == 0
    assert _rows(run / "loop.duckdb") == _rows(tmp_path / "straight" / "loop.duckdb")


FAKE_TRAIN = """
import subprocess, sys
import loop.runner
from loop import daemon
from loop.config import load_config

def run_rounds(cfg, rounds, stop=None, *, max_new=None, on_event=None, tracker=None):  # a train stage's child
    on_event({"event": "stage_start", "round": 1, "stage": "train"})
    subprocess.run(["sleep", "120"], start_new_session=True)  # like loop.trainers.launch.run_child

loop.runner.run_rounds = run_rounds
daemon.serve(load_config(sys.argv[1], [f"run.dir={sys.argv[2]}"]), 1)
"""


def _sleepers(pid: int) -> list[int]:
    return [c for c in children(pid) if _cmdline(c).startswith(b"sleep")]


def test_second_ctrl_c_stops_at_once_and_kills_the_child(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_TRAIN, str(TINY), str(run)], cwd=ROOT, env=_env(),
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # a terminal's job
    try:
        child = _poll(lambda: read_status(run).get("stage") == "train" and _sleepers(proc.pid), 60)[0]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group...
        _poll(lambda: read_status(run).get("state") == "stopping", 10)
        assert proc.poll() is None and pid_alive(child)  # ...but not the child in its own session
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 130
        assert wait_gone(child, 10) and running_pid(run) is None
    finally:
        kill_tree(proc.pid)
    err = proc.stderr.read()
    assert "Ctrl-C again: at once" in err and "second interrupt, stopping at once" in err


@pytest.mark.slow
def test_ctrl_c_ends_the_training_child_and_stop_now_kills_it(tmp_path):
    """Ctrl-C reaches only `loop start` (the child has its own session), whose stop request ends the
    training child within seconds: exit 0, the stage rerun by the next start. `loop stop --now`
    kills both at once. The third start completes the round."""
    from loop.trainers.launch import GRACE_S
    run = tmp_path / "run"
    grpo = ["--set", "train.grpo.every=1", "--set", "train.grpo.band=[-1,2]"]  # GRPO on every problem
    cmd = [sys.executable, "-m", "cli", "start", "--rounds", "1", "-c", str(TINY), "--set", f"run.dir={run}", *grpo]

    def start_until_training() -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its own group, like a terminal's job
        _poll(lambda: read_status(run).get("stage") == "train", 120)
        return proc, _poll(lambda: [c for c in children(proc.pid) if _is_trainer(_cmdline(c))], 60)[0]

    proc, trainer = start_until_training()
    try:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        assert wait_gone(trainer, GRACE_S + 5)  # ended by the stop request, not left to train
        assert proc.wait(30) == 0 and read_status(run).get("state") == "stopped"
    finally:
        kill_tree(proc.pid)
    assert (1, "train") not in assert_consistent(run / "loop.duckdb")

    proc, trainer = start_until_training()
    try:
        res = _loop(run, "stop", "--now")
        assert res.exit_code == 0 and f"stopped pid {proc.pid}" in res.output and "state killed" in res.output
        assert proc.wait(10) == -signal.SIGKILL and wait_gone(trainer, 10)
    finally:
        kill_tree(proc.pid)
    done = assert_consistent(run / "loop.duckdb")
    assert (1, "train") not in done and running_pid(run) is None
    assert _invoke_start(run, 1, *grpo).exit_code == 0  # a restart resumes at the train stage
    done = assert_consistent(run / "loop.duckdb")
    assert {(1, "train.grpo"), (1, "evaluate")} <= done


def _is_trainer(cmdline: bytes) -> bool:
    """A training process: a fresh child, or the warm worker (train.worker auto is warm on CPU)."""
    return b"loop.trainers.child" in cmdline or b"loop.trainers.worker" in cmdline


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
