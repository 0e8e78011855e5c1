"""Budget forcing (loop.samplers.budget) driven by a scripted fake backend: the phase
logic, token accounting and seeds, independent of any model; plus its config."""
import pytest

from loop.config import ConfigError, load_config
from loop.samplers import SamplingParams
from loop.samplers.budget import ANSWER_OPEN, THINK_END, WAIT, Piece, cut_at_stop, group_seed, phase_seed, run_budgeted


class Fake:
    """A model that thinks `thought` tokens ("t" each), writes `</reasoning>` (1 token) unless
    that is a stop string, then answers `answer` tokens ("a" each) and stops at EOS."""

    def __init__(self, thought: int = 3, answer: int = 2, ends_thinking: bool = True):
        self.thought, self.answer, self.ends = thought, answer, ends_thinking
        self.calls: list[tuple] = []

    def piece(self, max_tokens: int, stop: list[str], prompt: str = "") -> Piece:
        if THINK_END not in prompt:  # still thinking
            k = min(self.thought, max_tokens)
            if k < self.thought or not self.ends:
                return Piece("t" * k, k, "length")
            if THINK_END in stop:
                return Piece("t" * k, k, "stop", THINK_END)
            rest = min(self.answer, max_tokens - k - 1)
            return Piece("t" * k + THINK_END + "a" * rest, k + 1 + rest, "stop" if rest == self.answer else "length")
        k = min(self.answer, max_tokens)
        return Piece("a" * k, k, "stop" if k == self.answer else "length")

    def first(self, prompts, n):
        def call(max_tokens, stop, progress):
            self.calls.append(("first", max_tokens, tuple(stop)))
            if progress:  # given only without budget forcing: the group call reports then
                progress(n * len(prompts))
            return [[self.piece(max_tokens, stop) for _ in range(n)] for _ in prompts]
        return call

    def cont(self, reqs, phase):
        self.calls.append(("cont", phase, [(r.max_tokens, tuple(r.stop), r.seed, r.key) for r in reqs]))
        return [self.piece(r.max_tokens, r.stop, r.prompt) for r in reqs]


def run(fake: Fake, params: SamplingParams, prompts=("P0:", "P1:"), progress=None):
    return run_budgeted(list(prompts), [5] * len(prompts), params, fake.first(prompts, params.n), fake.cont,
                        count=len, progress=progress)


def test_no_budget_is_one_group_call():
    fake, seen = Fake(), []
    out = run(fake, SamplingParams(n=2, max_new_tokens=10), progress=seen.append)
    assert fake.calls == [("first", 10, ())] and seen == [4]
    c = out[0][0]
    assert (c.text, c.completion_tokens, c.finish_reason, c.meta) == ("ttt" + THINK_END + "aa", 6, "stop", {})


def test_waits_replace_the_end_of_thinking_n_times():
    fake, seen = Fake(thought=3, answer=2), []
    out = run(fake, SamplingParams(n=2, max_new_tokens=100, num_waits=3), progress=seen.append)
    assert sum(seen) == 4
    c = out[1][1]
    assert c.text == "ttt" + WAIT + "ttt" + WAIT + "ttt" + WAIT + "ttt" + THINK_END + "aa"
    assert c.meta == {"thinking_budget": None, "waits_used": 3, "budget_hit": False}
    assert c.completion_tokens == 4 * 3 + 1 + 2 + 3 * len(WAIT)  # forced strings count too (count=len here)
    # after the last wait, `</reasoning>` is no longer a stop: the model ends thinking and answers freely
    assert [x[2][0][1] for x in fake.calls[1:]] == [(THINK_END,), (THINK_END,), ()]


def test_budget_cap_forces_the_answer():
    fake = Fake(thought=50, answer=2)
    out = run(fake, SamplingParams(n=1, max_new_tokens=100, thinking_budget=8, answer_tokens=5))
    c = out[0][0]
    assert c.text == "t" * 8 + "\n" + THINK_END + ANSWER_OPEN + "aa"
    assert c.meta == {"thinking_budget": 8, "waits_used": 0, "budget_hit": True}
    assert fake.calls[0] == ("first", 8, (THINK_END,))
    assert fake.calls[1][2][0][:2] == (5, ())  # the answer gets answer_tokens, not the rest of max_new_tokens
    assert c.finish_reason == "stop"


def test_budget_spans_waits():
    """Thinking tokens add up across waits; the cap applies to their sum."""
    fake = Fake(thought=3, answer=2)
    out = run(fake, SamplingParams(n=1, max_new_tokens=100, thinking_budget=7, num_waits=5))
    c = out[0][0]
    assert c.text == "ttt" + WAIT + "ttt" + WAIT + "t\n" + THINK_END + ANSWER_OPEN + "aa"
    assert c.meta == {"thinking_budget": 7, "waits_used": 2, "budget_hit": True}


