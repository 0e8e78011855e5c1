"""The registry of problem sources: a round's problems from the configured `propose.sources`.

Deterministic in the seed; a problem drawn twice is kept once; nothing in `exclude`
(held-out expressions and questions) is drawn. `self` sources are planned separately
by loop.proposer (they need the model).
"""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from loop.problems import Problem
from loop.problems.procedural import arithmetic
from loop.problems.seeds import load_jsonl, sample_jsonl


def _arithmetic(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    return arithmetic(src.count, src.levels, seed, exclude)


def _jsonl(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    pool = [p for p in load_jsonl(src.path) if p.question not in exclude]
    return sample_jsonl(pool, src.count, seed)


SOURCES: dict[str, Callable[..., list[Problem]]] = {"arithmetic": _arithmetic, "jsonl": _jsonl}


def propose(sources, seed: int, exclude: AbstractSet[str] = frozenset()) -> list[Problem]:
    """All problems for one round from the configured sources (deterministic in seed)."""
    out: list[Problem] = []
    for k, src in enumerate(sources):
        if src.kind in SOURCES:
            out += SOURCES[src.kind](src, seed * 1000 + k, exclude)
    seen, unique = set(), []
    for p in out:
        if p.problem_id not in seen:
            seen.add(p.problem_id)
            unique.append(p)
    return unique
