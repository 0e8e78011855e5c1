"""Kill harness: SIGKILL `loop start` at seeded random points spread over every stage.

    python -m tests.kill_harness REPORT.json --config C --ref-dir A --kill-dir B --rounds N --kills K --seed S

To afford 20+ kills in CI this process is a zygote: it imports the loop and its
heavy dependencies once (torch, transformers, duckdb: ~10 s on a busy CPU), then
every attempt is an `os.fork()` of it running `cli.main()` with `start ...`: the
real `loop start` code path in its own process, killed with SIGKILL. The zygote
never starts threads (its store reads use one DuckDB thread and close), so forking
it is safe.

1. reference: one uninterrupted attempt into A; the time between a stage's
   `started` line (printed once its step is marked running) and its end line
   gives each stage instance's duration.
2. kills into B: a seeded plan of at least K targets, every stage instance (round 0
   evaluate, then round 1..N x propose..evaluate) at least once, in run order. An
   attempt waits for its target's `started` line, sleeps a random delay and
   SIGKILLs. The steps table then says what was really interrupted (status
   'running'). The delay is U(0, 1.2 x the target's reference duration); a target
   already done when its turn comes (an earlier kill landed after its commit) is
   replaced by the next stage instance left. A stage name not yet interrupted is
   retried (at most MAX_RETRIES extra kills per target), so even millisecond
   stages get interrupted.
3. finish: a real `python -m cli start` subprocess completes B.
The report (JSON) lists every kill; tests/test_kill.py compares A and B.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("COLUMNS", "200")  # stage lines unwrapped
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
RUN_RE = re.compile(r"^run (\S+)\s+store")
START_RE = re.compile(r"^\s*round (\d+) (\w+)\s+started")
END_RE = re.compile(r"^\s*round (\d+) (\w+)\s+[\d.]+s")
MAX_RETRIES = 5


def preload() -> None:
    """Import what a run imports, without running anything (no threads start)."""
    import duckdb  # noqa: F401
    import pyarrow  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import cli  # noqa: F401
    import rewards  # noqa: F401
    from loop import runner  # noqa: F401  (imports every stage)
    from loop.samplers import hf  # noqa: F401
    transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.LlamaForCausalLM  # noqa: B018
    import peft  # noqa: F401


def instances(rounds: int) -> list[tuple[int, str]]:
    from loop.runner import STAGE_NAMES
    return [(0, "evaluate")] + [(r, s) for r in range(1, rounds + 1) for s in STAGE_NAMES]


def read_steps(store: Path) -> tuple[set, list]:
    """(done stage instances, running ones) from the store; empty if it does not exist yet."""
    if not store.exists():
        return set(), []
    import duckdb
    con = duckdb.connect(str(store), read_only=True, config={"threads": 1})
    try:
        rows = con.execute("SELECT round, stage, status FROM steps").fetchall()
    except duckdb.CatalogException:
        rows = []  # killed before the schema was committed
    finally:
        con.close()
    return {(r, s) for r, s, st in rows if st == "done"}, sorted((r, s) for r, s, st in rows if st != "done")


class Attempt:
    """One forked `loop start`, its output parsed into stage events as they arrive."""

    def __init__(self, args: list[str], log: Path):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # child: become `loop start`
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            code = 1
            try:
                sys.argv = ["loop", *args]
                import cli
                cli.main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(w)
        self.fd, self.buf, self.log = r, b"", open(log, "ab")
        self.t0 = time.monotonic()

    def events(self, timeout: float):
        """Yield (time, kind, payload) for lines until EOF or `timeout` seconds of silence."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            self.log.write(chunk)
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            now = time.monotonic()
            for raw in lines:
                line = raw.decode(errors="replace")
                if m := RUN_RE.match(line):
                    yield now, "run", m.group(1)
                elif m := START_RE.match(line):
                    yield now, "start", (int(m.group(1)), m.group(2))
                elif m := END_RE.match(line):
                    yield now, "end", (int(m.group(1)), m.group(2))

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.log.close()
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def start_args(cfg: str, run_dir: Path, rounds: int) -> list[str]:
    return ["start", "--rounds", str(rounds), "-c", cfg, "--set", f"run.dir={run_dir}"]


