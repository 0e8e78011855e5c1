"""pass@k (unbiased) and maj@k (majority over verifier-normalized answers) of evaluation sets:
the estimator, the vote, the config bounds, and rows stored per set and shown by `loop inspect sets`."""
from __future__ import annotations

import json
from math import isclose, prod

import pytest
from typer.testing import CliRunner

import cli
from loop.config import ConfigError, load_config
from loop.metrics import maj_at_k, pass_at_k, set_metrics, vote_key
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()


@pytest.mark.parametrize("n, c, k, expected", [
    (4, 1, 2, 0.5),          # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 0, 1, 0.0),          # nothing correct
    (5, 5, 3, 1.0),          # everything correct
    (10, 3, 1, 0.3),         # pass@1 is c/n
    (10, 3, 8, 1.0),         # fewer wrong samples than k: a correct one is always drawn
    (10, 2, 5, 1 - 56 / 252),  # 1 - C(8,5)/C(10,5)
    (3, 1, 3, 1.0),          # k = n: any correct
])
def test_pass_at_k_table(n, c, k, expected):
    assert isclose(pass_at_k(n, c, k), expected)


@pytest.mark.parametrize("n", [1, 3, 7, 16])
def test_pass_at_k_matches_the_codex_product_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):  # Chen et al.'s numerically stable form: 1 - prod(1 - k/i), i = n-c+1..n
            ref = 1.0 if n - c < k else 1.0 - prod(1 - k / i for i in range(n - c + 1, n + 1))
            assert isclose(pass_at_k(n, c, k), ref, abs_tol=1e-12), (n, c, k)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


@pytest.mark.parametrize("text, key", [
    ("<answer>\n12\n</answer>", "12"),                  # the answer tag
    ("<answer>\n12.0\n</answer>", "12"),                # 12.0 is the same number
    ("so \\boxed{12}", "12"),                           # boxed
    ("#### 1,200", "1200"),                             # GSM8K line, thousands separator
    ("<answer>\n\\frac{6}{4}\n</answer>", "3/2"),       # a fraction, reduced
    ("<answer>\n$x+1$\n</answer>", "x+1"),              # not a number: canonical text
    ("no digits at all", None),                         # nothing extracted: no vote
])
def test_vote_key_table(text, key):
    assert vote_key(text) == key


@pytest.mark.parametrize("texts, correct, k, expected", [
    (["#### 5", "#### 5", "#### 6"], [True, True, False], 3, True),      # the majority is right
    (["#### 6", "#### 5", "#### 6"], [False, True, False], 3, False),    # the majority is wrong, one is right
    (["#### 6", "#### 5", "#### 5"], [False, True, True], 1, False),     # only the first k vote
    (["#### 5.0", "#### 6", "\\boxed{5}"], [True, False, True], 3, True),  # 5.0 and \boxed{5} are one vote
    (["#### 6", "#### 5"], [False, True], 2, False),                     # a tie: the answer seen first wins
    (["none", "nothing"], [False, False], 2, False),                     # no answers: no vote, not solved
])
def test_maj_at_k_table(texts, correct, k, expected):
    assert maj_at_k(texts, correct, k) is expected


def test_set_metrics_averages_over_problems():
    samples = [["#### 1", "#### 1", "#### 2"], ["#### 3", "#### 4", "#### 4"]]
    correct = [[True, True, False], [True, False, False]]
    m = set_metrics(samples, correct, [1, 3])
    assert isclose(m["pass@1"], (2 / 3 + 1 / 3) / 2) and m["pass@3"] == 1.0
    assert m["maj@1"] == 1.0 and m["maj@3"] == 0.5  # problem 2's majority (4) is wrong


@pytest.mark.parametrize("sets, needle", [
    ("[{name: a, kind: arithmetic, k: [8], samples: 4}]", "within 1..samples=4"),  # k above the samples
    ("[{name: a, kind: arithmetic, k: [0]}]", "within 1..samples=0"),              # k = 0
    ("[{name: a, kind: arithmetic, samples: 4}]", "without k"),                     # samples and no k
])
def test_k_bounds_refused_at_load(sets, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [f"evaluate.sets={sets}"])


