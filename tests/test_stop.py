"""A stop request ends the running stage within one batch (issue 21), leaves nothing of
it in the store, and the next start reruns it to the same store as a straight run."""
from __future__ import annotations

import pytest

from loop import cancel
from loop.config import load_config
from loop.runner import StopToken, run_rounds
from loop.samplers.hf import HFSampler
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
