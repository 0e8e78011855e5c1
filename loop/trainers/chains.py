"""Which verified chains train: SFT examples from a round's verified samples.

Per problem, the best verified chain: well-formed first, then the shortest. A verified
chain not in the target format is repaired: its text up to the verified answer becomes the
reasoning, the answer goes in tags. `select.n` keeps an s1-style subset. Examples are
TRL's conversational prompt/completion rows; `data_hash` names the exact set trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from loop.prompts import format_chain, messages


def select_chains(rows: list[dict], select=None, seed: int = 0, system: str | None = None) -> list[dict]:
    """rows: verified samples (problem_id, question, answer, completion, extracted, strict; for
    `select` also kind and pass_rate). Returns one SFT example per problem: {problem_id, prompt,
    completion}, or with `select.n` > 0 the s1-style subset (s1_select)."""
    best: dict[str, dict] = {}
    for r in rows:
        key = (not r["strict"], len(r["completion"]), r["completion"])
        cur = best.get(r["problem_id"])
        if cur is None or key < cur["_key"]:
            best[r["problem_id"]] = {**r, "_key": key}
    chosen = sorted(best)
    if select is not None and select.n:
        chosen = s1_select([best[pid] for pid in chosen], select.n, select.quality, select.max_pass_rate, seed)
    out = []
    for pid in chosen:
        r = best[pid]
        target = r["completion"] if r["strict"] else repair(r["completion"], r["extracted"], r["answer"])
        out.append(
            {
                "problem_id": pid,
                "prompt": messages(r["question"], system),
                "completion": [{"role": "assistant", "content": target}],
            }
        )
    return out


def s1_select(best: list[dict], n: int, quality: bool, max_pass_rate: float, seed: int) -> list[str]:
    """At most n problem ids, chosen as s1 chose its 1,000 (Muennighoff et al., 2025):
    quality: with `quality`, only chains already in the answer format (no repaired ones);
    difficulty: problems solved more often than max_pass_rate are dropped, the rest go
    hardest (lowest pass rate) first; diversity: kinds take turns (in a seeded order), so one
    plentiful kind cannot crowd out the others. Returned sorted, for a stable data hash."""
    pool: dict[str, list[dict]] = {}
    for r in best:
        if (quality and not r["strict"]) or r["pass_rate"] > max_pass_rate:
            continue
        pool.setdefault(r["kind"] or "", []).append(r)
    for rows in pool.values():
        rows.sort(key=lambda r: (r["pass_rate"], r["problem_id"]), reverse=True)  # pop() = hardest
    kinds = sorted(pool)
    random.Random(seed).shuffle(kinds)
    picked: list[str] = []
    while len(picked) < n and kinds:
        for kind in list(kinds):
            if len(picked) == n:
                break
            picked.append(pool[kind].pop()["problem_id"])
            if not pool[kind]:
                kinds.remove(kind)
    return sorted(picked)


def repair(text: str, extracted: str | None, gold: str) -> str:
    """Wrap a verified but unformatted chain: reasoning up to the answer, then the answer."""
    cut = text.rfind(extracted) if extracted else -1
    reasoning = text[: cut + len(extracted)] if extracted and cut >= 0 else text  # cut >= 0 only when extracted
    return format_chain(reasoning or f"The answer is {gold}.", gold)


def data_hash(examples: list[dict]) -> str:
    blob = json.dumps(examples, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def write_snapshot(examples: list[dict], path: Path) -> None:
    import pyarrow as pa  # heavy: only when a job is written
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(examples), path)
