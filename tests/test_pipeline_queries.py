"""store.pipeline: the stage-side queries (model lineage, gate history, pass rates) on a real DuckDB file."""
import pytest

from store import pipeline, queries
from store.db import Store


@pytest.fixture
def st(tmp_path):
    with Store(tmp_path / "loop.duckdb") as s:
        yield s


def add_models(st, rows):
    """rows: (version, run, round, kind, accepted, created_at second, parent)."""
    st.insert_rows("models", [
        {"model_version": v, "run_id": run, "round": r, "kind": kind, "accepted": acc, "parent": parent,
         "created_at": f"2025-01-01 00:00:{sec:02d}", "path": f"/m/{v}",
         "metrics": {"accepted": acc, "last_loss": 0.5}} for v, run, r, kind, acc, sec, parent in rows])


def add_samples(st, rows):
    """rows: (run, round, problem, idx, verified, strict_format reward)."""
    st.insert_rows("samples", [
        {"sample_id": f"{run}-{r}-{p}-{i}", "run_id": run, "round": r, "problem_id": p, "idx": i,
         "verified": v, "completion": f"chain {p} {r} {i}", "extracted": "x",
         "rewards": None if strict is None else {"strict_format": strict}} for run, r, p, i, v, strict in rows])


def add_problems(st, ids):
    st.insert_rows("problems", [{"problem_id": p, "question": f"q {p}", "answer": f"a {p}", "kind": "k"} for p in ids])


# --- current_model ------------------------------------------------------------------------
CURRENT = [  # (models: version, run, round, kind, accepted, created_at s, parent), expected version
    ([], None),                                                          # nothing trained: the base is current
    ([("m1", "r", 1, "lora", True, 0, None)], "m1"),                    # the one adapter
    ([("m1", "r", 1, "lora", True, 0, None),
      ("m2", "r", 2, "lora", True, 0, "m1")], "m2"),                    # the newest round wins
    ([("m1", "r", 1, "lora", True, 0, None),
      ("m2", "r", 2, "lora", False, 0, "m1")], "m1"),                   # a rejected one reverts to the last accepted
    ([("m1", "r", 1, "lora", False, 0, None)], None),                   # every adapter rejected: the base
    ([("b", "r", 3, "base", True, 0, None),
      ("m1", "r", 1, "lora", True, 0, None)], "m1"),                    # only LoRA adapters count
    ([("m1", "r", 1, "lora", True, 0, None),
      ("x9", "other", 9, "lora", True, 0, None)], "m1"),                # another run's model is not this run's
    ([("sft", "r", 2, "lora", True, 1, None),
      ("grpo", "r", 2, "lora", True, 2, "sft")], "grpo"),               # same round: the later registered
    ([("late", "r", 1, "lora", True, 5, None),
      ("m2", "r", 2, "lora", True, 0, None)], "m2"),                    # round before registration time
]


@pytest.mark.parametrize("models, expected", CURRENT)
def test_current_model(st, models, expected):
    add_models(st, models)
    got = pipeline.current_model(st, "r")
    assert (got and got["model_version"]) == expected
    if expected:
        assert got == {"model_version": expected, "path": f"/m/{expected}"}


MODELS = [("base", "r", 0, "base", True, 0, None), ("m1", "r", 1, "lora", True, 0, "base"),
          ("m2", "r", 2, "lora", True, 0, "m1")]
PARENTS = [  # (version, expected parent)
    ("m2", "m1"),       # an adapter's parent adapter
    ("m1", "base"),     # the first adapter's parent: the base
    ("base", None),     # the base has none
    ("nope", None),     # unknown to the store (e.g. an endpoint's weights)
]


@pytest.mark.parametrize("version, parent", PARENTS)
def test_model_parent(st, version, parent):
    add_models(st, MODELS)
    assert pipeline.model_parent(st, version) == parent


# --- reject_models ------------------------------------------------------------------------
LINE = [("m1", "r", 1, "lora", True, 0, None), ("m2", "r", 2, "lora", True, 0, "m1"),
        ("m3", "r", 3, "lora", True, 0, "m2"), ("m4", "r", 4, "lora", False, 0, "m3"),
        ("o3", "other", 3, "lora", True, 0, None)]