def reference(cfg: str, run_dir: Path, rounds: int) -> dict[tuple, float]:
    """Run uninterrupted; return each stage instance's duration (its start line to its end line)."""
    att = Attempt(start_args(cfg, run_dir, rounds), run_dir.with_suffix(".log"))
    durations, started = {}, {}
    for t, kind, payload in att.events(timeout=300):
        if kind == "start":
            started[payload] = t
        elif kind == "end":
            durations[payload] = t - started[payload]
    rc = att.wait()
    if rc != 0:
        raise SystemExit(f"reference run failed (exit {rc}); see {run_dir.with_suffix('.log')}")
    return durations


def plan(all_inst: list, kills: int, rng: random.Random) -> list[tuple]:
    """Every instance once, then extra kills on random instances, in run order."""
    extra = [rng.choice(all_inst) for _ in range(max(0, kills - len(all_inst)))]
    return sorted(all_inst + extra, key=all_inst.index)


def kill_once(cfg, run_dir, rounds, target, window: tuple[float, float], rng) -> dict:
    """Start an attempt, SIGKILL it inside `target` after U(window); report what the steps table says."""
    store = run_dir / "loop.duckdb"
    delay = rng.uniform(*window)
    att = Attempt(start_args(cfg, run_dir, rounds), run_dir.with_suffix(".log"))
    killed = False
    for _, kind, payload in att.events(timeout=300):
        if kind == "start" and payload == target:
            time.sleep(delay)
            att.kill()
            killed = True
            break
    rc = att.wait()
    done_after, running = read_steps(store)
    return {"target": list(target), "delay_s": round(delay, 4), "killed": killed, "rc": rc,
            "interrupted": [list(x) for x in running], "done_after": len(done_after)}


def kill_all(cfg, run_dir, rounds, kills, seed, durations) -> list[dict]:
    rng = random.Random(seed)
    order = instances(rounds)
    report, covered = [], set()
    for target in plan(order, kills, rng):
        done, _ = read_steps(run_dir / "loop.duckdb")
        if target in done:  # an earlier kill landed after it committed: take the next one left
            target = next((i for i in order[order.index(target):] if i not in done), None)
            if target is None:
                break
        for _ in range(1 + MAX_RETRIES):
            k = kill_once(cfg, run_dir, rounds, target, (0.0, 1.2 * durations[target]), rng)
            report.append(k)
            covered |= {s for _, s in k["interrupted"]}
            done, _ = read_steps(run_dir / "loop.duckdb")
            if target[1] in covered or target in done:
                break
    return report


def finish(cfg: str, run_dir: Path, rounds: int) -> dict:
    """Complete the killed run with the real entry point, in a fresh interpreter."""
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(run_dir.with_suffix(".log"), "ab") as log:
        rc = subprocess.run([sys.executable, "-m", "cli", *start_args(cfg, run_dir, rounds)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return {"rc": rc, "wall_s": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--config", required=True)
    ap.add_argument("--ref-dir", type=Path, required=True)
    ap.add_argument("--kill-dir", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kills", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.monotonic()
    preload()
    t_pre = time.monotonic()
    durations = reference(a.config, a.ref_dir, a.rounds)
    t_ref = time.monotonic()
    kills = kill_all(a.config, a.kill_dir, a.rounds, a.kills, a.seed, durations)
    t_kill = time.monotonic()
    final = finish(a.config, a.kill_dir, a.rounds)
    Path(a.report).write_text(json.dumps({
        "durations": {f"{r}:{s}": round(d, 4) for (r, s), d in durations.items()}, "kills": kills,
        "final": final, "timing_s": {"preload": round(t_pre - t0, 1), "reference": round(t_ref - t_pre, 1),
                                     "kills": round(t_kill - t_ref, 1), "finish": final["wall_s"]}}, indent=1))


if __name__ == "__main__":
    main()
