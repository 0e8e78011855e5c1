"""`loop eval`: the current model on the evaluation sets now (greedy, pass@k/maj@k), and the s1
budget sweep (--budgets/--waits): a row per point, a PNG, bad flags refused naming the flag."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from tests.conftest import ROOT

runner = CliRunner()
TINY = str(ROOT / "configs" / "tiny.yaml")


def _eval(tmp_path, *args):
    return runner.invoke(cli.app, ["eval", "-c", TINY, "--set", f"run.dir={tmp_path / 'run'}",
                                   "--set", "sample.budget.answer_tokens=4", *args], env={"COLUMNS": "200"})


def test_budget_sweep_table_json_and_png(tmp_path):
    png = tmp_path / "sweep.png"
    res = _eval(tmp_path, "--budgets", "4,12", "--waits", "0,1", "--png", str(png), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    pts = data["points"]
    assert [(p["set"], p["waits"], p["budget"]) for p in pts] == [
        ("heldout", 0, 4), ("heldout", 0, 12), ("heldout", 1, 4), ("heldout", 1, 12)]  # waits-major grid
    for p in pts:
        assert p["n"] == 4 and 0 <= p["accuracy"] <= 1 and 0 <= p["budget_hit"] <= 1
        assert p["waits_used"] <= p["waits"]
        # thinking is cut at the budget; then the forced `</reasoning>\n<answer>\n` and 4 answer tokens
        assert p["tokens"] <= p["budget"] + 4 + 12, p
    by = {(p["waits"], p["budget"]): p for p in pts}
    assert by[(0, 12)]["tokens"] > by[(0, 4)]["tokens"]  # a larger budget spends more tokens
    import matplotlib.image
    img = matplotlib.image.imread(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and img.shape[:2] == (400, 650)
    table = _eval(tmp_path, "--budgets", "4", "--waits", "1")
    assert table.exit_code == 0 and "budget sweep" in table.output and "waits used" in table.output


def test_plain_eval_shows_k_metrics_and_stores_nothing(tmp_path):
    sets = "[{name: a, kind: arithmetic, n: 3, levels: [1], k: [2], samples: 2}, {name: b, kind: arithmetic, n: 2}]"
    res = _eval(tmp_path, "--set", f"evaluate.sets={sets}", "--json")
    assert res.exit_code == 0, res.output
    got = {s["set"]: s for s in json.loads(res.stdout)["sets"]}
    assert set(got) == {"a", "b"} and got["a"]["n"] == 3 and got["b"]["n"] == 2
    assert set(got["a"]["metrics"]) >= {"pass@2", "maj@2"} and got["b"]["metrics"] is None
    from store.db import Store
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM evaluations") == 0  # an evaluation on demand is no round
    shown = _eval(tmp_path, "--set", f"evaluate.sets={sets}", "--only", "a")
    assert shown.exit_code == 0 and "pass@2" in shown.output and "maj@2" in shown.output


@pytest.mark.parametrize("args, needle", [
    (["--budgets", "64,abc"], "--budgets: 'abc' is not an integer"),  # not a number
    (["--budgets", "0"], "--budgets: 0 is below 1"),                  # a zero budget
    (["--waits", "-1"], "--waits: -1 is below 0"),                    # negative waits
    (["--only", "nope"], "no such evaluation set; sets: heldout"),     # unknown set, names those present
    (["--png", "x.png"], "--png draws a budget sweep"),               # a plot of nothing
])
def test_bad_eval_flags_refused(tmp_path, args, needle):
    res = _eval(tmp_path, *args)
    assert res.exit_code == 2 and needle in res.output, res.output
