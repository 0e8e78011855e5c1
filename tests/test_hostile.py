"""Hostile inputs: every call returns within its bound and the process stays healthy.

Also: verify from threads and from inside process-pool workers, stuck sympy
workers are killed and replaced, rewards survive pickling, nothing is eval'd.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import pickle
import time

import pytest

from rewards import REWARDS, build_reward, extract_answer, pool, verify
from rewards.verifier import clear_cache

BOUND_S = 1.0
SLACK_S = 5.0  # generous: 2 shared cores, a worker restart costs ~1 s
MB = 1_000_000
SENTINEL = "/tmp/rewards_hostile_pwned"

HOSTILE = [
    "9^{9^{9^9}}",                                  # exponent tower (LaTeX)
    "10**10**10",                                   # exponent tower (Python syntax)
    "2^{2^{2^{2^{2^{2}}}}}",                        # six-level tower of 2s
    "2^{3^{4^{5}}}",                                # tower with growing bases
    "10^{10^{6}}",                                  # million-digit power
    "10^{-10^{10}}",                                # vanishing power
    "e^{e^{e^{e^{e}}}}",                            # transcendental tower
    "x^{x^{x^{x^{x}}}}",                            # symbolic tower
    "(x+1)^{100000}",                               # huge polynomial power
    "(10^{100})!",                                  # huge factorial of a power
    "100000!",                                      # large factorial literal
    "((10!)!)!",                                    # nested factorials
    "\\binom{10^{9}}{5000}",                        # huge binomial
    "\\sin(10^{10^{10}})",                          # trig of a tower
    "\\infty^{\\infty} - \\infty",                  # undefined infinities
    "inf-inf",                                      # NaN in plain text
    "0/0",                                          # indeterminate
    "1" * MB,                                       # 1 MB of digits
    "x" * MB,                                       # 1 MB of letters
    "$" * MB,                                       # 1 MB of dollar signs
    "\\\\" * (MB // 2),                             # 1 MB of LaTeX line breaks
    "1," * (MB // 2),                               # 1 MB comma list (thousands regex bait)
    "(" * 500 + "1" + ")" * 500,                    # 500-deep parentheses
    "{" * 500 + "1" + "}" * 500,                    # 500-deep braces
    "\\frac{" * 500 + "1" + "}{2}" * 500,           # 500-deep fractions
    "\\sqrt{" * 500 + "2" + "}" * 500,              # 500-deep radicals
    "\\left(" * 300 + "x" + "\\right)" * 300,       # 300-deep \left( pairs
    "-" * 1500 + "1",                               # 1500 unary minuses
    "\\text{" * 1000 + "a" + "}" * 1000,            # 1000-deep \text
    "\\boxed{" * 10000,                             # unclosed boxes
    "1e999999",                                     # giant scientific exponent
    "0." + "3" * 1990,                              # 1990-digit decimal
    "+".join(["\\frac{1}{3}"] * 150),               # long sum (token cap region)
    "\\begin{pmatrix}" + "&".join(["1"] * 900) + "\\end{pmatrix}",  # oversized matrix
    "７２",                                          # fullwidth digits (look-alike)
    "𝟕𝟐",                                          # mathematical bold digits
    "٧٢",                                           # Arabic-Indic digits
    "7\u200b2",                                     # zero-width space inside a number
    "\u202e27",                                     # right-to-left override
    "х + 1",                                        # Cyrillic 'х' look-alike of x
    "__import__('os').system('touch " + SENTINEL + "')",  # code injection attempt
    "\\input{/etc/passwd}",                         # LaTeX file inclusion
    "\\def\\x{\\x}\\x",                             # recursive macro definition
    "lambda: 0",                                    # Python syntax
    "x^2 < 4 " * 200,                               # repeated relations
]


def _children() -> set[int]:
    """Live (non-zombie) child processes of this process, from /proc."""
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(entry))
    return out


@pytest.fixture(scope="module", autouse=True)
def warm_pool():
    pool.warm()  # worker start-up is not part of any per-call bound
    yield


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def test_hostile_list_is_long_enough():
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"h{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_prediction_and_gold_are_bounded(hostile):
    clear_cache()
    for gold, pred in (("5", hostile), (hostile, "5"), ("x^2 < 4", hostile), (hostile, hostile[:1000])):
        verdict, elapsed = _timed(verify, gold, pred, timeout_s=BOUND_S)
        assert elapsed < BOUND_S + SLACK_S, (gold[:40], pred[:40], elapsed)
        assert verdict.equal in (True, False, None)
        if gold == "5" and pred == hostile:
            assert verdict.equal is not True  # no hostile input is worth 5
    ext, elapsed = _timed(extract_answer, "<answer>" + hostile + "</answer>")
    assert elapsed < BOUND_S + SLACK_S
    reward = build_reward("accuracy", {"timeout_s": BOUND_S})
    scores, elapsed = _timed(reward, ["q"], [hostile, "<answer>" + hostile], answer=["5", "5"])
    assert elapsed < 2 * (BOUND_S + SLACK_S)
    assert all(s in (0.0, 1.0, None) for s in scores)


def test_nothing_was_evaluated():
    assert not os.path.exists(SENTINEL)
    assert verify("5", "__import__('os').getpid()").equal is False


def test_lookalike_digits_read_as_numbers():
    # NFKC folds fullwidth/bold digits: a correct answer in odd glyphs still counts
    assert verify("72", "７２").equal is True
    assert verify("72", "𝟕𝟐").equal is True
    assert verify("72", "7\u200b2").equal is True


def test_hostile_completions_for_extraction():
    huge = [
        "<answer>" * 200_000,                              # many unclosed tags
        "</answer>" * 200_000,                             # many closing tags
        "\\boxed{" + "{" * MB,                              # unbalanced boxed
        "#### " + "9" * MB,                                # giant gsm8k answer
        "a 1 " * 250_000,                                  # 1 MB with numbers everywhere
    ]
    for text in huge:
        ext, elapsed = _timed(extract_answer, text)
        assert elapsed < BOUND_S + SLACK_S
        assert ext.value is None or len(ext.value) <= 4000


def test_stuck_worker_is_killed_and_replaced():
    before = set(pool.live_pids())
    (status, _), elapsed = _timed(pool.run, "_stuck", (60.0,), 0.5)  # ignores its own alarm
    assert status == "timeout"
    assert elapsed < 0.5 + SLACK_S
    gone = before - set(pool.live_pids())
    for pid in gone:
        assert pid not in _children()  # killed and reaped, not a zombie
    (status, value), _ = _timed(pool.run, "ping", (), 30.0)  # a replacement starts
    assert (status, value) == ("ok", True)


def test_interruptible_overrun_keeps_worker():
    (status, _), elapsed = _timed(pool.run, "_sleep", (60.0,), 0.3)
    assert status == "timeout" and elapsed < 0.3 + SLACK_S


def test_sympy_timeout_gives_none_not_a_reward(monkeypatch):
    # Make every sympy task overrun; a gold needing sympy must come back None.
    real = pool.run
    monkeypatch.setattr(pool, "run", lambda task, args, t: real("_stuck", (60.0,), min(t, 0.3)))
    clear_cache()
    verdict, elapsed = _timed(verify, "x^2 < 4", "(-2, 2)", timeout_s=0.3)
    assert (verdict.equal, verdict.reason) == (None, "timeout")
    assert elapsed < 0.3 + SLACK_S
    monkeypatch.undo()
    clear_cache()
    assert verify("x^2 < 4", "(-2, 2)").equal is True  # not cached, recovers


def test_process_stays_healthy_and_no_leaks():
    assert verify("\\frac{1}{2}", "0.5").equal is True
    assert verify("x^2 < 4", "(-2, 2)").equal is True  # sympy path still works
    workers = set(pool.live_pids())
    assert len(workers) <= pool._POOL.max_workers
    assert workers <= _children()
    pool.shutdown()
    assert not (workers & _children())
    pool.warm()


PAIRS = [("\\frac{1}{2}", "0.5", True), ("x^2 < 4", "(-2,2)", True), ("3", "\\log_2 8", True),
         ("5", "9^{9^{9^9}}", False), ("72", "71", False), ("(1,2)", "(2,1)", False)]


def _check_pairs(_=None) -> list:
    # A generous bound: this checks thread/process safety, not speed (12 callers share a
    # small sympy pool, and the wait for a worker counts against the bound).
    clear_cache()
    return [verify(g, p, timeout_s=30.0).equal for g, p, _ in PAIRS]


def test_verify_from_threads():
    expected = [e for _, _, e in PAIRS]
    with cf.ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(_check_pairs, range(12)))
    assert all(r == expected for r in results)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_verify_inside_process_pool(method):
    expected = [e for _, _, e in PAIRS]
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context(method)) as ex:
        assert ex.submit(_check_pairs).result(timeout=120) == expected


def test_verify_inside_daemonic_multiprocessing_pool():
    expected = [e for _, _, e in PAIRS]
    with mp.get_context("spawn").Pool(1) as p:  # daemonic workers cannot use multiprocessing children
        assert p.apply_async(_check_pairs).get(timeout=120) == expected


def _score(reward_bytes: bytes) -> list:
    reward = pickle.loads(reward_bytes)
    return reward(["q"], ["<answer>\n72\n</answer>\n"], answer=["72"])


def test_rewards_pickle_round_trip_and_run_in_processes():
    rewards = [build_reward(name, {}) for name in REWARDS]
    for r in rewards:
        clone = pickle.loads(pickle.dumps(r))
        assert clone.__name__ == r.__name__ and repr(clone) == repr(r)
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        remote = list(ex.map(_score, [pickle.dumps(r) for r in rewards]))
    local = [r(["q"], ["<answer>\n72\n</answer>\n"], answer=["72"]) for r in rewards]
    assert remote == local
