"""Crash safety under SIGKILL: a killed-and-restarted run ends in the same store as an
uninterrupted one (no row lost, none duplicated), and training survives a kill.

On the tiny random model nothing verifies, so the train stage of the kill harness
is always the quick 'no verified chains' skip (still killed, inside and around it).
Training itself is covered by `test_kill_during_training`, which injects verified
chains directly into the store and kills `loop start` while its training child runs.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.runner import STAGE_NAMES
from store import stats
from store.db import Store
from tests.conftest import ROOT

TINY = ROOT / "configs" / "tiny.yaml"
TABLES = ("runs", "rounds", "steps", "problems", "round_problems", "samples", "models", "evaluations",
          "round_stats", "run_problems", "solved_problems")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="200")


def snapshot(path: Path) -> dict:
    """The store's content, minus what legitimately differs between runs (run id, times, paths)."""
    with Store(path, read_only=True) as st:
        q = lambda sql: sorted(tuple(r.values()) for r in st.query(sql))  # noqa: E731
        return {
            "counts": {t: st.scalar(f"SELECT count(*) FROM {t}") for t in TABLES},
            "problems": q("SELECT problem_id, question, answer FROM problems"),
            "round_problems": q("SELECT round, problem_id FROM round_problems"),
            "samples": q("SELECT round, problem_id, idx, model_version, model_parent, completion, verified, "
                         "reward_total, advantage, extracted, rewards, sampling, prompt_version, verifier_version "
                         "FROM samples"),
            "steps": q("SELECT round, stage, status FROM steps"),
            "rounds": q("SELECT round, status, model_version FROM rounds"),
            "models": q("SELECT model_version, parent, kind, round FROM models"),
            "evaluations": q("SELECT round, model_version, correct, accuracy, format_rate FROM evaluations"),
            "round_stats": q("SELECT * EXCLUDE (run_id) FROM round_stats"),
            "run_problems": q("SELECT problem_id, first_round FROM run_problems"),
            "solved_problems": q("SELECT problem_id, first_round FROM solved_problems"),
        }


def check_stats(path: Path) -> None:
    """The summary tables equal the aggregates they stand for."""
    with Store(path, read_only=True) as st:
        got = st.query("SELECT * FROM round_stats ORDER BY run_id, round")
        want = st.query("SELECT run_id, round, count(*) AS samples, count(verified) AS judged, "
                        "count(*) FILTER (WHERE verified) AS verified, sum(reward_total) AS reward_sum, "
                        "count(reward_total) AS reward_n, count(DISTINCT problem_id) FILTER (WHERE verified) "
                        "AS problems_solved FROM samples GROUP BY ALL ORDER BY run_id, round")
        assert got == want
        assert st.query("SELECT run_id, problem_id, first_round FROM run_problems ORDER BY ALL") == \
            st.query("SELECT run_id, problem_id, min(round) AS first_round FROM round_problems GROUP BY ALL ORDER BY ALL")
        assert st.query("SELECT run_id, problem_id, first_round FROM solved_problems ORDER BY ALL") == \
            st.query("SELECT run_id, problem_id, min(round) AS first_round FROM samples WHERE verified "
                     "GROUP BY ALL ORDER BY ALL")


