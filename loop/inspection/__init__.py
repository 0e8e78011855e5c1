"""`loop inspect`: the library behind the CLI's inspect subcommands.

Contract:
- Every function opens the store read-only and never writes it; `sql` additionally
  forbids touching any other file and runs only SELECT/EXPLAIN statements.
- Data functions return plain dicts/lists (JSON-able with `default=str`, JSON
  columns decoded); `render_*` print them as rich tables. The CLI picks one.
- Run-scoped commands use the given run id, else the store's latest run.
- User errors (unknown sample id, bad range, refused SQL) raise InspectError.
- Bounded: `limit` is 1..MAX_LIMIT rows; `sql` also stops a statement after
  SQL_TIMEOUT_S seconds (DuckDB's interrupt) and runs under SQL_MEMORY_LIMIT.
- `proposer`: the proposer's curve, one row per round with proposals: drawn, kept, share kept,
  rejected per reason (`quota` included: valid but over the round's quota), and the mean
  `learnability(pass_rate)` (loop.problems.curriculum) over the problems kept proposals produced
  that were sampled in their round (None while none was).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import duckdb

from loop.problems.curriculum import learnability
from store import proposals as proposal_queries
from store import queries
from store.db import SCHEMA_VERSION, Store
from store.lock import holder

JSON_COLS = ("rewards", "sampling", "meta", "problem_meta", "config", "metrics", "info", "details")
SQL_ALLOWED = {"SELECT", "EXPLAIN"}


class InspectError(ValueError):
    """A user error in an inspect command; the message says what to change."""


def open_store(path: str | Path, safe: bool = False) -> Store:
    """Read-only; `safe` also disables access to any other file (user-typed SQL)."""
    return Store(path, read_only=True, external_access=not safe)


def resolve_run(st: Store, run_id: str | None) -> str | None:
    if run_id is None:
        return queries.latest_run(st)
    if not queries.run_exists(st, run_id):
        raise InspectError(f"no run {run_id!r} in {st.path}")
    return run_id


def decode(row: dict) -> dict:
    """JSON columns (stored as text) -> objects, for --json output and display."""
    out = dict(row)
    for k in JSON_COLS:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


def dumps(data: Any) -> str:
    return json.dumps(data, default=str, indent=2)


# --- data ----------------------------------------------------------------------------
def summary(path: str | Path, run_id: str | None = None) -> dict:
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        out = queries.summary(st, rid) if rid else {"run_id": None}
        out["schema_version"] = SCHEMA_VERSION
    out["store"] = str(path)
    out["store_bytes"] = Path(path).stat().st_size
    h = holder(path)
    out["writer"] = h if h and h.get("alive") else None
    return out


def rounds(path: str | Path, run_id: str | None = None) -> dict:
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        return {"run_id": rid, "rounds": queries.rounds(st, rid) if rid else []}


def parse_range(text: str) -> tuple[float, float]:
    """'LO..HI' with either side optional ('..0.5', '0.2..'); both within [0, 1]."""
    lo_s, sep, hi_s = text.partition("..")
    try:
        if not sep:
            raise ValueError
        lo, hi = float(lo_s) if lo_s.strip() else 0.0, float(hi_s) if hi_s.strip() else 1.0
    except ValueError:
        raise InspectError(f"--pass-rate {text!r}: expected LO..HI, e.g. 0..0.5 or 0.25..") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise InspectError(f"--pass-rate {text!r}: need 0 <= LO <= HI <= 1")
    return lo, hi


MAX_LIMIT = 10_000
SQL_TIMEOUT_S = 10.0


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InspectError(f"--limit {limit!r}: must be 1..{MAX_LIMIT}")
    return limit


def problems(path, run_id=None, pass_rate: str | None = None, limit: int = 20) -> list[dict]:
    check_limit(limit)
    lo, hi = parse_range(pass_rate) if pass_rate else (0.0, 1.0)
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        rows = queries.problems(st, rid, lo, hi, limit, filtered=pass_rate is not None) if rid else []
    return [decode(r) for r in rows]


def samples(path, run_id=None, verified=None, round=None, problem_id=None, limit=10) -> list[dict]:
    check_limit(limit)
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        rows = queries.samples(st, rid, verified, round, problem_id, limit) if rid else []
    return [decode(r) for r in rows]


def show(path, sample_id: str) -> dict:
    with open_store(path) as st:
        ids = queries.find_samples(st, sample_id)
        if not ids:
            raise InspectError(f"no sample with id {sample_id!r} (a full id or a unique prefix)")
        if len(ids) > 1:
            raise InspectError(f"sample id prefix {sample_id!r} is ambiguous: {', '.join(ids)}, ...")
        return decode(queries.sample_chain(st, ids[0]))


def sql(path, query: str, limit: int = 100, timeout_s: float = SQL_TIMEOUT_S) -> dict:
    """Run one read-only SELECT/EXPLAIN; anything else is refused before it runs; at most
    `limit` rows are fetched and the statement is interrupted after `timeout_s` seconds."""
    check_limit(limit)
    with open_store(path, safe=True) as st:
        try:
            stmts = st.con.extract_statements(query)
        except duckdb.Error as e:
            raise InspectError(f"sql: {e}") from None
        if len(stmts) != 1:
            raise InspectError(f"sql: give exactly one statement (got {len(stmts)})")
        kind = stmts[0].type.name
        if kind not in SQL_ALLOWED:
            raise InspectError(f"sql: only read-only SELECT queries run here; refused a {kind} statement")
        timer = threading.Timer(timeout_s, st.con.interrupt)
        timer.start()
        try:
            cur = st.con.execute(query)
            cols = [d[0] for d in cur.description]
            rows = cur.fetchmany(limit + 1)
        except duckdb.InterruptException:
            raise InspectError(
                f"sql: statement stopped after {timeout_s:g} s (the statement timeout); narrow the query"
            ) from None
        except duckdb.Error as e:
            raise InspectError(f"sql: {e}") from None
        finally:
            timer.cancel()
    return {"columns": cols, "rows": [list(r) for r in rows[:limit]], "truncated": len(rows) > limit}


def curve(path, run_id=None) -> dict:
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        return {"run_id": rid, "points": queries.curve(st, rid) if rid else []}


def proposer(path, run_id=None) -> dict:
    """The proposer's curve per round (see the module docstring)."""
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        if rid is None:
            return {"run_id": None, "rounds": []}
        counts = proposal_queries.proposal_counts(st, rid)
        produced = proposal_queries.produced_pass_rates(st, rid)
    return {"run_id": rid, "rounds": proposer_rounds(counts, produced)}