REJECT = [  # (after_round, upto_round, rejected by this call, current model afterwards)
    (2, 3, ["m3"], "m2"),             # (2, 3]: round 3 only; the current model reverts to m2
    (1, 3, ["m2", "m3"], "m1"),       # (1, 3]: skipped evaluations reject every round since the last one
    (0, 1, ["m1"], "m3"),             # lower bound exclusive, upper inclusive
    (3, 4, [], "m3"),                 # m4 already rejected: keeps its first reason
    (4, 9, [], "m3"),                 # no model there
    (3, 3, [], "m3"),                 # empty interval
]


@pytest.mark.parametrize("after, upto, rejected, current", REJECT)
def test_reject_models(st, after, upto, rejected, current):
    add_models(st, LINE)
    st.con.execute("UPDATE models SET rejected_because = 'first' WHERE model_version = 'm4'")
    with st.transaction():
        n = pipeline.reject_models(st, "r", after, upto, "worse")
    assert n == len(rejected)
    got = {r["model_version"]: r for r in st.query(
        "SELECT model_version, accepted, rejected_because, json_extract_string(metrics, '$.accepted') AS j_acc, "
        "json_extract_string(metrics, '$.rejected_because') AS j_why, "
        "json_extract(metrics, '$.last_loss')::DOUBLE AS loss FROM models")}
    for v in rejected:  # column and JSON agree; other metrics kept
        assert got[v] == {"model_version": v, "accepted": False, "rejected_because": "worse", "j_acc": "false",
                          "j_why": "worse", "loss": 0.5}
    for v in {"m1", "m2", "m3", "o3"} - set(rejected):
        assert got[v]["accepted"] is True and got[v]["rejected_because"] is None and got[v]["j_acc"] == "true"
    assert (got["m4"]["accepted"], got["m4"]["rejected_because"]) == (False, "first")
    assert pipeline.current_model(st, "r")["model_version"] == current


def test_reject_models_rolls_back_with_its_transaction(st):
    add_models(st, LINE)
    with pytest.raises(RuntimeError):
        with st.transaction():
            pipeline.reject_models(st, "r", 0, 9, "worse")
            raise RuntimeError("crash before the evaluation committed")
    assert st.scalar("SELECT count(*) FROM models WHERE NOT accepted") == 1  # only m4, as before


# --- accepted_evaluations -----------------------------------------------------------------
EVALS = [(0, "base", 0.30), (1, "m1", 0.50), (2, "m2", 0.20), (3, "m3", 0.55)]
ACCEPTED_EVALS = [  # (before_round, expected rounds, newest first)
    (4, [3, 1, 0]),     # m2 rejected: its evaluation is not a reference
    (3, [1, 0]),        # strictly before the round
    (1, [0]),           # the base model is not in `models`: accepted
    (0, []),            # nothing before the baseline
]


@pytest.mark.parametrize("before, rounds", ACCEPTED_EVALS)
def test_accepted_evaluations(st, before, rounds):
    add_models(st, [("m1", "r", 1, "lora", True, 0, None), ("m2", "r", 2, "lora", False, 0, "m1"),
                    ("m3", "r", 3, "lora", True, 0, "m1")])
    st.insert_rows("evaluations", [{"run_id": "r", "round": r, "model_version": v, "split": "heldout",
                                    "accuracy": a} for r, v, a in EVALS]
                   + [{"run_id": "other", "round": 1, "model_version": "x", "split": "heldout", "accuracy": 0.9}])
    got = pipeline.accepted_evaluations(st, "r", before)
    assert [g["round"] for g in got] == rounds
    assert got == [{"round": r, "accuracy": a, "model_version": v} for r, v, a in EVALS[::-1] if r in rounds]


