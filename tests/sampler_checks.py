"""Behaviour checks shared by the real-model tests of every local backend (hf, vllm).

Each check takes a constructed sampler and asserts what the loop.samplers contract
promises. Prompts are few-shot chats on which SmolLM2-135M-Instruct writes the
`<reasoning>…</reasoning><answer>…</answer>` format, and whose demonstrations
end their reasoning with "Wait, check: …", so the model keeps thinking after a
forced "Wait" and ends its thinking again (the s1 pattern).
"""
from __future__ import annotations

from loop.prompts import SYSTEM_PROMPT
from loop.samplers import SamplingParams
from loop.samplers.budget import ANSWER_OPEN, THINK_END, WAIT

DEMOS = [("What is 2 + 3?", "2 + 3 = 5\nWait, check: 5 - 3 = 2. Yes.", "5"),
         ("What is 4 * 6?", "4 * 6 = 24\nWait, check: 24 / 6 = 4. Yes.", "24")]


def chat(question: str) -> list[dict]:
    m = [{"role": "system", "content": SYSTEM_PROMPT}]
    for q, r, a in DEMOS:
        m += [{"role": "user", "content": q},
              {"role": "assistant", "content": f"<reasoning>\n{r}\n</reasoning>\n<answer>\n{a}\n</answer>"}]
    return m + [{"role": "user", "content": question}]


QUESTIONS = [chat("What is 12 + 7?"), chat("What is 9 * 3?")]


def texts(groups) -> list[list[str]]:
    return [[c.text for c in g] for g in groups]


def check_groups_and_seeds(s) -> None:
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=11)
    calls = []
    a = s.generate(QUESTIONS, p, calls.append)
    assert [len(g) for g in a] == [3, 3] and sum(calls) == 6
    assert any(len({c.text for c in g}) >= 2 for g in a), "a group's samples are drawn independently"
    for g in a:
        for c in g:
            assert c.prompt_tokens > 100 and 1 <= c.completion_tokens <= 24
            assert c.finish_reason in ("stop", "length") and c.meta == {}
            assert (c.finish_reason == "length") == (c.completion_tokens == 24)
    assert texts(s.generate(QUESTIONS, p)) == texts(a), "same seed, same completions"
    other = s.generate(QUESTIONS, SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=12))
    assert texts(other) != texts(a), "another seed, other completions"


def greedy(s, max_new_tokens: int = 48, **kw):
    return [g[0] for g in s.generate(QUESTIONS, SamplingParams(n=1, temperature=0.0,
                                                               max_new_tokens=max_new_tokens, **kw))]


def check_stop_strings(s, base) -> None:
    """`base`: greedy completions without a stop; they contain `</reasoning>`."""
    assert all(THINK_END in c.text for c in base)
    cut = greedy(s, stop=["</reasoning>"])
    for c, b in zip(cut, base):
        assert c.finish_reason == "stop" and THINK_END not in c.text
        assert c.text == b.text.split(THINK_END)[0]
        assert c.completion_tokens < b.completion_tokens


def check_budget_cap(s, budget: int = 4) -> None:
    head = greedy(s, max_new_tokens=budget)  # the first `budget` thinking tokens
    out = greedy(s, thinking_budget=budget, answer_tokens=8)
    for h, c in zip(head, out):
        assert h.finish_reason == "length" and c.meta == {"thinking_budget": budget, "waits_used": 0,
                                                          "budget_hit": True}
        forced = ("" if h.text.endswith("\n") else "\n") + THINK_END + ANSWER_OPEN
        assert c.text.startswith(h.text + forced), (h.text, c.text)
        assert budget + s._count(forced) < c.completion_tokens <= budget + s._count(forced) + 8  # + answer


def check_waits(s, base) -> None:
    """One wait: the greedy text up to its `</reasoning>`, then "Wait"; N waits on a group."""
    one = greedy(s, max_new_tokens=64, num_waits=1)
    for c, b in zip(one, base):
        assert c.meta == {"thinking_budget": None, "waits_used": 1, "budget_hit": False}
        assert c.text.startswith(b.text.split(THINK_END)[0] + WAIT)
    groups = s.generate(QUESTIONS, SamplingParams(n=3, temperature=0.8, max_new_tokens=64, seed=3, num_waits=2))
    used = [c.meta["waits_used"] for g in groups for c in g]
    assert max(used) == 2 and all(0 <= u <= 2 for u in used)
    for g in groups:
        for c in g:
            assert c.text.count(WAIT) >= c.meta["waits_used"]
            if c.meta["waits_used"] < 2:  # the model never ended its thinking again
                assert THINK_END not in c.text