def proposer_rounds(counts: list[dict], produced: list[dict]) -> list[dict]:
    """Rows of `proposer` from `proposal_counts` and `produced_pass_rates` rows."""
    rounds: dict[int, dict] = {}
    for c in counts:
        row = rounds.setdefault(c["round"], {"round": c["round"], "drawn": 0, "kept": 0, "rejected": {}})
        row["drawn"] += c["n"]
        if c["status"] == "kept":
            row["kept"] += c["n"]
        else:
            row["rejected"][c["reason"]] = row["rejected"].get(c["reason"], 0) + c["n"]
    scores: dict[int, list[float]] = {}
    problems: dict[int, int] = {}
    for p in produced:
        problems[p["round"]] = problems.get(p["round"], 0) + 1
        if p["n"]:
            scores.setdefault(p["round"], []).append(learnability(p["n_verified"] / p["n"]))
    for r, row in rounds.items():
        got = scores.get(r, [])
        row["kept_share"] = row["kept"] / row["drawn"] if row["drawn"] else None
        row["rejected"] = dict(sorted(row["rejected"].items(), key=lambda kv: (-kv[1], kv[0])))
        row["problems"], row["sampled"] = problems.get(r, 0), len(got)
        row["mean_learnability"] = sum(got) / len(got) if got else None
    return [rounds[r] for r in sorted(rounds)]


def sft(path, run_id=None) -> list[dict]:
    """The run's `loop sft` jobs: provenance, held-out loss before/after, fixed prompts' answers."""
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        return [decode(r) for r in queries.instruct_models(st, rid)] if rid else []


def sets(path, run_id=None) -> list[dict]:
    """Held-out accuracy per round and evaluation set (`evaluate.sets`; `heldout` = the gated set),
    with `metrics` (pass@k/maj@k of a set with `k`, else None) decoded."""
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        rows = queries.eval_sets(st, rid) if rid else []
    for r in rows:
        r["metrics"] = json.loads(r["metrics"]) if r["metrics"] else None
    return rows
