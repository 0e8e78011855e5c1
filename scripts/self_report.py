"""Per-round numbers of self-proposed problems in a store (read-only):
proposals / kept / rejected by reason, the share of the round's problems that the model
proposed and kept, resampled and retired counts, and kept problems' pass rates.

    python scripts/self_report.py runs/self/loop.duckdb [--json]
"""
from __future__ import annotations

import json
import sys
from collections import Counter

from store.db import Store


def report(store: Store, run_id: str | None = None) -> list[dict]:
    run_id = run_id or store.scalar("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
    out = []
    for (r,) in store.con.execute("SELECT DISTINCT round FROM round_problems WHERE run_id = ? ORDER BY 1",
                                  [run_id]).fetchall():
        props = store.query("SELECT status, reason FROM proposals WHERE run_id = ? AND round = ?", [run_id, r])
        members = store.query("SELECT p.problem_id, p.source, json_extract_string(p.meta, '$.round') AS born "
                              "FROM round_problems rp JOIN problems p USING (problem_id) "
                              "WHERE rp.run_id = ? AND rp.round = ?", [run_id, r])
        new_self = [m for m in members if m["source"] == "self" and m["born"] == str(r)]
        rates = store.query("SELECT pp.pass_rate FROM problem_pass_rates pp JOIN problems p USING (problem_id) "
                            "WHERE pp.run_id = ? AND pp.round = ? AND p.source = 'self' "
                            "AND json_extract_string(p.meta, '$.round') = ? ORDER BY 1", [run_id, r, str(r)])
        info = json.loads(store.scalar("SELECT info FROM steps WHERE run_id = ? AND round = ? AND stage = 'propose'",
                                       [run_id, r]) or "{}")
        out.append({"round": r, "problems": len(members), "proposed": len(props),
                    "kept": sum(p["status"] == "kept" for p in props),
                    "rejected": dict(Counter(p["reason"] for p in props if p["status"] == "rejected").most_common()),
                    "self_share": round(len(new_self) / len(members), 3) if members else None,
                    "resampled": info.get("resampled"), "retired": info.get("retired"),
                    "kept_pass_rates": [x["pass_rate"] for x in rates]})
    return out


if __name__ == "__main__":
    with Store(sys.argv[1], read_only=True) as st:
        rows = report(st)
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(json.dumps(row))
