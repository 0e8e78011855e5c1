"""`loop inspect` reads the store while a real `loop start` writes it: the writer holds the
DuckDB file only inside its transactions (store.db `hold=False`), readers retry briefly on a
lock conflict, and what they see is always some committed state, so counts never go back."""
import json
import os
import subprocess
import sys

from typer.testing import CliRunner

import cli
from tests.conftest import ROOT

runner = CliRunner()
MONOTONE = ("rounds_done", "last_round", "problems", "samples", "judged", "verified", "trained_models")


def test_inspect_summary_in_a_loop_during_a_tiny_run(tmp_path):
    run = tmp_path / "run"
    store = run / "loop.duckdb"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "cli", "start", "--rounds", "2", "-c",
                          str(ROOT / "configs" / "tiny.yaml"), "--set", f"run.dir={run}"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[dict] = []
    refusals: list[str] = []
    try:
        while p.poll() is None:
            if not store.exists():
                continue
            res = runner.invoke(cli.app, ["inspect", "--store", str(store), "summary", "--json"])
            if res.exit_code != 0:
                refusals.append(res.output)
            elif (data := json.loads(res.output)).get("run_id"):
                seen.append(data)
    finally:
        out = p.communicate()[0]
    assert p.returncode == 0, out
    assert refusals == []
    mid_round = [s for s in seen if s["unfinished"] and s["writer"]]
    assert mid_round, f"no read landed while a stage ran ({len(seen)} reads)"
    for key in MONOTONE:
        values = [s[key] or 0 for s in seen]
        assert values == sorted(values), (key, values)
    assert seen[-1]["rounds_done"] <= 2 and len({s["samples"] for s in seen}) >= 2  # it saw the run grow
