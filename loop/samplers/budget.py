"""Budget forcing (s1, "simple test-time scaling") as multi-phase generation.

Shared by the hf and vllm backends. Thinking is everything the model writes
before `</reasoning>`. With `params.thinking_budget = T` and `params.num_waits = N`:

- each thinking phase generates with `stop = ["</reasoning>", *params.stop]` and
  `max_tokens = min(T - thinking tokens so far, max_new_tokens - tokens so far)`;
- when the model ends its thinking (`</reasoning>`) while fewer than N waits were
  used, the delimiter is cut, "Wait" is appended, and thinking continues;
- otherwise the delimiter is kept and the answer follows freely (up to
  `max_new_tokens` in all);
- when T thinking tokens are spent, `</reasoning>` and `\\n<answer>\\n` are forced
  and the answer gets `params.answer_tokens` more tokens (beyond max_new_tokens);
- EOS or a user stop string ends the completion in any phase.

Each continuation restarts from prompt + text so far, as s1 does. A backend
supplies `first(max_tokens, stop, progress) -> [[Piece] * n per prompt]` (its
group call) and `cont([Request], phase) -> [Piece]` (single continuations); `run_budgeted`
drives the phases and returns Completions whose meta records
`{"thinking_budget", "waits_used", "budget_hit"}`. Seeds of continuations
depend only on (seed, prompt index, sample index, phase), never on batching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from loop import cancel
from loop.samplers import Completion, SamplingParams

THINK_END = "</reasoning>"
ANSWER_OPEN = "\n<answer>\n"
WAIT = "Wait"
_SEED_MOD = 2**42  # x 2**20 below: seeds stay < 2**62, as torch.Generator.manual_seed needs (< 2**63)


@dataclass
class Piece:
    """One generated segment, as a backend returns it."""

    text: str  # without the stop string that ended it
    tokens: int  # generated tokens (EOS excluded)
    finish: str  # "stop" (EOS or a stop string) | "length"
    stop: str | None = None  # the stop string that ended it; None for EOS/length


@dataclass
class Request:
    """One continuation of one sample."""

    prompt: str  # rendered chat prompt + completion so far
    max_tokens: int
    stop: list[str]
    seed: int
    key: tuple[int, int] = (0, 0)  # (prompt index, sample index)


def group_seed(seed: int, prompt_index: int) -> int:
    """Seed of a prompt's group request; sample j of the group uses group_seed + j."""
    return ((seed * 1_000_003 + prompt_index) % _SEED_MOD) * 1_048_576


def phase_seed(seed: int, prompt_index: int, sample_index: int, phase: int) -> int:
    return group_seed(seed, prompt_index) + phase * 1024 + sample_index % 1024


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """Text up to the earliest stop string, and that string (None if none occurs)."""
    best, which = len(text), None
    for s in stops:
        k = text.find(s) if s else -1
        if 0 <= k < best:
            best, which = k, s
    return text[:best], which


