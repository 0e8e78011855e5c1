"""Kill harness: SIGKILL `loop start` at seeded random points spread over every stage.

    python -m tests.kill_harness REPORT.json --config C --ref-dir A --kill-dir B --rounds N --kills K --seed S
                                [--sigterm]

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
   SIGKILLs; the next attempt starts at once, before the killed one is reaped (a
   restart right after a kill must not be refused while the killed process exits;
   a refused attempt is reported and retried). What was interrupted is the stage
   whose `started` line had no end line yet. The delay is U(0, 1.2 x the target's
   reference duration); a target already done when its turn comes is replaced by the
   next stage instance left (an attempt that starts a later stage than its target
   is killed there). A stage name not yet interrupted is retried (at most
   MAX_RETRIES extra kills per target), so even millisecond stages get interrupted.
   With --sigterm, one stage instance of each stage name (round 0 evaluate, round 2's
   others) also gets a SIGTERM at a random moment instead: the attempt stops that stage
   within a batch (storing nothing of it) or after it, and must exit 0.
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


def kill_once(cfg, run_dir, rounds, target, window: tuple[float, float], rng, prev: Attempt | None,
              order: list, sig: int = signal.SIGKILL) -> tuple[dict, Attempt | None]:
    """Start an attempt (right away, before reaping `prev`, the attempt killed last), signal it
    inside `target` after U(window); returns its report and the attempt still to reap (SIGKILL)."""
    delay = rng.uniform(*window)
    att = Attempt(start_args(cfg, run_dir, rounds), run_dir.with_suffix(".log"))
    prev_rc = prev.wait() if prev is not None else None
    sent, running, ended, first = False, None, [], None
    for _, kind, payload in att.events(timeout=300):
        if kind == "start":
            running, first = payload, first or payload
            if payload == target or order.index(payload) > order.index(target):
                time.sleep(delay)
                os.kill(att.pid, sig)
                sent = True
                if sig == signal.SIGKILL:
                    break
        elif kind == "end":
            ended.append(list(payload))
            running = None
    rep = {"target": list(target), "signal": signal.Signals(sig).name, "delay_s": round(delay, 4),
           "killed": sent, "interrupted": [list(running)] if running and sig == signal.SIGKILL else [],
           "ended": ended, "first_started": list(first) if first else None, "prev_rc": prev_rc}
    if sig == signal.SIGKILL and sent:
        return rep, att
    rep["rc"] = att.wait()
    return rep, None


def refused(log: Path, since: int) -> bool:
    text = log.read_bytes()[since:].decode(errors="replace")
    return "already running" in text or "in use by another" in text


def quotas(order: list, kills: int, rng: random.Random) -> dict[tuple, int]:
    """SIGKILLs per stage instance: every instance one, the rest to random instances."""
    q = dict.fromkeys(order, 1)
    for _ in range(max(0, kills - len(order))):
        q[rng.choice(order)] += 1
    return q


def kill_all(cfg, run_dir, rounds, kills, seed, durations, sigterm: bool = False) -> list[dict]:
    """Per stage instance in run order: a SIGTERM (with `sigterm`: round 0's evaluate and round 2's
    stages, or a later round's same stage when that one is done), then its SIGKILL quota; the quota of
    an instance found done (a kill landed after its commit) carries over to the next, and a stage name
    not yet interrupted gets up to MAX_RETRIES extra kills, so at least `kills` are sent."""
    rng = random.Random(seed)
    order = instances(rounds)
    quota = quotas(order, kills, rng)
    terms = [(0, "evaluate")] + [(min(2, rounds), st) for _, st in order[1:6]] if sigterm else []
    report, covered, done, prev, carry = [], set(), set(), None, 0
    log = run_dir.with_suffix(".log")

    def attempt(target, sig, window):
        nonlocal prev
        since = log.stat().st_size if log.exists() else 0
        k, prev = kill_once(cfg, run_dir, rounds, target, window, rng, prev, order, sig)
        k["refused"] = not k["killed"] and refused(log, since)
        report.append(k)
        done.update(tuple(e) for e in k["ended"])
        if k["first_started"]:  # a resumed attempt skips what is done: everything before its first stage
            done.update(order[:order.index(tuple(k["first_started"]))])
        covered.update(st for _, st in k["interrupted"])

    for i, target in enumerate(order):
        pending_terms = [t for t in terms if t[1] == target[1] and t[0] <= target[0]]
        if pending_terms and target not in done:
            terms.remove(pending_terms[0])
            attempt(target, signal.SIGTERM, (0.0, 0.9 * durations[target]))
        carry += quota[target]
        extra = 0
        while target not in done and (carry > 0 or (target[1] not in covered and extra < MAX_RETRIES)):
            behind = carry > len(order) - i  # more kills left than instances: stay inside the stage
            attempt(target, signal.SIGKILL, (0.0, (0.9 if behind else 1.2) * durations[target]))
            if carry > 0:
                carry -= 1
            else:
                extra += 1
    if prev is not None:
        report[-1]["last_rc"] = prev.wait()
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
    ap.add_argument("--sigterm", action="store_true", help="also SIGTERM one instance of every stage")
    a = ap.parse_args()
    t0 = time.monotonic()
    preload()
    t_pre = time.monotonic()
    durations = reference(a.config, a.ref_dir, a.rounds)
    t_ref = time.monotonic()
    kills = kill_all(a.config, a.kill_dir, a.rounds, a.kills, a.seed, durations, a.sigterm)
    t_kill = time.monotonic()
    final = finish(a.config, a.kill_dir, a.rounds)
    Path(a.report).write_text(json.dumps({
        "durations": {f"{r}:{s}": round(d, 4) for (r, s), d in durations.items()}, "kills": kills,
        "final": final, "timing_s": {"preload": round(t_pre - t0, 1), "reference": round(t_ref - t_pre, 1),
                                     "kills": round(t_kill - t_ref, 1), "finish": final["wall_s"]}}, indent=1))


if __name__ == "__main__":
    main()
