"""Exact dedup, near-duplicate detection and eval decontamination for problem texts.

Contract: every comparison goes through `normalize_text`, so two texts that differ
only in case, whitespace, unicode form (NFKC) or sentence punctuation are the
same text. Math operators + - * / ^ = < > ( ) % are kept as tokens because
"2+3" and "2-3" are different problems; numbers are kept whole ("3.5").
All hashing is seeded and process-independent (blake2b, never `hash()`), so
hashes and MinHash signatures are stable across runs and machines.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

# Symbols NFKC leaves alone but that mean an ASCII operator.
_OPERATOR_MAP = str.maketrans(
    {
        "\u2212": "-",
        "\u2013": "-",
        "\u00d7": "*",
        "\u00b7": "*",
        "\u22c5": "*",
        "\u00f7": "/",
        "\u2215": "/",
        "\u2264": "<=",
        "\u2265": ">=",
    }
)
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[+\-*/^=<>()%]")
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")  # "two-digit" -> "two digit"
_MERSENNE31 = (1 << 31) - 1


def tokens(text: str) -> list[str]:
    """Normalized tokens: words, numbers and math operators."""
    text = unicodedata.normalize("NFKC", text).translate(_OPERATOR_MAP).casefold()
    return _TOKEN.findall(_WORD_HYPHEN.sub(" ", text))


def normalize_text(text: str) -> str:
    """Lowercase (casefold), NFKC, punctuation stripped, whitespace collapsed."""
    return " ".join(tokens(text))


def text_hash(text: str) -> str:
    """16 hex chars of sha256 over the normalized text: the exact-dup key."""
    return hashlib.sha256(normalize_text(text).encode()).hexdigest()[:16]


def _h64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


def shingles(text: str, kind: str = "word", n: int = 3) -> frozenset[int]:
    """Hashed shingles: word n-grams (default 3) or char n-grams of the
    normalized text. Texts shorter than n give one shingle (the whole text)."""
    if kind == "word":
        toks = tokens(text)
        grams = [" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))]
    elif kind == "char":
        s = normalize_text(text)
        grams = [s[i : i + n] for i in range(max(1, len(s) - n + 1))]
    else:
        raise ValueError(f"unknown shingle kind {kind!r}")
    return frozenset(_h64(g) for g in grams if g)


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _lsh_shape(num_perm: int, threshold: float, recall: float = 0.95) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest false candidates) that
    still make a pair at exactly `threshold` a candidate with prob >= recall."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


class NearDupIndex:
    """MinHash + LSH banding over shingles; candidates are verified with the
    exact Jaccard of the stored shingle sets, so `query` has no false positives
    (recall at the threshold is >= 95% by construction of the bands).

    `query(text)` returns [(id, jaccard)] with jaccard >= threshold, best first.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, seed: int = 0, kind: str = "word", n: int = 3):
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold, self.kind, self.n = threshold, kind, n
        rng = np.random.default_rng(seed)
        # h_i(x) = (a_i x + b_i) mod p with p = 2^31 - 1: products stay < 2^62, no overflow.
        self._a = rng.integers(1, _MERSENNE31, num_perm, dtype=np.uint64)
        self._b = rng.integers(0, _MERSENNE31, num_perm, dtype=np.uint64)
        self.bands, self.rows = _lsh_shape(num_perm, threshold)
        self._buckets: list[dict[bytes, list[Any]]] = [{} for _ in range(self.bands)]
        self._sets: dict[Any, frozenset[int]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def signature(self, sh: frozenset[int]) -> np.ndarray:
        x = np.fromiter((v % _MERSENNE31 for v in sh), dtype=np.uint64, count=len(sh))
        if x.size == 0:
            return np.full(self._a.shape, _MERSENNE31, dtype=np.uint64)
        return ((self._a[:, None] * x[None, :] + self._b[:, None]) % _MERSENNE31).min(axis=1)

    def _band_keys(self, sig: np.ndarray) -> list[bytes]:
        r = self.rows
        return [sig[i * r : (i + 1) * r].tobytes() for i in range(self.bands)]

    def add(self, id: Any, text: str) -> None:
        """Index `text` under a new `id`; whether to add a near-duplicate of an
        indexed text is the caller's decision (query first)."""
        if id in self._sets:
            raise ValueError(f"id {id!r} already indexed")
        sh = shingles(text, self.kind, self.n)
        self._sets[id] = sh
        for bucket, key in zip(self._buckets, self._band_keys(self.signature(sh))):
            bucket.setdefault(key, []).append(id)

    def query(self, text: str) -> list[tuple[Any, float]]:
        sh = shingles(text, self.kind, self.n)
        candidates: set[Any] = set()
        for bucket, key in zip(self._buckets, self._band_keys(self.signature(sh))):
            candidates.update(bucket.get(key, ()))
        scored = [(cid, jaccard(sh, self._sets[cid])) for cid in candidates]
        hits = [(cid, j) for cid, j in scored if j >= self.threshold]
        return sorted(hits, key=lambda t: (-t[1], str(t[0])))

    def is_near_duplicate(self, text: str) -> bool:
        return bool(self.query(text))


class NgramIndex:
    """Word n-grams (default 13, over normalized tokens) of evaluation texts.

    A text overlaps if it shares any n-gram with an eval text. Eval texts
    shorter than n tokens are matched as whole token sequences contained in the
    candidate, so short eval problems are not silently unprotected.
    """

    def __init__(self, eval_texts: Iterable[str] = (), n: int = 13):
        self.n = n
        self._grams: set[int] = set()
        self._short: set[str] = set()
        for text in eval_texts:
            self.add(text)

    def add(self, text: str) -> None:
        toks = tokens(text)
        if len(toks) < self.n:
            if toks:
                self._short.add(" ".join(toks))
            return
        self._grams.update(self._hashes(toks))

    def _hashes(self, toks: list[str]) -> list[int]:
        return [_h64(" ".join(toks[i : i + self.n])) for i in range(len(toks) - self.n + 1)]

    def count(self, text: str) -> int:
        """How many of the text's n-grams (plus whole short eval texts) it shares."""
        toks = tokens(text)
        hits = sum(h in self._grams for h in self._hashes(toks)) if len(toks) >= self.n else 0
        padded = f" {' '.join(toks)} "
        return hits + sum(f" {s} " in padded for s in self._short)

    def overlaps(self, text: str) -> bool:
        return self.count(text) > 0


def _default_key(problem: Any) -> str:
    if isinstance(problem, str):
        return problem
    return problem["problem"] if "problem" in problem else problem["text"]


def decontaminate(
    problems: Iterable[Any], eval_texts: Iterable[str], n: int = 13, key: Callable[[Any], str] = _default_key
) -> tuple[list[Any], list[tuple[Any, str]]]:
    """Split problems into (kept, dropped); dropped carries the reason:
    'exact_match' (same normalized text as an eval item) or 'ngram_overlap:<k>'
    (k shared n-grams). Problems are str or dicts with 'problem'/'text'."""
    eval_texts = list(eval_texts)
    index = NgramIndex(eval_texts, n=n)
    exact = {text_hash(t) for t in eval_texts}
    kept, dropped = [], []
    for p in problems:
        text = key(p)
        if text_hash(text) in exact:
            dropped.append((p, "exact_match"))
        elif k := index.count(text):
            dropped.append((p, f"ngram_overlap:{k}"))
        else:
            kept.append(p)
    return kept, dropped
