"""Resume cannot mix two configs: a run pins the config keys that change its results
(loop/run_config.py); `loop start` on it with a changed one is refused before anything is
written, naming the keys; `--new-run` starts a fresh run in the same store; `--rounds N` on a
run that has N rounds says so."""
import pytest
from typer.testing import CliRunner

import cli
from loop.config import load_config
from loop.run_config import changed_keys, result_config
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()
TINY = ROOT / "configs" / "tiny.yaml"
TABLES = ("runs", "rounds", "steps", "problems", "round_problems", "samples", "models", "evaluations")


def _start(run, *args):
    return runner.invoke(cli.app, ["start", "-c", str(TINY), "--set", f"run.dir={run}", *args])


def _snapshot(run):
    with Store(run / "loop.duckdb", read_only=True) as st:
        counts = {t: st.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}
        steps = st.query("SELECT round, stage, status, attempts FROM steps ORDER BY ALL")
    return counts, steps, (run / "config.yaml").read_text()


@pytest.mark.parametrize("sets, changed", [
    (["evaluate.n_problems=8"], ["evaluate.n_problems"]),                  # the held-out set
    (["propose.sources.0.count=2"], ["propose.sources.0.count"]),          # a source, by list index
    (["sample.temperature=0.5", "run.seed=3"], ["run.seed", "sample.temperature"]),  # two at once
    (["verify.rewards.4.weight=3"], ["verify.rewards.4.weight"]),          # a reward weight
    (["model.name=tiny:other"], ["model.name"]),                           # the base model
    (["train.sft.max_steps=9", "run.threads=2", "daemon.every=5m"], []),   # not results: no change
    (["model.cache_dir=/x", "sample.openai.timeout_s=5"], []),             # where/how, not what
])
def test_changed_keys(tmp_path, sets, changed):
    a = load_config(TINY)
    b = load_config(TINY, sets)
    assert [k for k, _, _ in changed_keys(result_config(a), result_config(b))] == changed


def test_added_source_is_a_change():
    a = load_config(TINY)
    b = load_config(TINY, ["propose.sources=[{kind: arithmetic, count: 4, levels: [1]}, {kind: arithmetic}]"])
    assert ("propose.sources", "1 item(s)", "2 item(s)") in changed_keys(result_config(a), result_config(b))


def test_changed_config_refused_then_new_run_then_rounds_done(tmp_path):
    run = tmp_path / "run"
    assert _start(run, "--rounds", "1").exit_code == 0
    before = _snapshot(run)
    res = _start(run, "--rounds", "2", "--set", "evaluate.n_problems=8")
    assert res.exit_code == 2
    assert "evaluate.n_problems: 4 -> 8" in res.output and "--new-run" in res.output
    assert _snapshot(run) == before  # nothing written, config.yaml kept
    res = _start(run, "--rounds", "1", "--set", "train.sft.max_steps=3")  # not a result key: resumes
    assert res.exit_code == 0 and "already has 1 finished rounds (--rounds 1)" in res.output
    assert _snapshot(run)[0] == before[0]
    res = _start(run, "--rounds", "1", "--new-run", "--set", "evaluate.n_problems=8")
    assert res.exit_code == 0, res.output
    with Store(run / "loop.duckdb", read_only=True) as st:
        runs = st.query("SELECT run_id, config_hash FROM runs ORDER BY created_at")
        assert len(runs) == 2 and runs[0]["config_hash"] != runs[1]["config_hash"]
        assert st.scalar("SELECT count(*) FROM evaluations WHERE run_id = ?", [runs[1]["run_id"]]) == 2
    res = _start(run, "--rounds", "1")  # the latest run is now the n_problems=8 one
    assert res.exit_code == 2 and "evaluate.n_problems: 8 -> 4" in res.output


def test_run_from_before_migration_006_is_checked_against_its_config(tmp_path):
    """A store at schema 005 (no pinned result config): `loop start` migrates it, compares against
    the run's saved `config`, and pins the result config from then on."""
    run = tmp_path / "run"
    assert _start(run, "--rounds", "0").exit_code == 0
    with Store(run / "loop.duckdb") as st, st.transaction():
        st.con.execute("ALTER TABLE runs DROP COLUMN config_hash")
        st.con.execute("ALTER TABLE runs DROP COLUMN result_config")
        st.con.execute("ALTER TABLE evaluations DROP COLUMN metrics")  # 007
        st.con.execute("ALTER TABLE proposals DROP COLUMN agreement")  # 008
        st.con.execute("ALTER TABLE proposals DROP COLUMN votes")
        st.con.execute("ALTER TABLE proposals DROP COLUMN shots")  # 009
        st.con.execute("DELETE FROM schema_migrations WHERE version >= 6")
    res = _start(run, "--rounds", "0", "--set", "evaluate.n_problems=8")
    assert res.exit_code == 2 and "evaluate.n_problems: 4 -> 8" in res.output
    assert _start(run, "--rounds", "0").exit_code == 0
    with Store(run / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM runs WHERE config_hash IS NOT NULL") == 1
