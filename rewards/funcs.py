"""Reward functions with TRL's signature and the name -> reward registry.

Contract: every reward is called as ``reward(prompts, completions, **columns)``
and returns ``list[float | None]`` aligned with ``completions``.  Completions
are plain strings or conversational lists (``[{"role": "assistant",
"content": ...}]``).  The gold answer is the ``answer`` column.  Rewards are
picklable callable objects (module-level classes, no closures), safe to call
from threads and worker processes, and carry ``__name__`` for TRL logging.

Format shaping (the Unsloth GRPO recipe, same scores):
  ``xmlcount``      0.125 per well-placed tag, minus 0.001 per char after </answer>
  ``soft_format``   0.5 if ``<reasoning>...</reasoning> <answer>...</answer>``
  ``strict_format`` 0.5 if exactly ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n``
  ``int``           0.5 if the answer-tag content is a non-negative integer literal
The two format regexes run with DOTALL by default: the recipe's literal
regexes (``multiline=False``) give 0 to its own layout whenever the reasoning
spans several lines, which is a bug, not a scoring rule.

Correctness (1.0 / 0.0, ``None`` when the gold cannot be judged or the check
timed out; weights are the caller's business):
  ``correctness``  the single answer ``extract_answer`` picks (answer tag, then
                   boxed, ``####``, last number) checked with ``verify``.
  ``accuracy``     the first *readable* candidate anywhere extraction finds one
                   (answer tag, last number inside the tag, boxed, ``####``,
                   last number): a wordy tag like ``<answer>72 clips in all``
                   still counts.  Only unreadable candidates fall through, so
                   listing several guesses does not help.
  ``dashboard_fields``  field-wise dashboard reading (rewards.dashboard): share of
                   the gold's fields read right, numbers within a tolerance.
  A gold that is a code-task spec (``rewards.codetask``) is checked by execution instead.

Code tasks (``rewards.codetask``; 1.0 / 0.0, ``None`` when the gold is not a spec of the
reward's kind or no answer can be read from the completion):
  ``code``         any of the three kinds; ``deduction``, ``abduction``, ``induction``: one kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import codetask
from .dashboard import score as dashboard_score
from .extract import candidates, extract_answer
from .verifier import DEFAULT_TIMEOUT_S, verify

__all__ = [
    "REWARDS",
    "build_reward",
    "completion_text",
    "XmlCountReward",
    "SoftFormatReward",
    "StrictFormatReward",
    "IntReward",
    "CorrectnessReward",
    "AccuracyReward",
    "DashboardFieldsReward",
]


def completion_text(completion: Any) -> str:
    """The assistant text of a TRL completion (string or message list)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content(completion.get("content"))
    if isinstance(completion, (list, tuple)) and completion:
        msgs = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in msgs if m.get("role", "assistant") == "assistant"]
        pick = assistant or msgs
        return "".join(_content(m.get("content")) for m in pick)
    return ""


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _recipe_answer(text: str) -> str:
    """The recipe's ``extract_xml_answer``: text after the last <answer>."""
    return text.split("<answer>")[-1].split("</answer>")[0].strip()


class _Reward:
    """Base: param validation, ``__name__``, batch loop, pickling."""

    name = "reward"
    PARAMS: dict[str, type | tuple] = {}

    def __init__(self, **params: Any):
        for key, value in params.items():
            if key not in self.PARAMS:
                raise ValueError(
                    f"reward {self.name!r}: unknown param {key!r}; valid params: {sorted(self.PARAMS) or 'none'}"
                )
            if isinstance(value, bool) and self.PARAMS[key] is not bool or not isinstance(value, self.PARAMS[key]):
                raise ValueError(f"reward {self.name!r}: param {key!r} has bad value {value!r}")
            setattr(self, key, value)
        self._check()
        self.__name__ = self.name

    def _check(self) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.PARAMS)
        return f"{type(self).__name__}({args})"

    def __call__(self, prompts=None, completions=None, **columns) -> list[float | None]:
        texts = [completion_text(c) for c in (completions or [])]
        return self.score(texts, columns)

    def score(self, texts: list[str], columns: dict) -> list[float | None]:
        return [self.one(t) for t in texts]

    def one(self, text: str) -> float | None:
        raise NotImplementedError


class XmlCountReward(_Reward):
    name = "xmlcount"
    PARAMS = {"per_tag": (int, float), "trailing_penalty": (int, float)}
    per_tag = 0.125
    trailing_penalty = 0.001

    def one(self, text: str) -> float:
        score = 0.0
        if text.count("<reasoning>\n") == 1:
            score += self.per_tag
        if text.count("\n</reasoning>\n") == 1:
            score += self.per_tag
        if text.count("\n<answer>\n") == 1:
            score += self.per_tag
            score -= len(text.split("\n</answer>\n")[-1]) * self.trailing_penalty
        if text.count("\n</answer>") == 1:
            score += self.per_tag
            score -= (len(text.split("\n</answer>")[-1]) - 1) * self.trailing_penalty
        return score


