"""loop.rewards: answer extraction, a bounded-time math verifier, and TRL rewards.

Public API::

    from rewards import verify, extract_answer, REWARDS, build_reward
    verify("\\frac{1}{2}", "0.5")        # Verdict(equal=True, reason=..., method=...)
    extract_answer("... #### 72")       # Extraction(value='72', method='gsm8k', strong=True)
    build_reward("correctness", {"timeout_s": 1.0})(prompts, completions, answer=golds)

See ``rewards.verifier`` for the numeric tolerance rules, ``rewards.equivalence``
for the set/tuple/interval order rules and ``rewards.pool`` for time bounds.

Layers, bottom up (a module imports only from lower ones; no cycles)::

    errors, normalize, extract, pool, dashboard   no project imports
    lexer -> _primary -> parse                the answer parser
    verdict, evaluate -> sympy_bridge         sympy_bridge: loaded by pool workers only
    scalar -> intervals -> equivalence -> verifier -> funcs -> rewards
    codetask (code tasks; runs programs in loop.sandbox) -> funcs

Only sympy (via ``sympy_bridge``) and mpmath (in ``evaluate.ctx``) load lazily.
"""

from .extract import Extraction, extract_answer
from .funcs import (
    REWARDS,
    AccuracyReward,
    CorrectnessReward,
    IntReward,
    SoftFormatReward,
    StrictFormatReward,
    XmlCountReward,
    build_reward,
    completion_text,
)
from .verifier import VERIFIER_VERSION, Verdict, verify

# Ready-made instances with the recipe's defaults (picklable, named for TRL).
xmlcount_reward = XmlCountReward()
soft_format_reward = SoftFormatReward()
strict_format_reward = StrictFormatReward()
int_reward = IntReward()
correctness_reward = CorrectnessReward()
accuracy_reward = AccuracyReward()

__all__ = [
    "verify",
    "Verdict",
    "VERIFIER_VERSION",
    "extract_answer",
    "Extraction",
    "REWARDS",
    "build_reward",
    "completion_text",
    "XmlCountReward",
    "SoftFormatReward",
    "StrictFormatReward",
    "IntReward",
    "CorrectnessReward",
    "AccuracyReward",
    "xmlcount_reward",
    "soft_format_reward",
    "strict_format_reward",
    "int_reward",
    "correctness_reward",
    "accuracy_reward",
]
