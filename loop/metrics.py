"""Evaluation metrics over k samples a problem: pass@k (unbiased) and maj@k (majority vote).

- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021, "Evaluating Large
  Language Models Trained on Code"): with n samples of which c are correct, the chance
  that k drawn without replacement contain a correct one, 1 - C(n-c, k) / C(n, k).
- `vote_key(text)`: the answer a sample votes for: the verifier's extraction
  (rewards.extract), normalized (rewards.normalize), an exact number where it parses, so
  `12`, `12.0` and `\\boxed{12}` are one vote; None (no answer) casts no vote.
- `maj_at_k(texts, correct, k)`: the first k samples vote; the most frequent key wins (ties:
  the key seen first); the problem counts as solved when that answer is correct (the
  correctness of the first sample giving it, as the verifier judged it against the gold).
- `set_metrics(samples, correct, ks)`: per k, the mean over problems of both, in [0, 1].
"""

from __future__ import annotations

from collections import Counter
from math import comb

from rewards.extract import extract_answer
from rewards.normalize import canon_text, normalize, parse_number


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples, c of them correct (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def vote_key(text: str) -> str | None:
    """The normalized answer a completion votes for (None: nothing extracted)."""
    value = extract_answer(text).value
    if value is None:
        return None
    norm = normalize(value)
    num = parse_number(norm)
    if num is not None:
        v = num.value
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    return canon_text(norm) or None


def maj_at_k(texts: list[str], correct: list[bool], k: int) -> bool:
    """Is the majority answer of the first k samples correct?"""
    keys = [vote_key(t) for t in texts[:k]]
    votes = Counter(x for x in keys if x is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(x for x in keys if x is not None and votes[x] == top)  # ties: the first seen
    return correct[keys.index(winner)]


def set_metrics(samples: list[list[str]], correct: list[list[bool]], ks: list[int]) -> dict[str, float]:
    """{"pass@k", "maj@k"} per k, averaged over problems (samples[i]: problem i's n texts)."""
    if not samples:
        return {}
    out: dict[str, float] = {}
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(len(c), sum(c), k) for c in correct) / len(samples)
        out[f"maj@{k}"] = sum(maj_at_k(t, c, k) for t, c in zip(samples, correct)) / len(samples)
    return out