def check_ids(path: Path) -> None:
    """Sample ids are unique and are the content hash of (run, round, problem, idx, model)."""
    with Store(path, read_only=True) as st:
        rows = st.query("SELECT sample_id, run_id, round, problem_id, idx, model_version FROM samples")
    assert len({r["sample_id"] for r in rows}) == len(rows)
    for r in rows:
        key = f"{r['run_id']}:{r['round']}:{r['problem_id']}:{r['idx']}:{r['model_version']}"
        assert r["sample_id"] == hashlib.sha256(key.encode()).hexdigest()[:20]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path):
    """50 SIGKILLs at random moments over every stage of a 3-round run, each restart started the
    moment the kill is sent (before the killed process is reaped), and a SIGTERM in each stage;
    then the store equals an uninterrupted run's."""
    rounds, kills, seed = 3, 50, 1234
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "tests.kill_harness", str(report), "--config", str(TINY),
                    "--ref-dir", str(tmp_path / "ref"), "--kill-dir", str(tmp_path / "kill"),
                    "--rounds", str(rounds), "--kills", str(kills), "--seed", str(seed), "--sigterm"],
                   cwd=ROOT, env=ENV, check=True, timeout=850)
    rep = json.loads(report.read_text())
    ref, got = tmp_path / "ref" / "loop.duckdb", tmp_path / "kill" / "loop.duckdb"
    a, b = snapshot(ref), snapshot(got)
    killed = [k for k in rep["kills"] if k["killed"] and k["signal"] == "SIGKILL"]
    termed = [k for k in rep["kills"] if k["killed"] and k["signal"] == "SIGTERM"]
    print(json.dumps({"timing_s": rep["timing_s"], "sigkills": len(killed), "sigterms": len(termed),
                      "refused": sum(k["refused"] for k in rep["kills"]), "counts": b["counts"],
                      "accuracies": [e[3] for e in b["evaluations"]]}))
    assert rep["final"]["rc"] == 0
    assert [k for k in rep["kills"] if k["refused"]] == []       # no restart refused, right after a kill
    assert len(killed) >= kills and all(k["prev_rc"] in (None, -signal.SIGKILL) for k in rep["kills"])
    hit = {stage for k in killed for _, stage in k["interrupted"]}
    assert hit == set(STAGE_NAMES), f"stages never interrupted: {set(STAGE_NAMES) - hit}"
    assert {k["target"][1] for k in termed} == set(STAGE_NAMES)  # SIGTERM in every stage ...
    for k in termed:  # ... stops it within a batch (nothing of it stored) or after it, and exits cleanly
        assert k["rc"] == 0, k

    assert b["counts"] == a["counts"]
    for key in a:  # contents: the same problems, samples, verdicts, models, evaluations (so accuracies)
        assert b[key] == a[key], key
    assert a["counts"]["samples"] == rounds * 4 * 2 and a["counts"]["runs"] == 1
    assert all(status == "done" for _, _, status in b["steps"])       # nothing left running
    assert all(status == "done" for _, status, _ in b["rounds"])      # every round closed
    check_ids(got)
    check_stats(got)
    with Store(got, read_only=True) as st:  # the kills really forced resumes
        assert st.scalar("SELECT sum(attempts) FROM steps") > len(b["steps"])


# --- training ------------------------------------------------------------------------
def _start(run_dir: Path, rounds: int, *sets: str) -> subprocess.Popen:
    """A real `loop start` process; training every 2nd round (round 2 trains, round 3 samples with it);
    `sets`: more `--set` overrides."""
    log = open(run_dir.with_suffix(".log"), "ab")
    extra = [x for kv in sets for x in ("--set", kv)]
    return subprocess.Popen([sys.executable, "-m", "cli", "start", "--rounds", str(rounds), "-c", str(TINY),
                             "--set", f"run.dir={run_dir}", "--set", "train.sft.every=2", *extra], cwd=ROOT, env=ENV,
                            stdout=log, stderr=subprocess.STDOUT)


def _inject_verified(store: Path) -> int:
    """Make round 1's chains verified and well formed, as a capable model's would be."""
    with Store(store) as st, st.transaction():
        st.con.execute(
            "UPDATE samples SET verified = true, extracted = p.answer, "
            "completion = '<reasoning>\nadd them\n</reasoning>\n<answer>\n' || p.answer || '\n</answer>', "
            "rewards = '{\"strict_format\": 0.5, \"correctness\": 2.0}' "
            "FROM problems p WHERE p.problem_id = samples.problem_id AND samples.round = 1")
        stats.refresh_round(st, st.scalar("SELECT run_id FROM runs"), 1)  # a direct write keeps the totals too
        return st.scalar("SELECT count(*) FROM samples WHERE verified")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _gone(pid: int, within: float = 10.0) -> bool:
    """True once `pid` has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"loop start exited ({proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_during_training(tmp_path):
    """Kill `loop start` (1) while its training child runs and (2) right after the adapter is
    published; the child dies with it, and the resumed run registers exactly one adapter,
    identical to an uninterrupted run's, with no partial folder left behind."""
    rng = random.Random(7)
    run, ref = tmp_path / "run", tmp_path / "ref"
    steps = "train.sft.max_steps=120"  # seconds of training: the warm worker, up from the start, takes the job at once
    assert _start(run, 1, steps).wait(timeout=600) == 0
    assert _inject_verified(run / "loop.duckdb") == 8
    shutil.copytree(run, ref)

    job = run / "train" / "round-002-sft" / "job.json"
    adapter = run / "models" / "round-002-sft" / "adapter_model.safetensors"
    for wait_for, delay in [(job, rng.uniform(0.5, 4.0)),   # inside run_child: the child is training
                            (adapter, 0.0)]:                # published, not yet (or just) registered
        daemon = _start(run, 3, steps)
        _wait_for(wait_for, daemon)
        time.sleep(delay)
        children = _children(daemon.pid)
        daemon.send_signal(signal.SIGKILL)
        assert daemon.wait() == -signal.SIGKILL
        assert children or wait_for == adapter, "no training child was running at the kill"
        assert all(_gone(c) for c in children), "the training child outlived the killed daemon"
        job.unlink(missing_ok=True)
    assert _start(run, 3, steps).wait(timeout=600) == 0
    assert _start(ref, 3, steps).wait(timeout=600) == 0

    a, b = snapshot(ref / "loop.duckdb"), snapshot(run / "loop.duckdb")
    assert b == a  # same adapter version, lineage, samples, evaluations
    check_stats(run / "loop.duckdb")
    with Store(run / "loop.duckdb", read_only=True) as st:
        (m,) = st.query("SELECT model_version, parent, path FROM models WHERE kind = 'lora'")
        assert st.scalar("SELECT attempts FROM steps WHERE round = 2 AND stage = 'train'") >= 2
        assert st.scalar("SELECT model_version FROM evaluations WHERE round = 2") == m["model_version"]
        r3 = st.query("SELECT DISTINCT model_version, model_parent FROM samples WHERE round = 3")
        assert r3 == [{"model_version": m["model_version"], "model_parent": m["parent"]}]  # provenance
    from loop.models import model_hash
    assert Path(m["path"]) == run / "models" / "round-002-sft" and model_hash(Path(m["path"])) == m["model_version"]
    assert not [p for p in (run / "models").iterdir() if p.name != "round-002-sft"]  # no partial/tmp folders


