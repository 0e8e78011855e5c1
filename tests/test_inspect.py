"""`loop inspect` on a small, fully known store (tests/storefix.py): every subcommand,
JSON and rich output, read-only SQL, the curve, and every export format."""
import hashlib
import importlib.util
import json

import pytest
from typer.testing import CliRunner

import cli
from tests import storefix

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspect") / "s.duckdb"
    storefix.populate(path)
    return path


def _inspect(store, *args, expect=0):
    res = runner.invoke(cli.app, ["inspect", "--store", str(store), *args])
    assert res.exit_code == expect, res.output
    return res.output


def _json(store, *args):
    return json.loads(_inspect(store, *args, "--json"))


def test_summary_totals_and_unfinished_step(store):
    s = _json(store, "summary")
    e = storefix.EXPECT
    assert s["run_id"] == "run-b"  # the latest run
    assert {k: s[k] for k in ("samples", "verified", "judged", "problems", "problems_solved")} == \
        {k: e[k] for k in ("samples", "verified", "judged", "problems", "problems_solved")}
    assert s["verified_frac"] == pytest.approx(9 / 16)
    assert (s["baseline_accuracy"], s["latest_accuracy"], s["rounds_done"], s["trained_models"]) == (0.25, 0.75, 1, 1)
    assert [(u["round"], u["stage"], u["status"], u["attempts"]) for u in s["unfinished"]] == [(2, "verify", "running", 2)]
    assert s["writer"] is None
    assert "round 2 verify (running, attempt 2)" in _inspect(store, "summary")


def test_rounds_is_the_default(store):
    default, explicit = _json(store), _json(store, "rounds")
    assert default == explicit
    assert [r["round"] for r in default["rounds"]] == [0, 1, 2]
    assert [r["samples"] for r in default["rounds"]] == [0, 12, 8]
    assert default["rounds"][1]["train_examples"] == 3


@pytest.mark.parametrize("rng, expected", [
    (None, ["p3", "p2", "p1", "p4"]),     # no filter: hardest first, unjudged last
    ("..0.5", ["p3"]),                     # open low end
    ("0.5..", ["p2", "p1"]),               # open high end
    ("1..1", ["p1"]),                      # a single value
    ("0.8..0.9", []),                      # nothing in range
    ("0..1", ["p3", "p2", "p1"]),          # a filter never includes unjudged problems
])
def test_problems_pass_rate_filter(store, rng, expected):
    rows = _json(store, "problems", *(["--pass-rate", rng] if rng else []))
    assert [r["problem_id"] for r in rows] == expected
    for r in rows:
        assert r["pass_rate"] == storefix.EXPECT["pass_rate"][r["problem_id"]]


@pytest.mark.parametrize("rng", ["abc", "0.6..0.2", "..2", "0.5"])  # not a range, reversed, >1, no '..'
def test_problems_bad_range_is_a_clear_error(store, rng):
    out = _inspect(store, "problems", "--pass-rate", rng, expect=2)
    assert "--pass-rate" in out


@pytest.mark.parametrize("args, n, check", [
    (["--verified", "--round", "1"], 7, lambda r: r["verified"] and r["round"] == 1),  # verified in round 1
    (["--problem", "p3", "--limit", "100"], 8, lambda r: r["problem_id"] == "p3"),     # both rounds of p3
    (["--round", "2", "--limit", "3"], 3, lambda r: r["round"] == 2),                  # limit applies
])
def test_samples_filters(store, args, n, check):
    rows = _json(store, "samples", *args)
    assert len(rows) == n and all(check(r) for r in rows)


def test_show_full_chain_with_lineage(store):
    sid = storefix.sample_id("run-b", 2, "p3", 0)
    r = _json(store, "show", sid[:10])  # a unique prefix is enough
    assert r["sample_id"] == sid and r["question"] == "What is 3 + 3?" and r["verified"] is True
    assert set(r["rewards"]) == set(storefix.REWARDS)
    assert (r["model_version"], r["model_parent"], r["sampling"]["temperature"]) == ("lora1", "base0", 0.8)
    assert [m["model_version"] for m in r["lineage"]] == ["lora1", "base0"]
    assert [g["idx"] for g in r["group"]] == [0, 1, 2, 3]
    text = _inspect(store, "show", sid)
    for needle in ("provenance", "correctness", "model lineage", "GRPO group", "reasoning-answer-v1"):
        assert needle in text


@pytest.mark.parametrize("prefix, needle", [
    ("zzzz", "no sample with id"),   # unknown
    ("", "ambiguous"),               # matches everything
])
def test_show_bad_id(store, prefix, needle):
    assert needle in _inspect(store, "show", prefix, expect=2)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("query, needle", [
    ("INSERT INTO runs (run_id) VALUES ('x')", "refused a INSERT"),
    ("DELETE FROM samples", "refused a DELETE"),
    ("UPDATE samples SET verified = true", "refused a UPDATE"),
    ("CREATE TABLE t (a INT)", "refused a CREATE"),
    ("DROP TABLE samples", "refused a DROP"),
    ("ATTACH '/tmp/other.duckdb' AS o", "refused a ATTACH"),
    ("COPY samples TO '/tmp/leak.csv'", "refused a COPY"),
    ("SELECT 1; DELETE FROM samples", "exactly one statement"),      # a write hidden after a select
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),  # no file access
    ("SELEC 1", "sql:"),                                                # parse error
])
def test_sql_refuses_writes_and_file_access(store, query, needle):
    before = _sha(store)
    assert needle in _inspect(store, "sql", query, expect=2)
    assert _sha(store) == before