def test_natural_end_within_budget_answers_with_the_rest_of_max_new_tokens():
    fake = Fake(thought=3, answer=50)
    c = run(fake, SamplingParams(n=1, max_new_tokens=20, thinking_budget=10))[0][0]
    assert c.meta["budget_hit"] is False and c.text == "ttt" + THINK_END + "a" * 17
    assert c.finish_reason == "length" and fake.calls[1][2][0][0] == 17


def test_max_new_tokens_before_the_budget_is_plain_length():
    fake = Fake(thought=50)
    c = run(fake, SamplingParams(n=1, max_new_tokens=6, thinking_budget=10))[0][0]
    assert (c.text, c.finish_reason, c.meta["budget_hit"]) == ("t" * 6, "length", False)
    assert len(fake.calls) == 1


def test_a_user_stop_of_reasoning_end_is_not_a_wait_trigger():
    fake = Fake(thought=3)
    c = run(fake, SamplingParams(n=1, max_new_tokens=20, stop=[THINK_END]))[0][0]
    assert (c.text, c.finish_reason) == ("ttt", "stop") and len(fake.calls) == 1


def test_continuation_seeds_depend_on_prompt_sample_and_phase_only():
    fake = Fake(thought=3)
    run(fake, SamplingParams(n=2, max_new_tokens=100, num_waits=1, seed=9))
    seeds = {r[3]: r[2] for r in fake.calls[1][2]}
    assert seeds == {(i, j): phase_seed(9, i, j, 1) for i in range(2) for j in range(2)}
    assert len(set(seeds.values())) == 4
    first_phase = {group_seed(9, i) + j for i in range(2) for j in range(2)}  # vLLM: group seed + j
    assert not first_phase & set(seeds.values())
    assert phase_seed(9, 0, 0, 1) != phase_seed(10, 0, 0, 1) != phase_seed(9, 0, 0, 2)


def test_bad_budget():
    with pytest.raises(ValueError, match="thinking_budget"):
        run(Fake(), SamplingParams(n=1, thinking_budget=0))


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("a</x>b</y>c", ["</y>", "</x>"]) == ("a", "</x>")
    assert cut_at_stop("abc", ["z"]) == ("abc", None)
    assert cut_at_stop("abc", []) == ("abc", None)


def test_budget_config_reaches_sampling_params(tmp_path):
    cfg = load_config(None, ["sample.budget.thinking_tokens=64", "sample.budget.waits=2"])
    assert (cfg.sample.budget.thinking_tokens, cfg.sample.budget.waits, cfg.sample.budget.answer_tokens) == (64, 2, 32)
    with pytest.raises(ConfigError, match="sample.budget.thinking_tokens"):
        load_config(None, ["sample.budget.thinking_tokens=0"])
    with pytest.raises(ConfigError, match="sample.budget.waits"):
        load_config(None, ["sample.budget.waits=-1"])
    p = SamplingParams(thinking_budget=64, num_waits=2)
    assert p.as_dict()["thinking_budget"] == 64 and p.as_dict()["num_waits"] == 2
    assert "thinking_budget" not in SamplingParams().as_dict()  # unbudgeted runs store what they did before


def test_openai_config_defaults_and_validation():
    cfg = load_config(None, [])
    assert cfg.sample.openai.api_key_env == "OPENAI_API_KEY" and cfg.sample.openai.max_retries >= 1
    with pytest.raises(ConfigError, match="sample.openai.timeout_s"):
        load_config(None, ["sample.openai.timeout_s=0"])
    with pytest.raises(ConfigError, match="sample.openai.nope: unknown key"):
        load_config(None, ["sample.openai.nope=1"])


@pytest.mark.parametrize("seed", [
    0,                 # the smallest
    2 ** 32 - 1,       # the largest round seed (Context.round_seed: 8 hex digits)
    2 ** 64 + 12345,   # anything a user puts in run.seed arithmetic
])
def test_seeds_fit_a_torch_generator(seed):
    """vLLM seeds a torch.Generator with group seed + j (and phases add up to 2**20):
    all must stay below 2**63 or manual_seed overflows ("Overflow when unpacking long long")."""
    import torch
    top = max(phase_seed(seed, 10_000, 1023, 1000), group_seed(seed, 10_000) + 1024)
    assert 0 <= group_seed(seed, 0) and top < 2 ** 63
    torch.Generator().manual_seed(top)