def test_samples_default_to_the_largest_k():
    (s,) = load_config(None, ["evaluate.sets=[{name: a, kind: arithmetic, k: [1, 4]}]"]).evaluate.sets
    assert s.n_samples == 4


def _majority_right(detail: dict, k: int) -> bool:
    """The stored votes' majority among the first k (ties: first seen), judged by its stored flag."""
    votes = [v for v in detail["votes"][:k] if v is not None]
    if not votes:
        return False
    top = max(votes.count(v) for v in votes)
    winner = next(v for v in votes if votes.count(v) == top)
    return detail["samples_correct"][detail["votes"].index(winner)]


def _check_stored_metrics(db, ks: list[int], n: int) -> list[dict]:
    """Every stored k-set row: its metrics recomputed from its details' votes and correctness."""
    with Store(db, read_only=True) as st:
        rows = st.query("SELECT round, split, metrics, details FROM evaluations WHERE metrics IS NOT NULL")
    for r in rows:
        m, details = json.loads(r["metrics"]), json.loads(r["details"])
        assert m["samples"] == n and all(len(d["samples_correct"]) == n == len(d["votes"]) for d in details)
        for k in ks:
            want = sum(pass_at_k(n, sum(d["samples_correct"]), k) for d in details) / len(details)
            assert isclose(m[f"pass@{k}"], want)
            assert isclose(m[f"maj@{k}"], sum(_majority_right(d, k) for d in details) / len(details))
        if n in ks:  # a right majority of all n has a right sample
            assert m[f"maj@{n}"] <= m[f"pass@{n}"] + 1e-12
    return rows


def test_tiny_run_stores_and_shows_k_metrics(tmp_path):
    sets = "[{name: arith, kind: arithmetic, n: 3, levels: [1], k: [1, 2], samples: 3}, " \
           "{name: plain, kind: arithmetic, n: 2, levels: [1]}]"
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={tmp_path / 'run'}", "--set", f"evaluate.sets={sets}"])
    assert res.exit_code == 0, res.output
    db = tmp_path / "run" / "loop.duckdb"
    rows = _check_stored_metrics(db, [1, 2], 3)
    assert sorted((r["round"], r["split"]) for r in rows) == [(0, "heldout"), (1, "heldout")]  # not `plain`
    shown = runner.invoke(cli.app, ["inspect", "--store", str(db), "sets", "--json"])
    data = json.loads(shown.output)
    assert {(d["split"], bool(d["metrics"])) for d in data} == {("heldout", True), ("plain", False)}
    table = runner.invoke(cli.app, ["inspect", "--store", str(db), "sets"], env={"COLUMNS": "200"})
    assert "pass@2" in table.output and "maj@2" in table.output


@pytest.mark.slow
def test_real_model_pass_at_k_and_maj_at_k(tmp_path):
    """The embedded model on one-digit sums (a GSM8K-format file; two-digit ones it nearly never
    gets): 6 samples a problem, stored metrics consistent with the stored votes."""
    rows = [{"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"} for a, b in
            [(1, 1), (2, 2), (3, 1), (2, 5), (4, 4), (1, 6), (3, 3), (5, 2)]]
    (tmp_path / "easy.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    sets = f"[{{name: easy, kind: jsonl, path: {tmp_path / 'easy.jsonl'}, k: [1, 6], samples: 6}}]"
    res = runner.invoke(cli.app, ["start", "--rounds", "0", "-c", str(ROOT / "configs" / "default.yaml"),
                                  "--set", f"run.dir={tmp_path / 'run'}", "--set", f"evaluate.sets={sets}",
                                  "--set", "evaluate.max_new_tokens=48", "--set", "sample.backend=hf"])
    assert res.exit_code == 0, res.output
    (row,) = _check_stored_metrics(tmp_path / "run" / "loop.duckdb", [1, 6], 6)
    m = json.loads(row["metrics"])
    assert 0 < m["pass@6"] and m["pass@1"] <= m["pass@6"], m
    votes = [v for d in json.loads(row["details"]) for v in d["votes"]]
    assert sum(v is not None for v in votes) >= len(votes) // 2  # the real model's answers are read as votes
