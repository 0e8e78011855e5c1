"""End to end on the tiny model: `loop start` runs real rounds into a real DuckDB file,
resumes without duplicating, and `loop inspect` reports them."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import cli
from store.db import Store

runner = CliRunner()


def _start(cfg_path, run_dir, rounds, *extra):
    return runner.invoke(cli.app, ["start", "--rounds", str(rounds), "-c", str(cfg_path),
                                   "--set", f"run.dir={run_dir}", *extra])


def test_tiny_rounds_then_resume_without_duplicates(tmp_path):
    from tests.conftest import ROOT
    cfg = ROOT / "configs" / "tiny.yaml"
    res = _start(cfg, tmp_path / "run", 1)
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        n1 = st.scalar("SELECT count(*) FROM samples")
        assert n1 == 4 * 2  # 4 problems x group of 2
        assert st.scalar("SELECT count(*) FROM samples WHERE verifier_version IS NULL") == 0
        assert st.scalar("SELECT count(*) FROM evaluations") == 2  # round 0 baseline + round 1
    res = _start(cfg, tmp_path / "run", 2)  # extend to 2 rounds
    assert res.exit_code == 0, res.output
    res = _start(cfg, tmp_path / "run", 2)  # nothing left to do: no duplicates
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM samples") == 16
        assert st.scalar("SELECT count(DISTINCT sample_id) FROM samples") == 16
        assert st.scalar("SELECT count(*) FROM runs") == 1
        steps = st.query("SELECT round, stage FROM steps WHERE status = 'done' ORDER BY round, stage")
    assert len(steps) == 1 + 2 * (5 + 2)  # baseline eval + per round: 5 stages + train.sft, train.grpo
    out = runner.invoke(cli.app, ["inspect", "--json", "-c", str(cfg), "--set", f"run.dir={tmp_path / 'run'}"])
    data = json.loads(out.output)
    assert [r["round"] for r in data["rounds"]] == [0, 1, 2]
    assert data["rounds"][0]["heldout_accuracy"] is not None  # measured before round 1
    assert data["rounds"][1]["samples"] == 8


def test_resolved_config_saved_with_run(tmp_path):
    from loop.config import load_config
    from tests.conftest import ROOT
    res = _start(ROOT / "configs" / "tiny.yaml", tmp_path / "run", 0, "--set", "sample.group_size=3")
    assert res.exit_code == 0, res.output
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.sample.group_size == 3
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        assert json.loads(st.scalar("SELECT config FROM runs"))["sample"]["group_size"] == 3


@pytest.mark.parametrize("args, needle", [
    (["--set", "sample.nope=1"], "sample.nope: unknown key"),                       # unknown key
    (["--set", "propose.sources=[{kind: jsonl, path: /no/such.jsonl}]"], "/no/such.jsonl: seed file not found"),
    (["--set", "model.name=/no/such/model"], "no such folder"),                    # model not found
])
def test_bad_input_exits_nonzero_and_stores_nothing(tmp_path, args, needle):
    from tests.conftest import ROOT
    res = _start(ROOT / "configs" / "tiny.yaml", tmp_path / "run", 1, *args)
    assert res.exit_code == 2
    assert needle in res.output
    db = tmp_path / "run" / "loop.duckdb"
    if db.exists():
        with Store(db, read_only=True) as st:
            assert st.scalar("SELECT count(*) FROM samples") == 0
            assert st.scalar("SELECT count(*) FROM problems") == 0


def test_malformed_seed_line_is_named(tmp_path):
    from tests.conftest import ROOT
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"question": "What is 2+2?", "answer": "4 #### 4"}\n{"question": oops}\n')
    res = _start(ROOT / "configs" / "tiny.yaml", tmp_path / "run", 1,
                 "--set", f"propose.sources=[{{kind: jsonl, path: {seed}}}]")
    assert res.exit_code == 2 and f"{seed}:2: malformed JSON" in res.output
    assert not (tmp_path / "run" / "loop.duckdb").exists()  # checked when the run opens: nothing written


def _commands(group=None, path=()):
    """Every command path of the CLI, groups included (walks typer's click tree)."""
    import typer.main
    group = group or typer.main.get_command(cli.app)
    yield list(path)
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("cmd", list(_commands()), ids=lambda c: " ".join(c) or "loop")
def test_every_command_has_help(cmd):
    import typer.main
    res = runner.invoke(cli.app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output
    node = typer.main.get_command(cli.app)
    for name in cmd:
        node = node.commands[name]
    if not getattr(node, "commands", None) or node.name == "inspect":  # a leaf (inspect runs alone too)
        assert "Example" in res.output


def test_help_is_instant_and_imports_nothing_heavy():
    code = "import sys, cli; cli.app; print(','.join(m for m in ('torch','transformers','duckdb','trl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