@dataclass
class Trace:
    """The state of one sample across phases."""

    params: SamplingParams
    prompt: str
    count: Callable[[str], int]  # tokens of a forced string
    text: str = ""
    tokens: int = 0  # generated + forced
    generated: int = 0
    thinking: int = 0
    waits: int = 0
    hit: bool = False
    answering: bool = False
    done: bool = False
    finish: str = "length"
    log: list[str] = field(default_factory=list)

    def limits(self) -> tuple[int, list[str]]:
        """(max_tokens, stop) of this sample's next phase; max_tokens may be 0."""
        p = self.params
        if self.answering:
            left = p.answer_tokens if self.hit else p.max_new_tokens - self.generated
            return left, list(p.stop)
        left = p.max_new_tokens - self.generated
        if p.thinking_budget is not None:
            left = min(left, p.thinking_budget - self.thinking)
        return left, ([THINK_END] if self._watching() else []) + list(p.stop)

    def _watching(self) -> bool:
        """Is `</reasoning>` ending this phase a budget event (not a user stop)?"""
        p = self.params
        return not self.answering and (p.thinking_budget is not None or self.waits < p.num_waits)

    def feed(self, piece: Piece) -> None:
        self.text += piece.text
        self.tokens += piece.tokens
        self.generated += piece.tokens
        watching = self._watching()
        if not self.answering:
            self.thinking += piece.tokens
        if piece.stop == THINK_END and watching:
            self._end_of_thinking()
        elif piece.finish == "stop" or self.answering:
            self._finish(piece.finish)
        else:
            self._out_of_tokens()

    def _force(self, s: str) -> None:
        self.text += s
        self.tokens += self.count(s)

    def _end_of_thinking(self) -> None:
        if self.waits < self.params.num_waits:
            self.waits += 1
            self._force(WAIT)
        else:
            self._force(THINK_END)
            self.answering = True
        self._settle()

    def _out_of_tokens(self) -> None:
        p = self.params
        if p.thinking_budget is not None and self.thinking >= p.thinking_budget:
            self.hit = True
            self._force(("" if self.text.endswith("\n") else "\n") + THINK_END + ANSWER_OPEN)
            self.answering = True
            self._settle()
        else:
            self._finish("length")

    def _settle(self) -> None:
        """A phase with nothing left to generate ends the sample (or forces the answer)."""
        if self.limits()[0] <= 0:
            self._out_of_tokens() if not self.answering else self._finish("length")

    def _finish(self, reason: str) -> None:
        self.done, self.finish = True, reason

    def completion(self, prompt_tokens: int) -> Completion:
        meta = {}
        if self.params.budgeted:
            meta = {"thinking_budget": self.params.thinking_budget, "waits_used": self.waits, "budget_hit": self.hit}
        return Completion(
            text=self.text,
            prompt_tokens=prompt_tokens,
            completion_tokens=self.tokens,
            finish_reason=self.finish,
            meta=meta,
        )


def run_budgeted(
    prompts: list[str],
    prompt_tokens: list[int],
    params: SamplingParams,
    first: Callable[[int, list[str], Callable | None], list[list[Piece]]],
    cont: Callable[[list[Request], int], list[Piece]],
    count: Callable[[str], int],
    progress: Callable[[int], None] | None = None,
) -> list[list[Completion]]:
    """Drive all phases; `first` is the backend's group call, `cont(requests, phase)` the rest.

    Without budget forcing this is one `first` call, which reports progress itself."""
    if params.thinking_budget is not None and params.thinking_budget < 1:
        raise ValueError(f"thinking_budget must be >= 1, got {params.thinking_budget}")
    traces = [[Trace(params, p, count) for _ in range(params.n)] for p in prompts]
    max_tokens, stop = traces[0][0].limits() if traces else (0, [])
    for group, pieces in zip(traces, first(max_tokens, stop, None if params.budgeted else progress)):
        for t, piece in zip(group, pieces):
            t.feed(piece)
    flat = [(i, j, t) for i, g in enumerate(traces) for j, t in enumerate(g)]
    if params.budgeted:
        _report(progress, sum(t.done for _, _, t in flat))
    phase = 1
    while pending := [(i, j, t) for i, j, t in flat if not t.done]:
        cancel.check()  # each phase is a full generate call
        reqs = []
        for i, j, t in pending:
            mt, st = t.limits()
            reqs.append(Request(t.prompt + t.text, mt, st, phase_seed(params.seed, i, j, phase), (i, j)))
        for (_, _, t), piece in zip(pending, cont(reqs, phase)):
            t.feed(piece)
        _report(progress, sum(t.done for _, _, t in pending))
        phase += 1
    return [[t.completion(pt) for t in g] for g, pt in zip(traces, prompt_tokens)]


def _report(progress: Callable[[int], None] | None, k: int) -> None:
    if progress and k:
        progress(k)
