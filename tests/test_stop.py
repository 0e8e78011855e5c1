"""A stop request ends the running stage within one batch (issue 21), leaves nothing of
it in the store, and the next start reruns it to the same store as a straight run."""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from loop import cancel
from loop.config import load_config
from loop.runner import StopToken, run_rounds
from loop.samplers.hf import HFSampler
from loop.trainers import launch
from store.db import Store
from tests.conftest import ROOT

SMALL = ["sample.group_size=8", "sample.batch_size=1",
         "propose.sources=[{kind: arithmetic, count: 8, levels: [1]}]"]  # 64 one-sequence batches


def _cfg(run_dir):
    return load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run_dir}", *SMALL])


def _rows(db) -> list:
    """What an uninterrupted run must also have (ids hash the run id, so they differ)."""
    with Store(db, read_only=True) as st:
        return st.query("SELECT round, problem_id, idx, completion, verified, reward_total FROM samples ORDER BY ALL") \
            + st.query("SELECT round, stage FROM steps WHERE status = 'done' ORDER BY ALL")


@pytest.mark.parametrize("stage", ["sample", "verify"])
def test_stop_mid_stage_ends_it_and_the_restart_completes(tmp_path, monkeypatch, stage):
    batches: list[bool] = []  # per generate batch: was a stop already requested?
    real = HFSampler._batch

    def counting(self, *args, **kwargs):
        batches.append(cancel.requested())
        return real(self, *args, **kwargs)
    monkeypatch.setattr(HFSampler, "_batch", counting)
    token, events = StopToken(), []

    def on_event(ev):
        events.append(ev)
        if ev["event"] == "stage_start" and ev["stage"] == stage and ev["round"] == 1:
            token.stop("test")  # as SIGTERM does, from the daemon's main thread
    run_rounds(_cfg(tmp_path / "run"), 1, token, on_event=on_event)

    stopped = [(e["round"], e["stage"], e.get("during")) for e in events if e["event"] == "stopped"]
    assert stopped == [(1, stage, True)]                       # ended inside the stage...
    assert not any(e["event"] == "stage_end" and e["stage"] == stage and e["round"] == 1 for e in events)
    assert sum(batches) <= 1                                  # ...within the batch in flight, not 64
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM steps WHERE round = 1 AND stage = ? AND status = 'done'",
                         [stage]) == 0                         # nothing of it committed
    run_rounds(_cfg(tmp_path / "run"), 1, StopToken())        # the restart reruns it
    run_rounds(_cfg(tmp_path / "straight"), 1, StopToken())
    assert _rows(tmp_path / "run" / "loop.duckdb") == _rows(tmp_path / "straight" / "loop.duckdb")


def test_ticking_checks_before_reporting():
    seen: list[int] = []
    tick = cancel.ticking(seen.append)
    cancel.clear()
    tick(2)
    cancel.request("test")
    try:
        with pytest.raises(cancel.Cancelled):
            tick(3)
    finally:
        cancel.clear()
    assert seen == [2]


def _group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):  # fields: state, ppid, pgrp, ...
            alive.append(int(stat.parent.name))
    return alive


# (the child's shell script, a stop request after 0.3 s?, what wait_cancellable must do)
CHILD_CASES = [
    ("exit 3", False, 3),                                  # no stop: the child's exit code
    ("sleep 60 & wait", True, "Cancelled"),                # a worker in its group goes too (SIGTERM)
    ("trap '' TERM; sleep 60 & wait", True, "Cancelled"),  # SIGTERM ignored by all: SIGKILL after the grace
]


@pytest.mark.parametrize("script,stop,expected", CHILD_CASES)
def test_stop_ends_the_training_childs_process_group(script, stop, expected):
    """A stop request while the train stage waits for its child (start_new_session, as run_child
    starts it) ends the child's whole group within the grace and raises Cancelled."""
    cancel.clear()
    proc = subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True)
    timer = threading.Timer(0.3, cancel.request, args=("test",))
    if stop:
        timer.start()
    try:
        if expected == "Cancelled":
            with pytest.raises(cancel.Cancelled):
                launch.wait_cancellable(proc, grace_s=0.5)
        else:
            assert launch.wait_cancellable(proc, grace_s=0.5) == expected
    finally:
        timer.cancel()
        cancel.clear()
    assert proc.returncode is not None and _group_alive(proc.pid) == []