class _RegexReward(_Reward):
    PARAMS = {"score_value": (int, float), "multiline": bool}
    score_value = 0.5
    multiline = True
    pattern = ""

    def _check(self) -> None:
        self._re = re.compile(self.pattern, re.DOTALL if self.multiline else 0)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_re"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._check()

    def one(self, text: str) -> float:
        return self.score_value if self._re.match(text) else 0.0


class SoftFormatReward(_RegexReward):
    name = "soft_format"
    pattern = r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>"


class StrictFormatReward(_RegexReward):
    name = "strict_format"
    pattern = r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$"


class IntReward(_Reward):
    name = "int"
    PARAMS = {"score_value": (int, float)}
    score_value = 0.5
    _digits = re.compile(r"[0-9]+")

    def one(self, text: str) -> float:
        # ASCII digits only: str.isdigit() would also accept '²' or '٣'.
        return self.score_value if self._digits.fullmatch(_recipe_answer(text)) else 0.0


def _gold_list(name: str, texts: list[str], columns: dict) -> list[Any] | None:
    """The `answer` column aligned with the completions; None when there is none."""
    golds = columns.get("answer")
    if golds is None:
        return None
    if isinstance(golds, str):
        golds = [golds] * len(texts)
    if len(golds) != len(texts):
        raise ValueError(f"reward {name!r}: {len(golds)} answers for {len(texts)} completions")
    return list(golds)


class _VerifiedReward(_Reward):
    PARAMS = {"timeout_s": (int, float)}
    timeout_s = DEFAULT_TIMEOUT_S

    def _check(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"reward {self.name!r}: param 'timeout_s' must be > 0, got {self.timeout_s!r}")

    def score(self, texts: list[str], columns: dict) -> list[float | None]:
        golds = _gold_list(self.name, texts, columns)
        if golds is None:
            return [None] * len(texts)
        return [self.judge(g, t) for g, t in zip(golds, texts, strict=True)]

    def judge(self, gold: Any, text: str) -> float | None:
        raise NotImplementedError

    @staticmethod
    def _reward(equal: bool | None) -> float | None:
        return None if equal is None else (1.0 if equal else 0.0)


def gold_answer(gold: Any) -> str:
    """The gold answer as text; a GSM8K gold string (`<solution> #### 72`, as TRL users pass the
    dataset's `answer` column) gives what follows its last `####`."""
    text = str(gold)
    return text.rsplit("####", 1)[1].strip() if "####" in text else text


class CorrectnessReward(_VerifiedReward):
    name = "correctness"

    def judge(self, gold: Any, text: str) -> float | None:
        if codetask.read_spec(gold) is not None:  # a code task: checked by execution (rewards.codetask)
            return codetask.judge(gold, text)
        ext = extract_answer(text)
        return self._reward(verify(gold_answer(gold), ext.value or "", timeout_s=self.timeout_s).equal)


class AccuracyReward(_VerifiedReward):
    name = "accuracy"
    PARAMS = {"timeout_s": (int, float), "max_candidates": int}
    max_candidates = 5

    def judge(self, gold: Any, text: str) -> float | None:
        gold = gold_answer(gold)
        verdict = verify(gold, "", timeout_s=self.timeout_s)
        for ext in candidates(text)[: self.max_candidates]:
            verdict = verify(gold, ext.value or "", timeout_s=self.timeout_s)
            if verdict.method != "unreadable":
                break
        return self._reward(verdict.equal)


class DashboardFieldsReward(_Reward):
    """Dashboard readings (rewards.dashboard): the mean of per-field matches against the gold
    `answer` lines; None when the completion has no readable field."""

    name = "dashboard_fields"

    def score(self, texts: list[str], columns: dict) -> list[float | None]:
        golds = columns.get("answer") or [None] * len(texts)
        return [None if g is None else dashboard_score(str(g), t) for t, g in zip(texts, golds)]


class CodeReward(_Reward):
    """A code task checked by execution (``rewards.codetask``); None for a gold of another kind."""

    name = "code"
    task: str | None = None  # None: any of the three kinds

    def score(self, texts: list[str], columns: dict) -> list[float | None]:
        golds = _gold_list(self.name, texts, columns) or [None] * len(texts)
        return [codetask.judge(g, t, self.task) for g, t in zip(golds, texts, strict=True)]


class DeductionReward(CodeReward):
    name = task = "deduction"


class AbductionReward(CodeReward):
    name = task = "abduction"


class InductionReward(CodeReward):
    name = task = "induction"


REWARDS: dict[str, type[_Reward]] = {
    cls.name: cls
    for cls in (
        XmlCountReward,
        SoftFormatReward,
        StrictFormatReward,
        IntReward,
        CorrectnessReward,
        AccuracyReward,
        DashboardFieldsReward,
        CodeReward,
        DeductionReward,
        AbductionReward,
        InductionReward,
    )
}


def build_reward(name: str, params: dict | None = None) -> Callable[..., list[float | None]]:
    """Instantiate a registered reward; ValueError names the bad name/param."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid names: {', '.join(sorted(REWARDS))}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"reward {name!r}: params must be a dict, got {type(params).__name__}")
    return REWARDS[name](**(params or {}))
