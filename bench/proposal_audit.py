"""Audit of the agreement filter on the embedded model: how often is a self-proposed problem's
reference answer (its program's output) right, before and after `agreement: majority`?

Collection: configs/self.yaml's `kind: self` source (SmolLM2-135M-Instruct, round-1 few-shot pool:
procedural problems + starters, no steering hint) on a fresh store; each chunk is one call of
the proposer's `generate` (real sampler, real gate with the sandbox, real `Agreement.check`) with
its own seed from `run.seed` (--seed), until --kept proposals were kept by the filter, --passed
passed the gate, or --minutes ran out. ONE gate spans all chunks, so dedup covers the whole audit.
Every gate-passed proposal goes to bench/results/proposal_audit.jsonl (question, program, its
answer, the solver's votes, majority, agreed); the summary to bench/results/proposal_audit.json.

Labels (`label`: right | wrong, `why`) are added to the jsonl rows by hand, after reading each
question (every kept row must be; a later collection may label only its kept rows);
`--summarize` then computes precision before the filter (right / labelled gate-passed) and
after (right / kept), the kept share, and the same after re-applying the current rules to the
stored rows (the gate's `uses_xor`, `truncates`, `reused_numbers` and `asks_something`, the filter's `majority_votes` on the
stored votes, with `word_share` for word problems).

    taskset -c 1 .venv/bin/python bench/proposal_audit.py [--seed 0] [--kept 100] [--passed 300]
        [--minutes 40] [--chunk 16] [--backend vllm] [--resume]
    .venv/bin/python bench/proposal_audit.py --summarize
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ROWS = ROOT / "bench" / "results" / "proposal_audit.jsonl"
SUMMARY = ROOT / "bench" / "results" / "proposal_audit.json"


def open_ctx(args, run_dir: Path):
    """A fresh run on configs/self.yaml (one thread, the chosen backend, the fixed seed)."""
    from loop.config import load_config
    from loop.runner import open_run

    sets = [f"run.dir={run_dir}", f"run.seed={args.seed}", "run.threads=1", f"sample.backend={args.backend}"]
    return open_run(load_config(ROOT / "configs" / "self.yaml", sets), new_run=True)


def row(p, chunk: int, seed: int) -> dict:
    """One gate-passed proposal as an audit row (label and why to be filled in by hand)."""
    v = p.votes or {}
    return {
        "id": f"{chunk}-{p.attempt}",
        "chunk_seed": seed,
        "question": p.parsed.problem,
        "program": p.parsed.program,
        "answer": p.answer,
        "votes": v.get("votes"),
        "agree": v.get("agree"),
        "majority": v.get("majority"),
        "agreed": p.kept,
        "prompt_chars": sum(len(m["content"]) for m in p.prompt),
        "label": None,
        "why": None,
    }


def collect(ctx, args, rows: list[dict]) -> tuple[list[dict], dict]:
    """Chunks of the proposer's generations until a target or the time limit is reached; `rows`:
    those of an earlier collection to continue (--resume: its kept questions join the gate)."""
    from loop.problems.evalsets import all_heldout
    from loop.problems.procedural import heldout_keys
    from loop.proposer import fewshot_pool, generate, load_gate, run_program
    from loop.proposer.agreement import Agreement

    src = next(s for s in ctx.cfg.propose.sources if s.kind == "self").model_copy(update={"count": args.chunk})
    held = all_heldout(ctx.cfg.evaluate)
    exclude, gate = heldout_keys(held), load_gate(ctx, [], held, src)
    for r in rows:
        if r["agreed"]:
            gate.add(f"audit:{r['id']}", r["question"])
    reasons: Counter = Counter()
    t0, chunk = time.time(), 1 + max((int(r["id"].split("-")[0]) for r in rows), default=-1)
    while time.time() - t0 < 60 * args.minutes:
        if sum(r["agreed"] for r in rows) >= args.kept or len(rows) >= args.passed:
            break
        seed = ctx.round_seed(chunk + 1, "propose-self-1")
        pool = fewshot_pool(ctx.store, ctx.run_id, src.shots, seed, exclude)
        drawn = generate(ctx, src, gate, pool, "", seed, agree=Agreement(ctx, src, seed, run_program).check)
        reasons.update(p.reason.split(":")[0] if ":" in p.reason else p.reason for p in drawn)
        rows += [row(p, chunk, seed) for p in drawn if p.kept or p.reason.startswith("disagree:")]
        chunk += 1
        ROWS.write_text("".join(json.dumps(r) + "\n" for r in rows))  # a kill keeps the chunks so far
        print(f"chunk {chunk}: {len(rows)} gate-passed, {sum(r['agreed'] for r in rows)} kept, {time.time() - t0:.0f}s")
    info = {"seed": args.seed, "backend": args.backend, "chunks": chunk, "chunk_count": args.chunk,
            "generated": sum(reasons.values()), "reasons": dict(reasons.most_common()),
            "collect_s": round(time.time() - t0, 1), "source": src.model_dump(mode="json")}
    return rows, info


def precision(rows: list[dict]) -> dict:
    right = sum(r["label"] == "right" for r in rows)
    return {"n": len(rows), "right": right, "precision": round(right / len(rows), 3) if rows else None}


def summarize() -> dict:
    """Precision before/after the filter from the labelled rows; the current gate and filter
    rules re-applied to the stored programs and votes (no new generations)."""
    from loop.config import load_config
    from loop.proposer.agreement import majority_votes
    from loop.proposer.gate import asks_something, reused_numbers, states_arithmetic, truncates, uses_xor

    rules = {"bad_program:xor": lambda r: uses_xor(r["program"]),
             "bad_program:truncates": lambda r: truncates(r["program"]),
             "program_mismatch:reused": lambda r: bool(reused_numbers(r["question"], r["program"])),
             "trivial:no_question": lambda r: not asks_something(r["question"])}
    every = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    unlabelled = {r["id"] for r in every if r.get("label") not in ("right", "wrong")}
    if any(r["agreed"] for r in every if r["id"] in unlabelled):
        raise SystemExit(f"kept rows without a label: {sorted(unlabelled)[:5]} ...")
    open_chunks = {i.split("-")[0] for i in unlabelled}
    rows = [r for r in every if r["id"].split("-")[0] not in open_chunks]  # chunks read whole: before-filter
    kept = [r for r in every if r["agreed"]]  # every kept row is labelled
    passes = [r for r in every if not any(rule(r) for rule in rules.values())]  # the current gate
    gate_now = [r for r in passes if r["id"].split("-")[0] not in open_chunks]
    sources = load_config(ROOT / "configs" / "self.yaml").propose.sources  # the config the audit collects with
    share = next(s.word_share for s in sources if s.kind == "self")

    def agrees(r: dict) -> bool:
        return majority_votes(r["answer"], r["votes"], share, states_arithmetic(r["question"]))["agreed"]

    kept_now = [r for r in passes if r["agreed"] and agrees(r)]
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    summary["audit"] = {
        "chunks_read_whole": len({r["id"].split("-")[0] for r in rows}),
        "unlabelled_gate_passed": len(unlabelled),  # later chunks: only their kept rows were read
        "before_filter": precision(rows),
        "after_filter": precision(kept),
        "kept_share": round(sum(r["agreed"] for r in every) / len(every), 3),
        "wrong_kept": [r["id"] for r in kept if r["label"] == "wrong"],
        "right_rejected": sum(r["label"] == "right" and not r["agreed"] for r in rows),
        "rules_on_stored_rows": {  # gate rules added after the collection: the rows each would reject
            name: {"gate_passed": precision([r for r in rows if rule(r)]),
                   "kept": precision([r for r in kept if rule(r)])} for name, rule in rules.items()
        },
        "current_rules": {
            "before_filter": precision(gate_now),
            "after_filter": precision(kept_now),
            "kept_share": round(len(kept_now) / len(passes), 3) if passes else None,
        },
    }
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    return summary["audit"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kept", type=int, default=100, help="stop once the filter kept this many")
    ap.add_argument("--passed", type=int, default=300, help="stop once this many passed the gate")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--chunk", type=int, default=16, help="kept problems per generate call")
    ap.add_argument("--backend", default="vllm")
    ap.add_argument("--resume", action="store_true", help="continue the collection in ROWS (new chunks)")
    ap.add_argument("--summarize", action="store_true", help="precision from the labelled rows")
    args = ap.parse_args()
    if args.summarize:
        print(json.dumps(summarize(), indent=2))
        return
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        ctx = open_ctx(args, Path(tmp) / "audit")
        try:
            old = [json.loads(line) for line in ROWS.read_text().splitlines()] if args.resume else []
            rows, info = collect(ctx, args, old)
        finally:
            ctx.close()
    if args.resume:  # one collection: counts and time add up
        prev = json.loads(SUMMARY.read_text())["collection"]
        info["reasons"] = dict((Counter(prev["reasons"]) + Counter(info["reasons"])).most_common())
        info |= {k: round(prev[k] + info[k], 1) for k in ("generated", "collect_s")} | {"resumed_at_chunk": prev["chunks"]}
    info |= {"gate_passed": len(rows), "filter_kept": sum(r["agreed"] for r in rows)}
    SUMMARY.write_text(json.dumps({"collection": info}, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
