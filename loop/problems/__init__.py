"""Problems with exact answers: the type every source yields, and the sources' error.

A problem's id is the hash of its normalized question and answer, so the same problem
proposed twice is stored once. Sources live beside this file: `odometer` (drawn dashboards
with exact readings, a vision task), `vision` (image row formats), `procedural` (seeded
arithmetic with sympy-exact answers, and the held-out set), `readers/` (one module per
file format; bounded reads, detected encodings), `formats` (named row formats: problems
and conversations), `seeds` (file sources, cached), `evalsets` (`evaluate.sets`),
`sources` (the registry that draws a round's problems, and `validate_sources`); `dedup`
and `curriculum` keep the pool clean and in the learnable band.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


class ProposeError(ValueError):
    """A seed source is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str
    source: str
    kind: str
    level: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def problem_id(self) -> str:
        key = " ".join(self.question.split()).lower() + "\x00" + self.answer.strip()
        return hashlib.sha256(key.encode()).hexdigest()[:16]