# --- pass rates ---------------------------------------------------------------------------
SAMPLES = [  # (run, round, problem, idx, verified, strict_format)
    ("r", 1, "a", 0, True, 1.0), ("r", 1, "a", 1, False, 0.0),              # a: 1/2 in round 1
    ("r", 2, "a", 0, True, 0.0), ("r", 2, "a", 1, True, 1.0),               # a: 2/2 in round 2
    ("r", 1, "b", 0, False, 0.0), ("r", 1, "b", 1, None, None),             # b: 0/1, one not judged
    ("r", 2, "c", 0, None, None),                                           # c: nothing judged
    ("r", 2, "d", 0, True, None), ("r", 2, "d", 1, False, None),            # d: 1/3 in round 2
    ("r", 2, "d", 2, False, None),
    ("other", 1, "a", 0, False, 0.0),                                       # another run
]
PASS_RATES = [  # (first_round, last_round, {problem: (judged, verified, pass_rate)})
    (1, 1, {"a": (2, 1, 0.5), "b": (1, 0, 0.0)}),                           # one round; unjudged not counted
    (2, 2, {"a": (2, 2, 1.0), "c": (0, 0, None), "d": (3, 1, 1 / 3)}),      # nothing judged: None, not 0
    (1, 2, {"a": (4, 3, 0.75), "b": (1, 0, 0.0), "c": (0, 0, None), "d": (3, 1, 1 / 3)}),  # over the range
    (None, None, {"a": (4, 3, 0.75), "b": (1, 0, 0.0), "c": (0, 0, None), "d": (3, 1, 1 / 3)}),  # unbounded
    (2, None, {"a": (2, 2, 1.0), "c": (0, 0, None), "d": (3, 1, 1 / 3)}),   # open upper bound
    (3, 9, {}),                                                             # no samples there
]


@pytest.mark.parametrize("first, last, expected", PASS_RATES)
def test_pass_rates(st, first, last, expected):
    add_samples(st, SAMPLES)
    got = {r["problem_id"]: (r["judged"], r["verified"], r["pass_rate"])
           for r in pipeline.pass_rates(st, "r", first, last)}
    assert got == expected  # exact: k / n is one IEEE division either way
    assert list(got) == sorted(got)


def test_pass_rates_agree_with_the_per_round_view(st):
    """problem_pass_rates (migration 004) is the same definition, per round."""
    add_samples(st, SAMPLES)
    for r in (1, 2):
        view = {x["problem_id"]: (x["n"], x["n_verified"]) for x in st.query(
            "SELECT problem_id, n, n_verified FROM problem_pass_rates WHERE run_id = 'r' AND round = ?", [r])}
        ours = {x["problem_id"]: (x["judged"], x["verified"]) for x in pipeline.pass_rates(st, "r", r, r)
                if x["judged"]}
        assert ours == view


OLD_SFT_RATES = ("SELECT problem_id, avg(CASE WHEN verified THEN 1.0 ELSE 0.0 END) AS pass_rate "
                 "FROM samples WHERE run_id = ? AND round <= ? AND round >= ? GROUP BY problem_id")


def test_train_pass_rate_unchanged_when_every_sample_is_judged(st):
    """The train stage runs after verify, which judges every sample: there the shared pass rate
    equals the train stage's avg(CASE WHEN verified THEN 1.0 ELSE 0.0 END) over all samples,
    to the bit. (They differ only for unjudged samples, which that expression counts as failures.)"""
    add_samples(st, [s for s in SAMPLES if s[4] is not None])
    for first, last in ((1, 1), (2, 2), (1, 2)):
        old = {r["problem_id"]: r["pass_rate"] for r in st.query(OLD_SFT_RATES, ["r", last, first])}
        assert old == {r["problem_id"]: r["pass_rate"] for r in pipeline.pass_rates(st, "r", first, last)}


def test_inspect_problems_uses_the_same_pass_rate(st):
    add_problems(st, "abcd")
    add_samples(st, SAMPLES)
    st.insert_rows("round_problems", [{"run_id": "r", "round": r, "problem_id": p}
                                      for r, p in ((1, "a"), (1, "b"), (2, "a"), (2, "c"), (2, "d"))])
    shared = {r["problem_id"]: r for r in pipeline.pass_rates(st, "r")}
    got = {r["problem_id"]: (r["judged"], r["verified"], r["pass_rate"]) for r in queries.problems(st, "r")}
    assert got == {p: (x["judged"], x["verified"], x["pass_rate"]) for p, x in shared.items()}
    filtered = queries.problems(st, "r", 0.0, 0.5, filtered=True)  # unjudged c never passes a filter
    assert [r["problem_id"] for r in filtered] == ["b", "d"]
