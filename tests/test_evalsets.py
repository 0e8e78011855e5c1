"""`evaluate.sets`: named held-out sets (procedural, GSM8K-format files), a row per set and
round, the gate on the named set, and training never drawing an evaluation problem."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from loop.config import ConfigError, load_config
from loop.problems.evalsets import eval_sets
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()


@pytest.mark.parametrize("sets, gate, needle", [
    ("[{name: a, kind: arithmetic}, {name: a, kind: arithmetic}]", None, "names must be unique"),  # duplicate
    ("[{name: a, kind: arithmetic}]", "b", "gate_set 'b' is not a set"),                         # unknown gate
    ("[{name: a, kind: self}]", None, "not self"),                                               # self is no set
    ("[{name: a, kind: arithmetic}, {name: heldout, kind: arithmetic}]", None, "'heldout' is the gated"),
    ("[{name: g, kind: file}]", None, "needs 'path'"),                                           # file w/o path
])
def test_bad_sets_refused_at_load(sets, gate, needle):
    sets_arg = [f"evaluate.sets={sets}"] + ([f"evaluate.gate_set={gate}"] if gate else [])
    with pytest.raises(ConfigError, match=needle):
        load_config(None, sets_arg)


def _gsm(tmp_path, n=12):
    rows = [{"question": f"Tom has {i} apples and gets 2 more. How many?", "answer": f"{i}+2={i + 2}\n#### {i + 2}"}
            for i in range(n)]
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path / "g.jsonl"


def test_sets_order_and_split_names(tmp_path):
    f = _gsm(tmp_path)
    cfg = load_config(None, [f"evaluate.sets=[{{name: arith, kind: arithmetic, n: 5, levels: [1]}}, "
                             f"{{name: gsm, kind: jsonl, path: {f}, n: 4}}]", "evaluate.gate_set=gsm"])
    got = [(name, split, len(p)) for name, split, p in eval_sets(cfg.evaluate)]
    assert got == [("gsm", "heldout", 4), ("arith", "arith", 5)]  # the gated set first, stored as heldout
    assert [(n, s) for n, s, _ in eval_sets(load_config().evaluate)] == [("heldout", "heldout")]  # default


def test_loop_rounds_evaluate_every_set_and_never_train_on_them(tmp_path):
    f = _gsm(tmp_path)
    sets = f"[{{name: arith, kind: arithmetic, n: 3, levels: [1]}}, {{name: gsm, kind: jsonl, path: {f}, n: 4}}]"
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={tmp_path / 'run'}", "--set", f"evaluate.sets={sets}",
                                  "--set", f"propose.sources=[{{kind: jsonl, path: {f}, count: 20}}]"])
    assert res.exit_code == 0, res.output
    db = tmp_path / "run" / "loop.duckdb"
    with Store(db, read_only=True) as st:
        ev = st.query("SELECT round, split, n FROM evaluations ORDER BY round, split")
        info = json.loads(st.scalar("SELECT info FROM steps WHERE round = 1 AND stage = 'evaluate'"))
        proposed = {r["question"] for r in st.query("SELECT question FROM problems")}
        held = {r["question"] for d in st.query("SELECT details FROM evaluations WHERE split = 'heldout'")
                for r in json.loads(d["details"])}
        gsm_held = {r["question"] for d in st.query("SELECT details FROM evaluations WHERE split = 'gsm'")
                    for r in json.loads(d["details"])}
    assert [(r["round"], r["split"], r["n"]) for r in ev] == [(0, "gsm", 4), (0, "heldout", 3),  # arith gated
                                                              (1, "gsm", 4), (1, "heldout", 3)]
    assert info["gate_set"] == "arith" and set(info["sets"]) == {"arith", "gsm"}
    assert len(gsm_held) == 4 and len(proposed) == 12 - 4 and not proposed & (gsm_held | held)
    shown = runner.invoke(cli.app, ["inspect", "--store", str(db), "sets", "--json"])
    assert shown.exit_code == 0 and len(json.loads(shown.output)) == 4


def test_sft_mix_adds_weighted_instruction_rows(tmp_path):
    """train.sft.mix: weight x verified chains instruction rows, in the chains' row schema."""
    from loop.config import MixSettings
    from loop.trainers.rows import mix_examples
    rows = [{"instruction": f"i{k}", "input": "", "output": f"o{k}"} for k in range(10)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    mix = [MixSettings(kind="file", path=str(tmp_path / "a.json"), format="alpaca", weight=0.5)]
    got = mix_examples(mix, n_chains=6, seed=1)
    assert len(got) == 3 and all(g["problem_id"].startswith("mix:") for g in got)
    assert got[0]["completion"][0]["role"] == "assistant" and got[0]["prompt"][-1]["role"] == "user"
    assert mix_examples(mix, n_chains=0, seed=1) == []             # no chains: nothing mixed
    assert len(mix_examples(mix, n_chains=100, seed=1)) == 10       # at most every row
