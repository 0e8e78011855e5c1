"""The registry of problem sources: a round's problems from the configured `propose.sources`.

Deterministic in the seed; a problem drawn twice is kept once; nothing in `exclude`
(held-out expressions and questions) is drawn. `self` sources are planned separately
by loop.proposer (they need the model), as are the model-written programs of a `code`
source (`model_count`); its procedural tasks are drawn here. `validate_sources` opens and maps every file
source (all rows) so a bad file fails when the run opens, before anything is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from loop.problems import Problem, ProposeError
from loop.problems.codetasks import code_tasks
from loop.problems.odometer import dashboard_problems
from loop.problems.procedural import arithmetic
from loop.problems.seeds import sample_jsonl, source_conversations, source_problems, source_table


def _arithmetic(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    return arithmetic(src.count, src.levels, seed, exclude)


def _file(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    pool = [p for p in source_problems(src) if p.question not in exclude]
    return sample_jsonl(pool, src.count, seed)


def _dashboard(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    return dashboard_problems(src.count, src.levels, seed, src.path, exclude)


def _code(src, seed: int, exclude: AbstractSet[str]) -> list[Problem]:
    return code_tasks(src.count, src.tasks, seed, exclude, src.levels)


SOURCES: dict[str, Callable[..., list[Problem]]] = {
    "arithmetic": _arithmetic,
    "jsonl": _file,
    "file": _file,
    "dashboard": _dashboard,
    "code": _code,
}


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


def validate_sources(sources, chat: bool = False) -> list[dict[str, Any]]:
    """Open, read and map every file source (problems, or conversations when `chat`); return
    each one's provenance (path, reader, files with sha256/encoding/rows). ProposeError names
    the file, line and column of the first bad row."""
    out = []
    for src in sources:
        if src.kind not in ("jsonl", "file"):
            continue
        rows = len(source_conversations(src) if chat else source_problems(src))
        if rows == 0:
            raise ProposeError(f"{src.path}: no rows")
        table = source_table(src)
        out.append(
            {
                "path": src.path,
                "reader": table.reader,
                "format": src.format if src.kind == "file" else "gsm8k",
                "rows": rows,
                "files": [vars(f) for f in table.files],
            }
        )
    return out


def validate_run_sources(cfg) -> list[dict[str, Any]]:
    """Every file a run reads: propose sources and evaluation sets (problems), `train.sft.mix`
    (conversations). Called when a run opens (and before a daemon detaches)."""
    return validate_sources([*cfg.propose.sources, *cfg.evaluate.sets]) + validate_sources(cfg.train.sft.mix, chat=True)
