"""Evaluation gate: a model whose held-out accuracy drops too far is rejected and the
previous model stays current (real DuckDB store, no model needed)."""
import pytest

from loop.config import load_config
from loop.context import RunContext
from loop.stages.evaluate import gate_decision
from store.db import Store


@pytest.fixture
def ctx(tmp_path):
    st = Store(tmp_path / "s.duckdb")
    c = RunContext(cfg=load_config(None, [f"run.dir={tmp_path}", "evaluate.gate_tolerance=0.1"]),
                   store=st, run_id="r", base_dir=tmp_path, base_version="base")
    st.insert_rows("evaluations", [{"run_id": "r", "round": 0, "model_version": "base", "split": "heldout",
                                    "accuracy": 0.30}])
    yield c
    st.close()


def _add_model(ctx, version, r, parent="base"):
    ctx.store.insert_rows("models", [{"model_version": version, "parent": parent, "run_id": "r", "round": r,
                                      "kind": "lora", "path": f"/m/{version}", "metrics": {"accepted": True}}])


GATE_TABLE = [
    # (candidate accuracy, accepted?)
    (0.50, True),    # better: accepted
    (0.25, True),    # within tolerance 0.1 of 0.30
    (0.20, True),    # exactly at the tolerance edge
    (0.19, False),   # dropped too far: rejected
]


@pytest.mark.parametrize("acc, accepted", GATE_TABLE)
def test_gate_table(ctx, acc, accepted):
    _add_model(ctx, "m1", 1)
    g = gate_decision(ctx, "m1", acc, 1)
    assert g["accepted"] is accepted and g["previous"] == "base"


def test_no_new_model_no_gate(ctx):
    assert gate_decision(ctx, "base", 0.0, 1) is None  # nothing trained this round


def test_rejected_round_reverts_current_model(ctx, monkeypatch):
    import loop.stages.evaluate as ev
    _add_model(ctx, "m1", 1)
    _add_model(ctx, "m1g", 1, parent="m1")  # SFT then GRPO in the same round
    assert ctx.current_model()[0] == "m1g"
    monkeypatch.setattr(ev, "evaluate_model", lambda c, *a: {"n": 10, "correct": 0, "accuracy": 0.05,
                                                        "format_rate": 0.0, "details": []})
    info = ev.stage(ctx, 1)
    assert info["gate"]["accepted"] is False and "keeping the previous model" in info["gate"]["reason"]
    assert ctx.current_model() == ("base", None)  # both models of round 1 rejected
    # The next gate compares against the last *accepted* evaluation (base at 0.30), not the rejected one.
    _add_model(ctx, "m2", 2)
    g = gate_decision(ctx, "m2", 0.28, 2)
    assert g["previous"] == "base" and g["accepted"]


def test_rejection_covers_rounds_whose_evaluation_was_skipped(ctx, monkeypatch):
    import loop.stages.evaluate as ev
    _add_model(ctx, "m1", 1)             # round 1: trained, evaluation skipped (evaluate.every=2)
    _add_model(ctx, "m2", 2, parent="m1")
    monkeypatch.setattr(ev, "evaluate_model", lambda c, *a: {"n": 10, "correct": 0, "accuracy": 0.05,
                                                        "format_rate": 0.0, "details": []})
    info = ev.stage(ctx, 2)
    assert info["gate"]["accepted"] is False and info["gate"]["previous_round"] == 0
    assert ctx.current_model() == ("base", None)  # m1 was never gated on its own: rejected with m2


BEST_TABLE = [
    # (gate_against, candidate accuracy, accepted?): accepted history base 0.30 -> m1 0.50 -> m2 0.42
    ("previous", 0.33, True),    # within 0.1 of the last accepted (0.42)
    ("best", 0.33, False),       # more than 0.1 below the best (0.50): the slow slide stops here
    ("best", 0.40, True),        # within 0.1 of the best
    ("previous", 0.31, False),   # below 0.42 - 0.1 either way
]


@pytest.mark.parametrize("against, acc, accepted", BEST_TABLE)
def test_gate_against_previous_or_best(ctx, against, acc, accepted):
    ctx.cfg.evaluate.gate_against = against
    for version, r, a in (("m1", 1, 0.50), ("m2", 2, 0.42)):
        _add_model(ctx, version, r)
        ctx.store.insert_rows("evaluations", [{"run_id": "r", "round": r, "model_version": version,
                                               "split": "heldout", "accuracy": a}])
    _add_model(ctx, "m3", 3, parent="m2")
    g = gate_decision(ctx, "m3", acc, 3)
    assert g["accepted"] is accepted
    assert (g["previous"], g["previous_round"]) == ("m2", 2)  # a rejection reverts to the last accepted
    assert g["reference_accuracy"] == (0.50 if against == "best" else 0.42)
