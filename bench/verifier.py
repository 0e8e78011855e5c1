"""Benchmark: rewards.verify vs math-verify on the same labelled answer pairs.

Each pair is (gold, completion_text, label).  Ours runs its full pipeline
``verify(gold, extract_answer(text).value)``; math-verify runs its documented
one, ``verify(parse("$gold$"), parse(text))``.  Both run in this (main)
thread, one pair at a time, caches cleared before each timed pass, after a
short warm-up (imports, our sympy worker start).  Labels are mathematical
truth, so disagreements can be scored.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/verifier.py [--gsm8k-golds 200] [--json]

GSM8K pairs come from /work/shared/data/gsm8k/train.jsonl (gold after ####)
with formatted variants (tags, boxed, commas, $, units, wrong values);
MATH-style pairs are generated families plus a hand-written list below.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")

# Hand-written MATH-style pairs: (gold, prediction inside \boxed{}, label).
HAND = [
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("3+2\\sqrt{2}", "(1+\\sqrt{2})^2", True), ("\\sqrt{12}", "3\\sqrt{2}", False),
    ("\\pi", "3.14", False), ("\\frac{\\pi}{2}", "\\arcsin 1", True), ("2\\ln 2", "\\ln 4", True),
    ("3", "\\log_2 8", True), ("120", "5!", True), ("10", "\\binom{5}{2}", True),
    ("\\frac{1}{3}", "0.333333", True), ("\\frac{1}{3}", "0.33", False),
    ("(-\\infty, 3]", "x \\le 3", True), ("(-\\infty, -1) \\cup (2, \\infty)", "(2, \\infty) \\cup (-\\infty, -1)", True),
    ("(-\\infty, -1) \\cup (2, \\infty)", "(-\\infty, 2)", False), ("[1, 5)", "(1, 5]", False),
    ("\\mathbb{R}", "(-\\infty, \\infty)", True), ("(2, \\infty)", "x > 2", True), ("(2, \\infty)", "[2, \\infty)", False),
    ("x = 3", "3", True), ("3", "x = 3", True), ("y = 2x + 1", "y = 1 + 2x", True), ("y = 2x + 1", "y = 2x - 1", False),
    ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}", True), ("\\{1, 2, 3\\}", "\\{1, 2\\}", False),
    ("2 \\pm \\sqrt{3}", "2 + \\sqrt{3}, 2 - \\sqrt{3}", True), ("(3, -4)", "(-4, 3)", False),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", False),
    ("3+4i", "4i+3", True), ("3+4i", "3-4i", False), ("-1", "e^{i\\pi}", True), ("i", "\\sqrt{-1}", True),
    ("\\text{Tuesday}", "\\text{tuesday}", True), ("\\text{(B)}", "B", True), ("\\text{(B)}", "C", False),
    ("30^\\circ", "30", True), ("50\\%", "50", True), ("x^2-1", "(x-1)(x+1)", True), ("x^2-1", "(x-1)^2", False),
    ("|x|", "\\sqrt{x^2}", True), ("x", "\\sqrt{x^2}", False), ("\\frac{x}{2}", "0.5x", True),
    ("1", "\\sin^2 x + \\cos^2 x", False),  # False since issue 21: a numeric gold never equals an expression in x
    ("\\infty", "\\infty", True), ("\\emptyset", "\\varnothing", True),
    ("2\\frac{1}{2}", "\\frac{5}{2}", True), ("1500", "1.5 \\times 10^{3}", True), ("\\frac{1}{8}", "0.125", True),
]

# Attacks a reward-hacking policy finds (issue 21): (gold, prediction, label).
ADVERSARIAL = [
    ("100", "10²", True), ("102", "10²", False), ("\\frac{3}{2}", "1½", True), ("\\frac{11}{2}", "1½", False),
    ("5", "5 + 0.0000001x", False), ("x", "x + 10^{-30}x", False), ("\\sqrt{2}", "\\sqrt{2} + e^{-100}", False),
    ("0", "(x-0.5772156649015329)(x+1.2020569031595942)(x-1.902160583104)", False),
    ("x", "x + (x-0.5772156649015329)(x+1.2020569031595942)(x-1.902160583104)", False),
    ("\\frac{1}{3000000}", "0.0", False), ("\\frac{10^{12}}{3}", "333333000000.0", False),
    ("\\sin x", "\\sin x + e^{-100}\\cos x", False), ("2^{65536}", "4^{32768}", True),
    ("a+b+c+d+f+g+h+j+k", "k+j+h+g+f+d+c+b+a", True), ("x^2+1", "x²+1", True), ("1", "①", False),
]

# --------------------------------------------------------------------- pairs
def gsm8k_pairs(n_golds: int, seed: int) -> list[tuple[str, str, bool]]:
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    pairs = []
    for row in rows[:n_golds]:
        gold = row["answer"].split("####")[-1].strip()
        v = Fraction(gold.replace(",", ""))
        if v.denominator != 1:
            continue
        g = int(v)
        commas = f"{g:,}"
        pairs += [
            (gold, f"So the total is {g}.", True),
            (gold, f"<reasoning>\nwork\n</reasoning>\n<answer>\n{g}\n</answer>", True),
            (gold, f"Work shown.\n#### {commas}", True),
            (gold, f"The answer is $\\boxed{{{g}}}$.", True),
            (gold, f"<answer>${commas}</answer>", True),
            (gold, f"<answer>{g}.00</answer>", True),
            (gold, f"The answer is {g + 1}.", False),
            (gold, f"<answer>\n{g * 10 + 3}\n</answer>", False),
            (gold, f"\\boxed{{{g}.5}}", False),
            (gold, f"#### {-g - 2}", False),
        ]
    return pairs


def math_pairs(seed: int) -> list[tuple[str, str, bool]]:
    rng = random.Random(seed)
    out = [(g, p, lab) for g, p, lab in HAND]
    for _ in range(40):
        a, b = rng.randint(1, 30), rng.randint(2, 31)
        q = Fraction(a, b)
        if q.denominator == 1:
            continue
        gold = f"\\frac{{{q.numerator}}}{{{q.denominator}}}"
        k = rng.randint(2, 5)
        out += [(gold, f"\\dfrac{{{q.numerator * k}}}{{{q.denominator * k}}}", True),
                (gold, f"{q.numerator}/{q.denominator}", True),
                (gold, f"\\frac{{{q.denominator}}}{{{q.numerator}}}", q == 1 / q),
                (gold, f"\\frac{{{q.numerator + 1}}}{{{q.denominator}}}", False)]
        k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11])
        out += [(f"{k}\\sqrt{{{m}}}", f"\\sqrt{{{k * k * m}}}", True),
                (f"{k}\\sqrt{{{m}}}", f"{k}\\sqrt{{{m + 1}}}", False),
                (f"\\frac{{{k}\\pi}}{{{m}}}", f"\\frac{{{k}}}{{{m}}}\\pi", True),
                (f"\\frac{{{k}\\pi}}{{{m}}}", f"\\frac{{{k + 1}\\pi}}{{{m}}}", False)]
        lo, hi = sorted(rng.sample(range(-20, 20), 2))
        out += [(f"[{lo}, {hi})", f"[{lo},{hi})", True), (f"[{lo}, {hi})", f"({lo}, {hi}]", False),
                (f"\\{{{lo}, {hi}, {k}\\}}" if k not in (lo, hi) else f"\\{{{lo}, {hi}\\}}",
                 f"\\{{{k}, {hi}, {lo}\\}}" if k not in (lo, hi) else f"\\{{{hi}, {lo}\\}}", True),
                (f"({lo}, {hi})", f"({hi}, {lo})", False),
                (f"{lo}+{k}i", f"{k}i+{lo}", True), (f"{lo}+{k}i", f"{lo}-{k}i", False),
                (f"x^2+{lo + hi}x+{lo * hi}".replace("+-", "-"), f"(x+{lo})(x+{hi})".replace("+-", "-"), True),
                (f"x^2+{lo + hi}x+{lo * hi}".replace("+-", "-"), f"(x+{lo})(x+{hi + 1})".replace("+-", "-"), False)]
    return out


# --------------------------------------------------------------------- runners
def run_ours(pairs):
    from rewards import extract_answer, verify
    from rewards.parse import _parse_cached
    from rewards.verifier import clear_cache

    clear_cache()
    _parse_cached.cache_clear()
    out = []
    t0 = time.perf_counter()
    for gold, text, _ in pairs:
        out.append(verify(gold, extract_answer(text).value or "").equal)
    return out, time.perf_counter() - t0


def run_math_verify(pairs):
    from math_verify import parse, verify

    out = []
    t0 = time.perf_counter()
    for gold, text, _ in pairs:
        try:
            out.append(bool(verify(parse(f"${gold}$"), parse(text))))
        except Exception:  # noqa: BLE001 - count a crash as "not equal"
            out.append(False)
    return out, time.perf_counter() - t0


def summarize(name, pairs, ours, mv, t_ours, t_mv) -> dict:
    labels = [lab for _, _, lab in pairs]
    n = len(pairs)
    ours_right = sum(o is lab for o, lab in zip(ours, labels))
    mv_right = sum(m is lab for m, lab in zip(mv, labels))
    agree = sum((o is True) == m for o, m in zip(ours, mv))
    dis = [
        {"gold": g, "prediction": t, "label": lab, "ours": o, "math_verify": m,
         "right": "ours" if o is lab else ("math-verify" if m is lab else "neither")}
        for (g, t, lab), o, m in zip(pairs, ours, mv) if (o is True) != m
    ]
    return {
        "dataset": name, "pairs": n,
        "ours_pairs_per_s": n / t_ours, "math_verify_pairs_per_s": n / t_mv if t_mv else None,
        "speedup": t_mv / t_ours if t_mv else None,
        "ours_accuracy": ours_right / n, "math_verify_accuracy": mv_right / n,
        "ours_none": sum(o is None for o in ours), "agreement": agree / n,
        "disagreements": len(dis),
        "disagreements_right": {k: sum(d["right"] == k for d in dis) for k in ("ours", "math-verify", "neither")},
        "sample_disagreements": dis[:12],
    }


def print_rich(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 170)
    table = Table(title="rewards.verify vs math-verify (one core, cold caches)")
    for col in ("dataset", "pairs", "ours pairs/s", "math-verify pairs/s", "speedup", "ours acc",
                "math-verify acc", "agreement", "disagree: ours right / mv right / neither"):
        table.add_column(col, justify="right")
    for r in results:
        d = r["disagreements_right"]
        table.add_row(r["dataset"], str(r["pairs"]), f"{r['ours_pairs_per_s']:,.0f}",
                      f"{r['math_verify_pairs_per_s']:,.0f}", f"{r['speedup']:.1f}x",
                      f"{r['ours_accuracy']:.1%}", f"{r['math_verify_accuracy']:.1%}", f"{r['agreement']:.1%}",
                      f"{d['ours']} / {d['math-verify']} / {d['neither']}")
    console.print(table)
    for r in results:
        if not r["sample_disagreements"]:
            continue
        t = Table(title=f"{r['dataset']}: sample disagreements")
        for col in ("gold", "prediction", "label", "ours", "math-verify", "right"):
            t.add_column(col, overflow="fold")
        for d in r["sample_disagreements"]:
            t.add_row(d["gold"], d["prediction"].replace("\n", "\\n"), str(d["label"]), str(d["ours"]),
                      str(d["math_verify"]), d["right"])
        console.print(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gsm8k-golds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)

    from rewards import pool

    pool.warm()  # sympy worker start-up is a one-off, not per pair
    warm = [("1", "\\boxed{1}", True), ("\\frac{1}{2}", "$0.5$", True), ("\\sqrt{3}", "\\boxed{\\sqrt{3}}", True),
            ("(1, 2]", "\\boxed{(1,2]}", True)]
    run_ours(warm)  # imports, mpmath caches; then caches are cleared again
    run_math_verify(warm)

    results = []
    sets = (("gsm8k", gsm8k_pairs(args.gsm8k_golds, args.seed)), ("math", math_pairs(args.seed)),
            ("adversarial", ADVERSARIAL))
    for name, pairs in sets:
        pairs = [(g, t if name == "gsm8k" else f"The answer is $\\boxed{{{t}}}$.", lab) for g, t, lab in pairs]
        ours, t_ours = run_ours(pairs)
        mv, t_mv = run_math_verify(pairs)
        results.append(summarize(name, pairs, ours, mv, t_ours, t_mv))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print_rich(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
