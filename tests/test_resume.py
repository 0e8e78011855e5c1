"""Step bookkeeping at the crash windows the kill test only hits by chance:
a stage killed after 'running', a round killed after its last stage committed."""
from pathlib import Path

import pytest

from loop.context import RunContext
from loop.runner import STAGE_NAMES, run_rounds
from store.db import Store


@pytest.fixture
def ctx(tiny_cfg):
    st = Store(tiny_cfg.store_path)
    c = RunContext(cfg=tiny_cfg, store=st, run_id="r", base_dir=Path("."), base_version="b")
    yield c
    st.close()


def _step(ctx, stage="sample"):
    return ctx.store.query("SELECT status, attempts, started_at IS NOT NULL AS started, finished_at IS NULL "
                           "AS open FROM steps WHERE run_id = 'r' AND round = 1 AND stage = ?", [stage])[0]


def test_running_then_done_then_restart(ctx):
    ctx.mark_running(1, "sample")
    assert _step(ctx) == {"status": "running", "attempts": 1, "started": True, "open": True}
    ctx.mark_running(1, "sample")  # killed, restarted: the same step starts again
    assert _step(ctx) == {"status": "running", "attempts": 2, "started": True, "open": True}
    ctx.commit(1, "sample", {"samples": 8})
    assert _step(ctx) == {"status": "done", "attempts": 2, "started": True, "open": False}
    assert ctx.is_done(1, "sample")
    ctx.mark_running(1, "sample")  # a done step is never reopened
    assert _step(ctx)["status"] == "done"


def test_round_whose_stages_all_committed_is_closed_on_restart(tiny_cfg):
    """Killed after the last stage's commit, before the round was marked done."""
    from loop.runner import open_run
    ctx = open_run(tiny_cfg)
    with ctx.store.transaction():
        ctx.store.insert_rows("rounds", [{"run_id": ctx.run_id, "round": 1, "status": "running"}])
    for r, stage in [(0, "evaluate")] + [(1, s) for s in STAGE_NAMES]:
        ctx.commit(r, stage, {})
    ctx.close()
    run_rounds(tiny_cfg, 1)  # nothing left to run: must not sample, only close the round
    with Store(tiny_cfg.store_path, read_only=True) as st:
        assert st.query("SELECT status, finished_at IS NOT NULL AS f FROM rounds") == [{"status": "done", "f": True}]
        assert st.scalar("SELECT count(*) FROM samples") == 0
