"""The hostile-input matrix (issue 21): each bad input ends within seconds with a clear
error, and the process's peak RSS (its own and its children's, `resource.getrusage`
in the subprocess that ran it) stays under RSS_BOUND_MB.

Before these bounds, `--set sample.group_size=99999999999999999999` reached 17.5 GB before
the kernel's OOM killer ended the process, a 50 MB JSONL seed line 23 GB, and a seed `path:
/dev/zero` was read until memory ran out: seed files are refused by `loop start` before round 0 (readers' bounds,
loop/problems/readers: a regular file of at most MAX_FILE_BYTES, no line or field over
`max_field_bytes`).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import storefix
from tests.conftest import ROOT

RSS_BOUND_MB = 1024   # the whole CLI process with its imports; a hostile value must not add to it
END_WITHIN_S = 120    # a backstop only: each case ends in seconds (inspect sql: its 10 s timeout)
TINY = ROOT / "configs" / "tiny.yaml"

RUNNER = """
import resource, sys
sys.argv = ["loop"] + sys.argv[1:]
code = 0
try:
    import cli
    cli.app()
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"PEAK_RSS_KB {peak} EXIT {code}", file=sys.stderr)
"""

VERIFY_RUNNER = """
import resource, sys
from rewards import verify
from tests.test_hostile import HOSTILE
bad = [v for h in HOSTILE for v in (verify(h, "5").equal, verify("5", h).equal) if v is True]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"PEAK_RSS_KB {peak} EXIT {len(bad)}", file=sys.stderr)
"""

SANDBOX_RUNNER = """
import resource, sys
from loop.sandbox import run
res = run(sys.argv[1], timeout_s=1.0, runs=1)
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(res.reason, file=sys.stderr)
print(f"PEAK_RSS_KB {peak} EXIT {int(res.ok)}", file=sys.stderr)
"""


# A process's peak RSS starts from its parent's at fork and survives exec, so a child forked from a
# big pytest (models loaded by earlier tests) would start above the bound: the measured Python is
# forked by a small shell instead (`; exit` keeps the shell from exec-ing it in its own place).
VIA_SHELL = ["/bin/sh", "-c", '"$0" "$@"; exit $?']


def substitute(args: list[str], subs: dict[str, str]) -> list[str]:
    return [re.sub("|".join(subs), lambda m: subs[m.group(0)], a) for a in args]


def run_measured(code: str, *args: str) -> tuple[int, float, str]:
    proc = subprocess.run([*VIA_SHELL, sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=END_WITHIN_S)
    m = re.search(r"PEAK_RSS_KB (\d+) EXIT (-?\d+)", proc.stderr)
    assert m, proc.stderr[-2000:]
    return int(m.group(2)), int(m.group(1)) / 1024, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "s.duckdb"
    storefix.populate(path)
    return path


# (CLI args, text the output must contain); STORE/RUN are substituted
CLI_CASES = [
    (["start", "--rounds", "1", "-c", str(TINY), "--set", "run.dir=RUN",
      "--set", "sample.group_size=99999999999999999999"], "sample.group_size"),      # was 17.5 GB, OOM-killed
    (["start", "--rounds", "1", "-c", str(TINY), "--set", "run.dir=RUN",
      "--set", "sample.max_new_tokens=1000000000000"], "sample.max_new_tokens"),     # token budget
    (["start", "--rounds", "1", "-c", str(TINY), "--set", "run.dir=RUN",
      "--set", "propose.sources=[{kind: arithmetic, count: 999999999999}]"], "count"),  # problem count
    (["start", "--rounds", "1", "-c", str(TINY), "--set", "run.dir=RUN",
      "--set", "sample.group_size=true"], "sample.group_size"),                      # a bool is not 1
    (["start", "--rounds", "1", "-c", "BADYAML", "--set", "run.dir=RUN"], "not UTF-8"),  # non-UTF-8 config
    (["inspect", "--store", "STORE", "samples", "--limit", "99999999999999999999"], "--limit"),  # row cap
    (["inspect", "--store", "STORE", "sql", "SELECT count(*) FROM range(1000000000000)"],
     "statement timeout"),                                                            # runs for hours
    (["inspect", "--store", "STORE", "sql", "SELECT string_agg(repeat('x', 1000), '') FROM range(10000000)"],
     "emory"),                                                                        # 10 GB string
]


BIG = 50 * 2**20  # 50 MB: a seed line or field far over max_field_bytes (1 MB by default)


def _seed(src: str) -> list[str]:
    return ["start", "--rounds", "1", "-c", str(TINY), "--set", "run.dir=RUN", "--set", f"propose.sources=[{src}]"]


# (seed source, text the error must contain); DATA: the folder write_hostile_files fills
SEED_CASES = [
    ("{kind: jsonl, path: /dev/zero}", "/dev/zero: not a regular file"),                 # endless bytes
    ("{kind: file, path: /dev/zero, reader: csv, format: qa}", "not a regular file"),     # ... through any reader
    ("{kind: jsonl, path: DATA/fifo.jsonl}", "fifo.jsonl: not a regular file"),          # a FIFO blocks open()
    ("{kind: jsonl, path: DATA/line.jsonl}", "line.jsonl:2: line is"),                    # one 50 MB JSONL line
    ("{kind: jsonl, path: DATA/open.jsonl}", "open.jsonl:1: line is"),                    # 50 MB, no newline at all
    ("{kind: file, path: DATA/field.json, reader: json, format: qa}", "field.json:1: field 'question'"),  # one line
    ("{kind: file, path: DATA/field.csv, reader: csv, format: qa}", "field.csv:2: a field is over"),  # 50 MB field
    ("{kind: jsonl, path: DATA/sparse.jsonl}", "over the limit of"),                      # 2 GB (sparse) file
]
CLI_CASES += [(_seed(src), needle) for src, needle in SEED_CASES]


def write_hostile_files(d: Path) -> dict[str, str]:
    """The hostile files the cases name (DATA: SEED_CASES' seed files; BADYAML: a non-UTF-8 config)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "bad.yaml").write_bytes(TINY.read_bytes() + b"# caf\xe9\n")
    q = "x" * BIG
    ok = json.dumps({"question": "1+1?", "answer": "#### 2"})
    (d / "line.jsonl").write_text(ok + "\n" + json.dumps({"question": q, "answer": "#### 1"}) + "\n")
    (d / "open.jsonl").write_text('{"question": "' + q)
    (d / "field.json").write_text(json.dumps([{"question": q, "answer": "1"}]))
    (d / "field.csv").write_text(f"question,answer\n{q},1\n")
    os.mkfifo(d / "fifo.jsonl")
    with open(d / "sparse.jsonl", "wb") as f:
        f.truncate(2 * 2**30)  # no disk used: the size alone is refused, before a byte is read
    return {"DATA": str(d), "BADYAML": str(d / "bad.yaml")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_hostile_files(tmp_path_factory.mktemp("data"))


def case_id(args: list[str]) -> str:
    if "BADYAML" in args:
        return "-c BADYAML (a config that is not UTF-8)"
    return " ".join(args[-2:]).replace("--set propose.sources=", "seed ")[:70]


@pytest.mark.parametrize("args,needle", CLI_CASES, ids=[case_id(a) for a, _ in CLI_CASES])
def test_hostile_cli_input_ends_with_a_clear_error_in_bounded_memory(tmp_path, store, files, args, needle):
    subs = {"RUN": str(tmp_path / "run"), "STORE": str(store), **files}
    code, peak_mb, out = run_measured(RUNNER, *substitute(args, subs))
    assert code == 2 and needle in out and "Traceback" not in out, out[-2000:]
    assert peak_mb < RSS_BOUND_MB, peak_mb


def test_hostile_answers_verify_in_bounded_memory():
    wrong_true, peak_mb, out = run_measured(VERIFY_RUNNER)
    assert wrong_true == 0, out[-2000:]          # no hostile answer is judged equal to 5
    assert peak_mb < RSS_BOUND_MB, peak_mb


PROGRAMS = [
    "x = ' ' * 10**10\nanswer = len(x)",          # one huge allocation (RLIMIT_AS in the child)
    "x = []\nwhile True:\n    x.append([0] * 10**6)",
]


@pytest.mark.parametrize("program", PROGRAMS)
def test_hostile_programs_run_in_bounded_memory(program):
    ok, peak_mb, out = run_measured(SANDBOX_RUNNER, program)
    assert ok == 0 and "memory_limit" in out, out[-2000:]
    assert peak_mb < RSS_BOUND_MB, peak_mb
