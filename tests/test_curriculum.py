"""Known-input tables for loop.problems.curriculum."""
import pytest

from loop.problems.curriculum import (
    ProblemStats,
    band_hint,
    learnability,
    proposer_learnability,
    select_for_resampling,
    source_kind,
    track,
)


def test_track_aggregates_rounds_and_orders_history():
    rows = [
        ("a", 2, 8, 4),      # round 2 listed first: history is still ordered by round
        ("a", 1, 8, 8),
        ("a", 2, 8, 0),      # two groups in one round are pooled: 4/16
        ("b", 1, 4, 1),
        ("c", 1, 0, 0),      # zero samples: no information, problem absent
    ]
    stats = track(rows)
    assert stats["a"].history == ((1, 1.0), (2, 0.25))
    assert (stats["a"].latest, stats["a"].latest_round) == (0.25, 2)
    assert stats["b"].history == ((1, 0.25),)
    assert "c" not in stats


@pytest.mark.parametrize("row", [("a", 1, 4, 5), ("a", 1, 4, -1), ("a", 1, -1, 0)])
def test_track_rejects_impossible_counts(row):
    with pytest.raises(ValueError):
        track([row])


def _stats(**histories):
    return {pid: ProblemStats(pid, tuple(enumerate(rates, 1))) for pid, rates in histories.items()}


@pytest.mark.parametrize("rates,streak", [
    ((1.0, 1.0, 1.0), 3),
    ((0.5, 1.0, 1.0), 2),
    ((0.0, 1.0), 1),          # a flip from 0 to 1 restarts the streak
    ((1.0, 0.5), 0),          # latest is not extreme
])
def test_streak_table(rates, streak):
    assert _stats(p=rates)["p"].streak() == streak


def test_select_for_resampling_table():
    stats = _stats(
        mid=(0.5,),                 # in band -> resample, most learnable first
        edge_lo=(0.2,),             # band is inclusive
        edge_hi=(0.875,),           # just above band, not extreme -> parked
        low=(0.125,),               # below band, not extreme -> parked
        easy_new=(1.0,),            # solved once: streak 1 < 3 -> resample to confirm
        easy_old=(1.0, 1.0, 1.0),   # solved 3 rounds running -> retired
        hard_old=(0.0, 0.0, 0.0, 0.0),  # never solved for 4 rounds -> retired
        came_back=(0.0, 0.0, 0.5),  # was hard, now in band -> resample
        flipped=(0.0, 1.0, 1.0),    # streak of 1.0 is only 2 -> resample
    )
    resample, retired = select_for_resampling(stats, band=(0.2, 0.8), retire_after=3)
    assert resample == ["came_back", "mid", "edge_lo", "easy_new", "flipped"]
    assert retired == [("easy_old", "always_solved"), ("hard_old", "never_solved")]


def test_select_retire_after_one_and_custom_band():
    stats = _stats(a=(1.0,), b=(0.9,), c=(0.0,))
    resample, retired = select_for_resampling(stats, band=(0.5, 0.95), retire_after=1)
    assert resample == ["b"]
    assert retired == [("a", "always_solved"), ("c", "never_solved")]


@pytest.mark.parametrize("pid, rate, bands, resampled", [
    ("code_mid", 0.875, {"code_mid": (0.1, 0.9)}, True),     # parked under the default band, inside its kind's
    ("self_mid", 0.25, {"self_mid": (0.3, 0.7)}, False),     # in the default band, below its kind's: parked
    ("other", 0.875, {"code_mid": (0.1, 0.9)}, False),       # no band of its own: the default one
    ("edge", 0.3, {"edge": (0.3, 0.7)}, True),               # a kind's band is inclusive too
    ("solved", 1.0, {"solved": (0.3, 0.7)}, True),           # a short 0/1 streak is sampled again, any band
])
def test_select_per_kind_band_table(pid, rate, bands, resampled):
    resample, retired = select_for_resampling(_stats(**{pid: (rate,)}), band=(0.2, 0.8), retire_after=3, bands=bands)
    assert (pid in resample) == resampled and retired == []