TRAINERS = (b"loop.trainers.child", b"loop.trainers.worker")


def _training_children(pid: int, run: Path, within: float = 120.0) -> list[int]:
    """The training child(ren) of `loop start` `pid` once its train stage runs (`python -m
    loop.trainers.child`, or the warm worker: train.worker auto is warm on CPU; that one is up from
    the run's start, launch.prestart, so the stage is waited for first)."""
    from loop.daemon.runfiles import read_status
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and read_status(run).get("stage") != "train":
        time.sleep(0.05)
    while time.monotonic() < deadline:
        found = [c for c in _children(pid) if any(m in _cmdline(c) for m in TRAINERS)]
        if found:
            return found
        time.sleep(0.05)
    return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_during_training_ends_the_child_and_the_restart_resumes(tmp_path):
    """A first SIGTERM (as `loop stop` sends) while the training child runs ends the child within
    seconds (not after its training); `loop start` exits 0 with nothing of the train stage stored,
    and the next start resumes it to the store of an uninterrupted run: one adapter, registered once."""
    from loop.trainers.launch import GRACE_S
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert _start(run, 1).wait(timeout=600) == 0
    assert _inject_verified(run / "loop.duckdb") == 8
    shutil.copytree(run, ref)

    daemon = _start(run, 3)
    children = _training_children(daemon.pid, run)
    assert children, "no training child started"
    daemon.send_signal(signal.SIGTERM)
    assert all(_gone(c, within=GRACE_S + 5) for c in children), "the training child outlived the stop request"
    assert daemon.wait(timeout=60) == 0
    events = [json.loads(x) for x in (run / "loop.log").read_text().splitlines()]
    stopped = [(e["round"], e["stage"], e.get("during")) for e in events if e["event"] == "stopped"]
    assert stopped == [(2, "train", True)]                    # cancelled inside the stage
    with Store(run / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM models WHERE kind = 'lora'") == 0
        assert st.scalar("SELECT count(*) FROM steps WHERE round = 2 AND stage LIKE 'train%' "
                         "AND status = 'done'") == 0          # nothing of it committed
    assert not (run / "models").exists() or not list((run / "models").iterdir())  # no partial adapter

    assert _start(run, 3).wait(timeout=600) == 0
    assert _start(ref, 3).wait(timeout=600) == 0
    assert snapshot(run / "loop.duckdb") == snapshot(ref / "loop.duckdb")  # the same adapter, samples, evaluations
    check_stats(run / "loop.duckdb")
    with Store(run / "loop.duckdb", read_only=True) as st:
        assert st.scalar("SELECT count(*) FROM models WHERE kind = 'lora'") == 1
        assert st.scalar("SELECT attempts FROM steps WHERE round = 2 AND stage = 'train'") == 2
    assert [p.name for p in (run / "models").iterdir()] == ["round-002-sft"]  # no tmp folder left
