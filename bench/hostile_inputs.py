"""Benchmark: the hostile-input matrix of tests/test_hostile_inputs.py, measured.

Every case runs as the test runs it (a Python forked by a small shell, peak RSS from
getrusage in that process: its own and its children's); recorded per case: exit code,
whether the output has the error text the test expects (and no traceback), peak RSS in MB
and wall seconds (a number for the README, not a test bound).

    PYTHONPATH=. python bench/hostile_inputs.py [--out bench/results/hostile_inputs_rss.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import storefix  # noqa: E402
from tests.test_hostile_inputs import (  # noqa: E402
    CLI_CASES,
    PROGRAMS,
    RSS_BOUND_MB,
    RUNNER,
    SANDBOX_RUNNER,
    VERIFY_RUNNER,
    case_id,
    run_measured,
    substitute,
    write_hostile_files,
)


def measure(code: str, *args: str) -> tuple[int, float, str, float]:
    t0 = time.monotonic()
    status, peak_mb, out = run_measured(code, *args)
    return status, round(peak_mb, 1), out, round(time.monotonic() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/hostile_inputs_rss.json")
    out_path = Path(ap.parse_args().out)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.duckdb"
        storefix.populate(store)
        subs = {"RUN": str(Path(tmp) / "run"), "STORE": str(store), **write_hostile_files(Path(tmp) / "data")}
        for args, needle in CLI_CASES:
            code, peak, out, secs = measure(RUNNER, *substitute(args, subs))
            clear = needle in out and "Traceback" not in out
            cases.append({"case": case_id(args), "exit": code, "clear_error": clear, "peak_rss_mb": peak, "seconds": secs})
            print(json.dumps(cases[-1]), flush=True)
    wrong, peak, _, secs = measure(VERIFY_RUNNER)
    cases.append({"case": "verify: tests/test_hostile.py HOSTILE both ways", "wrong_true": wrong, "peak_rss_mb": peak,
                  "seconds": secs})
    for program in PROGRAMS:
        ok, peak, out, secs = measure(SANDBOX_RUNNER, program)
        cases.append({"case": f"sandbox: {program.splitlines()[0]}", "ok": bool(ok),
                      "memory_limit": "memory_limit" in out, "peak_rss_mb": peak, "seconds": secs})
    out_path.write_text(json.dumps({"rss_bound_mb": RSS_BOUND_MB, "cases": cases}, indent=1) + "\n")
    print(f"wrote {out_path}: max peak {max(c['peak_rss_mb'] for c in cases)} MB of {RSS_BOUND_MB}")


if __name__ == "__main__":
    main()
