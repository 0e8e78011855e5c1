"""Known-input tables for loop.problems.dedup."""
import pytest

from loop.problems.dedup import NearDupIndex, NgramIndex, decontaminate, jaccard, shingles, text_hash
from loop.problems.dedup import normalize_text as normalize

TRAIN = ("A train travels 120 km in 2 hours and then 180 km in 3 hours. What is the "
         "average speed of the train over the whole trip, in km per hour?")
EVAL_LONG = ("Natalia sold clips to 48 of her friends in April, and then she sold half as "
             "many clips in May. How many clips did Natalia sell altogether in April and May?")


@pytest.mark.parametrize("raw,expected", [
    ("  What is  2+3?  ", "what is 2 + 3"),                 # whitespace, case, '?' dropped
    ("WHAT IS 2 + 3 ?", "what is 2 + 3"),                   # same problem, spaced operators
    ("What is 2-3?", "what is 2 - 3"),                      # operators are kept: not 2+3
    ("Ｗｈａｔ ｉｓ ２＋３？", "what is 2 + 3"),            # full-width -> NFKC
    ("5 − 2 × 3 ÷ 4", "5 - 2 * 3 / 4"),                     # unicode minus/times/divide
    ("A two-digit number; 3.5 apples!", "a two digit number 3.5 apples"),  # hyphen, decimals
    ("Ünïcödé façade", "ünïcödé façade"),                   # accents kept, casefolded
    ("x_1 = 'a'", "x 1 = a"),                               # underscores and quotes dropped
    ("", ""),
])
def test_normalize_table(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("a,b,same", [
    ("What is 2+3?", "what is 2 + 3", True),                # exact dup after normalization
    ("What is 2+3?", "What is 2-3?", False),                # one operator differs
    ("Café", "Cafe\u0301", True),                           # composed vs decomposed é (NFKC)
    ("Find x.", "Find y.", False),
])
def test_text_hash_table(a, b, same):
    assert (text_hash(a) == text_hash(b)) is same
    assert len(text_hash(a)) == 16 and int(text_hash(a), 16) >= 0


def test_text_hash_is_stable_across_processes():
    # sha256 of "what is 2 + 3": pinned so a change in normalization is noticed
    import hashlib
    assert text_hash("What is 2+3?") == hashlib.sha256(b"what is 2 + 3").hexdigest()[:16]


# (text added, query text, expected near-dup, comment)
NEAR_DUP = [
    (TRAIN, TRAIN, True),                                               # identical
    (TRAIN, TRAIN.upper().replace(" ", "  "), True),                    # case/whitespace only
    (TRAIN, TRAIN.replace("whole", "entire").replace("hours and", "hours, and"), True),  # reworded
    (TRAIN, "A car travels 120 km in 2 hours. How many hours does it take to travel "
            "180 km at the same speed?", False),                        # shares numbers, other problem
    (TRAIN, TRAIN.replace("120", "150").replace("180", "210").replace("2 hours", "4 hours"),
     False),                                                             # same template, new numbers
    (TRAIN, "What is 2 + 3?", False),                                   # unrelated short text
    ("What is 2 + 3?", "what is 2+3", True),                            # short exact dup
]


@pytest.mark.parametrize("added,query,expected", NEAR_DUP)
def test_near_dup_table(added, query, expected):
    index = NearDupIndex(threshold=0.8)
    index.add("p1", added)
    assert index.is_near_duplicate(query) is expected
    hits = index.query(query)
    assert all(j >= 0.8 for _, j in hits)
    if expected:
        assert hits[0][0] == "p1"


def test_near_dup_scores_are_exact_jaccard_best_first():
    index = NearDupIndex(threshold=0.5)
    reworded = TRAIN.replace("whole", "entire")
    index.add("same", TRAIN)
    index.add("reworded", reworded)
    index.add("other", EVAL_LONG)
    hits = index.query(TRAIN)
    assert [h[0] for h in hits] == ["same", "reworded"]
    assert hits[0][1] == 1.0
    assert hits[1][1] == pytest.approx(jaccard(shingles(TRAIN), shingles(reworded)))


def _word(i: int) -> str:
    """Distinct letters-only words (digits would split into extra tokens)."""
    return "".join(chr(97 + (i // 26**p) % 26) for p in range(3))


def test_near_dup_recall_and_precision_around_threshold():
    # 60 distinct words; replacing k words 5 apart changes 3k of the 58 word-3-grams,
    # so the true Jaccard is (58-3k)/(58+3k): k=0..2 >= 0.81, k=3.. < 0.74.
    index = NearDupIndex(threshold=0.8, seed=1)
    found, true_j = {}, {}
    for k in range(7):
        base = [_word(100 * k + i) for i in range(60)]     # own vocabulary per k
        index.add(k, " ".join(base))
        changed = base[:]
        for i in range(k):
            changed[10 + 5 * i] = "zz" + _word(i)
        true_j[k] = jaccard(shingles(" ".join(base)), shingles(" ".join(changed)))
        found[k] = index.is_near_duplicate(" ".join(changed))
    assert [round(true_j[k], 3) for k in range(3)] == [1.0, 0.902, 0.812]
    assert found == {0: True, 1: True, 2: True, 3: False, 4: False, 5: False, 6: False}


def test_near_dup_index_is_seeded_and_rejects_duplicate_ids():
    a, b = NearDupIndex(seed=3), NearDupIndex(seed=3)
    sh = shingles(TRAIN)
    assert (a.signature(sh) == b.signature(sh)).all()
    a.add("x", TRAIN)
    with pytest.raises(ValueError):
        a.add("x", "anything")


def test_char_shingles_option():
    index = NearDupIndex(threshold=0.8, kind="char", n=5)
    index.add(1, "Compute the sum of the first 100 positive integers.")
    assert index.is_near_duplicate("compute the sum of the first 100 positive integers")
    assert not index.is_near_duplicate("Compute the product of 7 and 9.")


# (eval texts, candidate, expected overlap count, comment)
NGRAM = [
    ([EVAL_LONG], EVAL_LONG, 19),                                     # verbatim: 31 tokens, all 19 13-grams
    ([EVAL_LONG], "Solve this: " + EVAL_LONG.split(". ")[0] + ". Give the answer.", 8),  # 20-token sentence embedded
    ([EVAL_LONG], "Natalia sold clips to 48 friends. How many clips in total?", 0),  # shares words, no 13-gram
    ([EVAL_LONG], EVAL_LONG.upper().replace(",", " ;"), 19),         # case/punctuation don't hide it
    (["What is 7 * 8?"], "Quick one: what is 7*8? Answer briefly.", 1),  # short eval text, contained
    (["What is 7 * 8?"], "What is 7 * 9?", 0),                        # short eval text, not contained
]


@pytest.mark.parametrize("evals,candidate,count", NGRAM)
def test_ngram_overlap_table(evals, candidate, count):
    index = NgramIndex(evals, n=13)
    assert index.count(candidate) == count
    assert index.overlaps(candidate) is (count > 0)


def test_decontaminate_keeps_clean_and_drops_with_reason():
    problems = [
        {"problem": EVAL_LONG.lower(), "id": "dup"},                   # exact after normalization
        {"problem": "Bonus question. " + EVAL_LONG, "id": "overlap"},  # contains the eval text
        {"problem": TRAIN, "id": "clean"},
    ]
    kept, dropped = decontaminate(problems, [EVAL_LONG, "What is 7 * 8?"])
    assert [p["id"] for p in kept] == ["clean"]
    assert [(p["id"], why) for p, why in dropped] == [("dup", "exact_match"),
                                                       ("overlap", "ngram_overlap:19")]


def test_decontaminate_plain_strings_and_custom_n():
    kept, dropped = decontaminate(["a b c d e", "f g h"], ["x a b c y"], n=3)
    assert kept == ["f g h"] and dropped == [("a b c d e", "ngram_overlap:1")]