def test_sql_select(store):
    data = _json(store, "sql", "SELECT problem_id, count(*) AS n FROM samples WHERE run_id = 'run-b' "
                               "GROUP BY ALL ORDER BY problem_id", "--limit", "3")
    assert data["columns"] == ["problem_id", "n"]
    assert data["rows"] == [["p1", 4], ["p2", 4], ["p3", 8]] and data["truncated"] is True


def test_curve_terminal_and_json(store):
    data = _json(store, "curve")
    assert [(p["round"], p["accuracy"]) for p in data["points"]] == [(0, 0.25), (1, 0.5), (2, 0.75)]
    lines = [ln for ln in _inspect(store, "curve").splitlines() if ln.startswith("round")]
    assert len(lines) == 3 and lines[0].count("█") < lines[1].count("█") < lines[2].count("█")


def test_curve_png(store, tmp_path):
    png = tmp_path / "curve.png"
    if importlib.util.find_spec("matplotlib") is None:  # optional dependency: a clear message instead
        assert "needs matplotlib" in _inspect(store, "curve", "--png", str(png), expect=2)
        assert not png.exists()
    else:
        _inspect(store, "curve", "--png", str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _load_export(fmt, out):
    if fmt == "jsonl":
        return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.read_table(out / "samples.parquet").to_pylist()
    import datasets
    return datasets.load_from_disk(str(out)).to_list()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_verified(store, tmp_path, fmt):
    out = tmp_path / "exp"
    _inspect(store, "export", "--format", fmt, "--verified", "--out", str(out))
    rows = _load_export(fmt, out)
    assert len(rows) == storefix.EXPECT["verified"] and all(r["verified"] for r in rows)
    assert len({r["sample_id"] for r in rows}) == len(rows)
    r = next(r for r in rows if r["model_version"] == "lora1")
    assert r["question"] and r["completion"] and r["rewards"]["correctness"] == 1.0
    assert (r["model_parent"], r["sampling"]["seed"], r["prompt_version"], r["verifier_version"]) == \
        ("base0", 7, "reasoning-answer-v1", "v1")
    assert json.loads((out / "export.json").read_text())["rows"] == len(rows)


def test_export_all_keeps_unjudged_and_refuses_nonempty_dir(store, tmp_path):
    out = tmp_path / "exp"
    _inspect(store, "export", "--out", str(out))
    rows = _load_export("jsonl", out)
    assert len(rows) == storefix.EXPECT["samples"]
    assert sum(r["rewards"] is None for r in rows) == 4  # p4: not judged yet
    assert "not an empty directory" in _inspect(store, "export", "--out", str(out), expect=2)
    assert len(_load_export("jsonl", out)) == storefix.EXPECT["samples"]  # untouched


@pytest.mark.parametrize("args, expect, needle", [
    (["--run", "run-a", "summary", "--json"], 0, '"samples": 1'),   # an older run by id
    (["--run", "nope", "summary"], 2, "no run 'nope'"),              # unknown run
])
def test_run_selection(store, args, expect, needle):
    assert needle in _inspect(store, *args, expect=expect)


def test_missing_store_is_a_clear_error(tmp_path):
    assert "no store here" in _inspect(tmp_path / "none.duckdb", "summary", expect=2)


@pytest.mark.parametrize("cmd", [["migrate"], *[["inspect", c] for c in
                                 ("summary", "rounds", "problems", "samples", "show", "sql", "curve", "export",
                                  "proposer")]])
def test_every_new_command_has_help(cmd):
    res = runner.invoke(cli.app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_problems_table_fits_80_columns(monkeypatch):
    from rich.console import Console

    from loop.inspection import view
    console = Console(width=80, record=True, force_terminal=False)
    monkeypatch.setattr(view, "out", console)
    long_q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May. " * 2
    rows = [{"problem_id": "3fa9c2d81b7e4a6f9c0d", "source": "gsm8k-train-jsonl", "kind": "seed", "level": None,
             "question": long_q, "answer": "72", "first_round": 1, "last_round": 3, "judged": 12, "verified": 5,
             "pass_rate": 5 / 12},
            {"problem_id": "p0001", "source": "arithmetic", "kind": "add", "level": 1, "question": "What is 2 + 2?",
             "answer": "4", "first_round": 2, "last_round": 2, "judged": 4, "verified": 4, "pass_rate": 1.0}]
    view.render_problems(rows)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    body = [line for line in lines if "3fa9c2d8" in line]
    assert len(body) == 1 and "…" in body[0] and "3fa9c2d81" not in body[0], text  # one line, id cut, question cut
    assert any("What is 2 + 2?" in line for line in lines)  # a short question stays whole
    assert "pass %" in text and "41.7" in body[0] and "100.0" in text  # no column dropped or cut
