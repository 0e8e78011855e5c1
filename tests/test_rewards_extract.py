"""Answer extraction table, pool modes, cache and public API surface."""
from __future__ import annotations

import threading

import pytest

import rewards
from rewards import Verdict, extract_answer, pool, verify

# (completion text, expected value, expected method, expected strong)
EXTRACT = [
    ("<answer>72</answer>", "72", "answer_tag", True),                         # plain tag
    ("<answer>\n72\n</answer>\n", "72", "answer_tag", True),                   # recipe layout
    ("<answer>1</answer> then <answer>2</answer>", "2", "answer_tag", True),   # last tag wins
    ("<answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}", "answer_tag", True),  # boxed inside tag unwrapped
    ("<reasoning>x</reasoning><answer>42", "42", "answer_tag", False),         # unclosed (truncated) tag is weak
    ("<answer></answer> so \\boxed{3}", "3", "boxed", True),                   # empty tag falls through
    ("so \\boxed{5}", "5", "boxed", True),                                     # boxed
    ("\\boxed{1} and then \\boxed{2}", "2", "boxed", True),                    # last boxed wins
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}", "boxed", True),   # nested braces
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed", True),                      # escaped braces inside
    ("\\fbox{7}", "7", "boxed", True),                                         # \fbox
    ("\\boxed 9 is it", "9", "boxed", True),                                   # braceless \boxed
    ("\\boxed{\\text{(B)}}", "\\text{(B)}", "boxed", True),                    # text answer
    ("\\boxed{unclosed", None, "none", False),                                 # unbalanced boxed, no number
    ("Natalia sold 72.\n#### 72", "72", "gsm8k", True),                        # GSM8K marker
    ("#### 1,234\n", "1,234", "gsm8k", True),                                  # GSM8K with separator
    ("It costs $1,234.50 in total.", "1,234.50", "last_number", False),        # last number, separators
    ("first 3 then -4.5", "-4.5", "last_number", False),                       # negative decimal
    ("the ratio is 3/4", "3/4", "last_number", False),                         # simple fraction
    ("value x2 and 7", "7", "last_number", False),                             # digits glued to words skipped
    ("no numbers here", None, "none", False),                                  # nothing
    ("", None, "none", False),                                                 # empty
]


@pytest.mark.parametrize("text,value,method,strong", EXTRACT)
def test_extract_table(text, value, method, strong):
    ext = extract_answer(text)
    assert (ext.value, ext.method, ext.strong) == (value, method, strong)


def test_extract_non_string_is_none():
    assert extract_answer(None).method == "none"
    assert extract_answer(123).method == "none"  # type: ignore[arg-type]


def test_public_api_surface():
    for name in ("verify", "extract_answer", "REWARDS", "build_reward", "VERIFIER_VERSION", "Verdict", "Extraction"):
        assert hasattr(rewards, name)
    assert isinstance(rewards.VERIFIER_VERSION, str) and rewards.VERIFIER_VERSION
    v = verify("1", "1")
    assert isinstance(v, Verdict) and v.equal is True and v.reason and v.method


def test_verdict_refuses_truthiness():
    with pytest.raises(TypeError, match="equal"):
        bool(verify("1", "1"))


def test_verify_accepts_numbers_and_none():
    assert verify(72, 72.0).equal is True  # type: ignore[arg-type]
    assert verify("72", None).equal is False  # type: ignore[arg-type]
    assert verify(None, "72").equal is None  # type: ignore[arg-type]


def test_verdict_is_cached_per_pair(monkeypatch):
    from rewards import verifier

    verifier.clear_cache()
    calls = []
    real = verifier._verify_uncached
    monkeypatch.setattr(verifier, "_verify_uncached", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        assert verify("\\frac{1}{2}", "0.5").equal is True
    assert len(calls) == 1
    verify("\\frac{1}{2}", "0.50")
    assert len(calls) == 2  # a different prediction is a different key


def test_inprocess_mode_bounds_sympy_on_main_thread():
    try:
        pool.configure(mode="inprocess")
        status, _ = pool.run("_sleep", (30.0,), 0.3)  # setitimer interrupts it
        assert status == "timeout"
        rewards.verifier.clear_cache()
        assert verify("x^2 < 4", "(-2, 2)").equal is True
    finally:
        pool.configure(mode="pool")


def test_off_mode_cannot_judge_sympy_only_cases():
    try:
        pool.configure(mode="off")
        rewards.verifier.clear_cache()
        assert verify("x^2 < 4", "(-2, 2)").equal is None   # needs sympy: cannot judge
        assert verify("\\frac{1}{2}", "0.5").equal is True  # fast path unaffected
    finally:
        pool.configure(mode="pool")
        rewards.verifier.clear_cache()


def test_configure_rejects_bad_mode():
    with pytest.raises(ValueError, match="bad mode"):
        pool.configure(mode="threads")


def test_inprocess_mode_off_main_thread_still_answers():
    out = []
    try:
        pool.configure(mode="inprocess")
        rewards.verifier.clear_cache()
        t = threading.Thread(target=lambda: out.append(verify("3", "\\log_2 8").equal))
        t.start()
        t.join(60)
    finally:
        pool.configure(mode="pool")
    assert out == [True]
