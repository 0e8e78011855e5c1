"""The held-out evaluation sets (`evaluate.sets`): name -> problems, the gated set first.

A `kind: code` set is code-reasoning tasks (loop.problems.codetasks) under its own seed.
Without `sets`, one procedural set (`evaluate.n_problems/levels/seed`) named `heldout`, as
before. A file set is a seeded sample of `n` rows of a problem-format file; its questions
join the exclusions, so no training round proposes them (e.g. evaluate on 200 rows of a
GSM8K file whose other rows train). A `dashboard` set draws `n` (default 50) dashboards from its
seed; their readings join the exclusions. The gated set (`evaluate.gate_set`, else the first) is
stored as split `heldout`, the others under their names.
"""

from __future__ import annotations

import random

from loop.problems import Problem
from loop.problems.codetasks import code_tasks
from loop.problems.odometer import dashboard_problems
from loop.problems.procedural import heldout
from loop.problems.seeds import source_problems

GATED_SPLIT = "heldout"


def eval_sets(ev) -> list[tuple[str, str, list[Problem]]]:
    """[(name, split, problems)] in evaluation order, the gated set first."""
    if not ev.sets:
        return [(GATED_SPLIT, GATED_SPLIT, heldout(ev.n_problems, ev.levels, ev.seed))]
    gate = ev.gate_set or ev.sets[0].name
    out = []
    for s in sorted(ev.sets, key=lambda s: s.name != gate):
        split = GATED_SPLIT if s.name == gate else s.name
        out.append((s.name, split, set_problems(s)))
    return out


def set_problems(s) -> list[Problem]:
    if s.kind == "arithmetic":
        return heldout(s.n or 200, s.levels, s.seed)
    if s.kind == "dashboard":
        return dashboard_problems(s.n or 50, s.levels, s.seed, s.path)
    if s.kind == "code":  # training draws exclude these programs (their `meta.expression`)
        return code_tasks(s.n or 200, s.tasks, s.seed, levels=s.levels)
    pool = source_problems(s)
    if s.n is None or s.n >= len(pool):
        return pool
    keep = sorted(random.Random(s.seed).sample(range(len(pool)), s.n))
    return [pool[i] for i in keep]


def all_heldout(ev) -> list[Problem]:
    """Every evaluation set's problems (what proposals must avoid)."""
    return [p for _, _, probs in eval_sets(ev) for p in probs]
