"""Curriculum bookkeeping for self-proposed problems: pure functions, no DB.

Input is per-round sampling results `(problem_id, round, n_samples, n_correct)`.
Invariants:
  * a problem's pass rate in a round is sum(n_correct) / sum(n_samples) over
    that round's rows; its history is ordered by round; "latest" is the last;
  * a problem is retired when its last `retire_after` observed rounds (its own
    consecutive observations) were all solved (rate 1) or all unsolved (rate 0);
  * it is resampled when its latest rate is inside its band, or when it is at
    0 or 1 but the streak is still shorter than `retire_after` (one all-correct
    group of 8 can be luck); otherwise (e.g. 0.1 or 0.9) it is parked;
  * its band is `bands[problem_id]` when given (the band of its source kind,
    `propose.curriculum.bands`; `source_kind` maps a stored `problems.source` to
    the kind), else the one `band`; retirement does not depend on the band;
  * learnability is the proposer's GRPO reward: 4p(1-p) for pass rate p, highest at
    one half, 0 at 0 and 1 (unsolvable and trivial problems teach nothing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Result = tuple[str, int, int, int]  # (problem_id, round, n_samples, n_correct)


@dataclass(frozen=True)
class ProblemStats:
    problem_id: str
    history: tuple[tuple[int, float], ...]  # (round, pass_rate), ascending round

    @property
    def latest(self) -> float:
        return self.history[-1][1]

    @property
    def latest_round(self) -> int:
        return self.history[-1][0]

    def streak(self) -> int:
        """How many most-recent rounds share the latest rate, if it is 0 or 1."""
        if self.latest not in (0.0, 1.0):
            return 0
        n = 0
        for _, rate in reversed(self.history):
            if rate != self.latest:
                break
            n += 1
        return n


def track(results: Iterable[Result]) -> dict[str, ProblemStats]:
    """Aggregate result rows into per-problem pass-rate histories."""
    totals: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for pid, rnd, n_samples, n_correct in results:
        if n_samples < 0 or not 0 <= n_correct <= n_samples:
            raise ValueError(f"bad counts for {pid!r} round {rnd}: {n_correct}/{n_samples}")
        cell = totals[pid][rnd]
        cell[0] += n_samples
        cell[1] += n_correct
    stats = {}
    for pid, rounds in totals.items():
        history = tuple((r, c / n) for r, (n, c) in sorted(rounds.items()) if n > 0)
        if history:  # rows with zero samples carry no information
            stats[pid] = ProblemStats(pid, history)
    return stats


Band = tuple[float, float]


def source_kind(source: str) -> str | None:
    """The `propose.sources[].kind` behind a stored `problems.source`: the procedural and self
    sources record their kind (code: `code`, the model's programs `code_self`); a file source
    records `jsonl:<file>` (kind jsonl) or `<format>:<file>` (kind file); None for anything else."""
    if source in ("arithmetic", "self", "dashboard", "code"):
        return source
    if source == "code_self":
        return "code"
    prefix, sep, _ = source.partition(":")
    return ("jsonl" if prefix == "jsonl" else "file") if sep and prefix else None


def select_for_resampling(
    stats: Mapping[str, ProblemStats],
    band: Band = (0.2, 0.8),
    retire_after: int = 3,
    bands: Mapping[str, Band] | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """(resample_ids, [(retired_id, reason)]); reasons 'always_solved' /
    'never_solved'. Resample ids come most-learnable first (rate nearest 0.5).
    `bands`: problem_id -> its own band (its source kind's), instead of `band`."""
    bands = bands or {}
    if retire_after < 1 or not all(0 <= lo <= hi <= 1 for lo, hi in [band, *bands.values()]):
        raise ValueError("need 0 <= lo <= hi <= 1 and retire_after >= 1")
    resample, retired = [], []
    for pid, st in stats.items():
        p = st.latest
        lo, hi = bands.get(pid, band)
        if p in (0.0, 1.0) and st.streak() >= retire_after:
            retired.append((pid, "always_solved" if p == 1.0 else "never_solved"))
        elif lo <= p <= hi or p in (0.0, 1.0):
            resample.append(pid)
    resample.sort(key=lambda pid: (abs(stats[pid].latest - 0.5), pid))
    return resample, sorted(retired)


def learnability(pass_rate: float) -> float:
    """Proposer reward 4p(1-p): 1 at a pass rate of one half, 0 at 0 and 1 (never or always solved:
    nothing for the solver to learn; the proposer/solver reward of verifiers' self-play environment)."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in [0, 1], got {pass_rate}")
    return 4.0 * pass_rate * (1.0 - pass_rate)


def proposer_learnability(prompts, completions, pass_rate, **kwargs) -> list[float | None]:
    """TRL reward function (`reward_funcs=[proposer_learnability]`): `pass_rate`
    is the dataset column, one value per completion; None (no verified problem
    came out of the completion) gives None, which TRL skips for this reward."""
    return [None if p is None else learnability(p) for p in pass_rate]


def band_hint(
    stats: Mapping[str, ProblemStats],
    band: tuple[float, float] = (0.2, 0.8),
    examples: Mapping[str, str] | None = None,
    max_examples: int = 2,
) -> str:
    """One or two sentences steering the proposer toward the band, optionally
    citing problem texts (`examples`: id -> text) from the side to move away from."""
    lo, hi = band
    if not stats:
        return f"Propose problems a strong student solves about {lo:.0%}-{hi:.0%} of the time."
    rates = {pid: st.latest for pid, st in stats.items()}
    easy = sorted((p for p, r in rates.items() if r > hi), key=lambda p: (-rates[p], p))
    hard = sorted((p for p, r in rates.items() if r < lo), key=lambda p: (rates[p], p))
    n = len(rates)
    summary = (
        f"Of the last {n} problems, {len(easy) / n:.0%} were too easy, "
        f"{len(hard) / n:.0%} too hard, {(n - len(easy) - len(hard)) / n:.0%} in range "
        f"(target pass rate {lo:.0%}-{hi:.0%})."
    )
    if len(easy) > len(hard):
        direction, cited = "Make new problems slightly harder than", easy
    elif len(hard) > len(easy):
        direction, cited = "Make new problems slightly easier than", hard
    else:
        direction = "Keep the difficulty similar to"
        cited = sorted((p for p in rates if p not in easy and p not in hard), key=lambda p: (abs(rates[p] - 0.5), p))
    texts = [examples[p] for p in cited if examples and p in examples][:max_examples]
    if not texts:
        return f"{summary} {direction} the recent problems."
    return f"{summary} {direction}: " + " | ".join(t.strip() for t in texts)