def test_retirement_ignores_the_per_kind_band():
    stats = _stats(easy=(1.0, 1.0, 1.0), hard=(0.0, 0.0, 0.0))
    bands = {"easy": (0.0, 1.0), "hard": (0.0, 1.0)}  # a band holding 0 and 1 still retires the streaks
    assert select_for_resampling(stats, retire_after=3, bands=bands) == (
        [], [("easy", "always_solved"), ("hard", "never_solved")])


@pytest.mark.parametrize("source, kind", [
    ("arithmetic", "arithmetic"), ("self", "self"), ("dashboard", "dashboard"),
    ("code", "code"), ("code_self", "code"),                   # procedural and model-written programs: code
    ("jsonl:train.jsonl", "jsonl"), ("gsm8k:data.csv", "file"), ("math:x.parquet", "file"),
    ("mystery", None), (":x", None),                          # nothing the sources write
])
def test_source_kind_table(source, kind):
    assert source_kind(source) == kind


@pytest.mark.parametrize("band,k", [((0.8, 0.2), 3), ((-0.1, 0.5), 3), ((0.2, 0.8), 0)])
def test_select_rejects_bad_arguments(band, k):
    with pytest.raises(ValueError):
        select_for_resampling({}, band=band, retire_after=k)
    with pytest.raises(ValueError):  # a per-kind band is checked the same way
        select_for_resampling({}, band=(0.2, 0.8), retire_after=k, bands={"p": band})


@pytest.mark.parametrize("p,reward", [
    (0.0, 0.0),       # never solved: no signal
    (1.0, 0.0),       # always solved: no signal
    (0.5, 1.0),       # solved half the time: the most to learn
    (0.25, 0.75),     # hard but solvable: high reward
    (0.75, 0.75),     # symmetric around one half
    (0.875, 0.4375),  # nearly trivial: smaller reward
    (0.125, 0.4375),  # nearly never solved: as small
])
def test_learnability_table(p, reward):
    assert learnability(p) == pytest.approx(reward)


@pytest.mark.parametrize("p", [-0.01, 1.01])
def test_learnability_rejects_out_of_range(p):
    with pytest.raises(ValueError):
        learnability(p)


def test_proposer_learnability_trl_signature():
    prompts = ["propose"] * 4
    completions = ["p1", "p2", "unparseable", "p4"]
    rewards = proposer_learnability(prompts, completions, pass_rate=[0.25, 1.0, None, 0.0],
                                    trainer_state=None)
    assert rewards == [0.75, 0.0, None, 0.0]


def test_band_hint_without_data():
    assert band_hint({}) == "Propose problems a strong student solves about 20%-80% of the time."


@pytest.mark.parametrize("latest,expected", [
    # mostly too easy -> harder, cites the easiest first
    ({"a": 1.0, "b": 0.9, "c": 0.5},
     "Of the last 3 problems, 67% were too easy, 0% too hard, 33% in range (target pass rate "
     "20%-80%). Make new problems slightly harder than: A | B"),
    # mostly too hard -> easier, cites the hardest first
    ({"a": 0.0, "b": 0.1, "c": 0.9},
     "Of the last 3 problems, 33% were too easy, 67% too hard, 0% in range (target pass rate "
     "20%-80%). Make new problems slightly easier than: A | B"),
    # balanced -> keep, cites in-band problems nearest 0.5
    ({"a": 0.4, "b": 0.7, "c": 0.0, "d": 1.0},
     "Of the last 4 problems, 25% were too easy, 25% too hard, 50% in range (target pass rate "
     "20%-80%). Keep the difficulty similar to: A | B"),
])
def test_band_hint_table(latest, expected):
    stats = _stats(**{pid: (rate,) for pid, rate in latest.items()})
    texts = {pid: pid.upper() for pid in latest}
    assert band_hint(stats, (0.2, 0.8), examples=texts) == expected


def test_band_hint_without_examples_is_generic():
    stats = _stats(a=(1.0,))
    assert band_hint(stats).endswith("Make new problems slightly harder than the recent problems.")
