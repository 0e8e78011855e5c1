"""Train stage: distillation SFT and GRPO rounds, each in its own process.

The stage (in the daemon) picks the training set from the store, writes it as a
Parquet snapshot, runs `python -m loop.train JOB.json` as a child process (a
backend from loop/trainers/), and registers the resulting adapter as a new model
version (parent, data hash, config, metrics). The child only reads the snapshot
and writes the adapter folder, renamed into place when complete, so a crash in
training cannot corrupt the store or take the daemon down, and `accelerate
launch -m loop.train JOB.json` can run the same job on several GPUs.
The child dies with the daemon (Linux parent-death signal), so a killed daemon
leaves no orphan still writing the adapter folder its restarted attempt rewrites.

SFT selection: per problem, the best verified chain: well-formed first, then the
shortest. A verified chain not in the target format is repaired: its text up to
the verified answer becomes the reasoning, the answer goes in tags.
GRPO selection: problems whose pass rate in this round lay strictly inside
`train.grpo.band` (default: strictly between 0 and 1).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from loop.prompts import format_chain, messages


class TrainError(RuntimeError):
    pass


def select_chains(rows: list[dict], select=None, seed: int = 0) -> list[dict]:
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
        out.append({"problem_id": pid, "prompt": messages(r["question"]),
                    "completion": [{"role": "assistant", "content": target}]})
    return out


def s1_select(best: list[dict], n: int, quality: bool, max_pass_rate: float, seed: int) -> list[str]:
    """At most n problem ids, chosen as s1 chose its 1,000 (Muennighoff et al., 2025):
    quality: with `quality`, only chains already in the answer format (no repaired ones);
    difficulty: problems solved more often than max_pass_rate are dropped, the rest go
    hardest (lowest pass rate) first; diversity: kinds take turns (in a seeded order), so one
    plentiful kind cannot crowd out the others. Returned sorted, for a stable data hash."""
    import random
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
    reasoning = text[:cut + len(extracted)] if cut >= 0 else text
    return format_chain(reasoning or f"The answer is {gold}.", gold)


def data_hash(examples: list[dict]) -> str:
    blob = json.dumps(examples, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def write_snapshot(examples: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(examples), path)


def run_child(job: dict, job_path: Path, threads: int | None, launcher: str | None = None) -> dict:
    """Run the training job in a child process (under `launcher`, e.g. `accelerate launch
    --num_processes 4`, one per GPU); return its metrics."""
    job_path.write_text(json.dumps(job, indent=2))
    # a direct child dies with the daemon by the kernel's parent-death signal; a launcher's
    # workers are grandchildren, so they watch the daemon's pid instead (die_with_parent)
    env = {k: v for k, v in os.environ.items() if k not in ("LOOP_PARENT_PID", "LOOP_DAEMON_PID")}
    env["LOOP_DAEMON_PID" if launcher else "LOOP_PARENT_PID"] = str(os.getpid())
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if not launcher:
        env.update(one_gpu(env))
    # own session: a Ctrl-C at the terminal reaches only the daemon, which finishes this stage
    # gracefully; its hard stop (second Ctrl-C, `loop stop --now`) kills this child's group
    cmd = [*launch_command(launcher), "-m", "loop.train", str(job_path)]
    proc = subprocess.run(cmd, env=env, start_new_session=True)
    out = Path(job["out"])
    if proc.returncode != 0 or not (out / "metrics.json").exists():
        raise TrainError(f"training process failed (exit {proc.returncode}); job {job_path}")
    return json.loads((out / "metrics.json").read_text())


def one_gpu(env: dict) -> dict[str, str]:
    """A job without train.launcher trains on one GPU, the first visible: one process seeing
    several makes Trainer wrap the model in nn.DataParallel, which TRL's trainers refuse
    (seen on a 2-GPU H200 host). `train.launcher` spreads a job over all of them."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return {"CUDA_VISIBLE_DEVICES": "0"}  # harmless without GPUs
    return {"CUDA_VISIBLE_DEVICES": visible.split(",")[0].strip()}  # "" (no GPU) stays ""


def launch_command(launcher: str | None) -> list[str]:
    """`train.launcher` as argv (before `-m loop.train JOB`); its program is looked up next to
    this Python first (a venv's `accelerate`/`torchrun` need not be on PATH)."""
    if not launcher:
        return [sys.executable]
    import shlex
    words = shlex.split(launcher)
    local = Path(sys.executable).parent / words[0]
    found = str(local) if local.is_file() else shutil.which(words[0])
    if not found:
        raise TrainError(f"train.launcher: {words[0]!r} not found next to {sys.executable} or on PATH "
                         f"(e.g. 'accelerate launch --num_processes 2', 'torchrun --nproc_per_node 2')")
    return [found, *words[1:]]


# --- the child process --------------------------------------------------------------
def train_job(job: dict) -> dict:
    """Run one job with its backend; publish adapter + metrics.json atomically. Under
    `accelerate launch` / torchrun every process trains; only rank 0 publishes, the others
    write to a scratch folder of their own (so no two processes touch the same path)."""
    from loop.trainers import load_backend
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    tmp = Path(job["out"] + (".tmp" if rank == 0 else f".tmp.rank{rank}"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    backend = load_backend(job["backend"])
    metrics = getattr(backend, job["method"])({**job, "tmp": str(tmp)})
    metrics["backend"], metrics["processes"] = backend.__name__.rsplit(".", 1)[-1], world
    if rank != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return metrics
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    (tmp / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(job["out"], ignore_errors=True)
    tmp.rename(job["out"])  # publish only a complete adapter
    return metrics


# --- the stage (daemon side) --------------------------------------------------------
def _due(every: int, r: int) -> bool:
    return every > 0 and r % every == 0


def stage(ctx, r: int) -> dict:
    """SFT then GRPO after round r, each when due; each method is its own recorded step."""
    cfg = ctx.cfg.train
    info = {}
    for method, every in (("sft", cfg.sft.every), ("grpo", cfg.grpo.every)):
        step = f"train.{method}"
        if ctx.is_done(r, step):
            continue
        if not _due(every, r):
            info[method] = _skip(ctx, r, step, f"train.{method}.every={every}")
            continue
        examples = sft_examples(ctx, r) if method == "sft" else grpo_examples(ctx, r)
        if not examples:
            info[method] = _skip(ctx, r, step, "no verified chains" if method == "sft" else "no problem in band")
            continue
        info[method] = _train(ctx, r, method, examples)
    with ctx.store.transaction():
        ctx.mark_done(r, "train", info)
    return info


def sft_examples(ctx, r: int) -> list[dict]:
    first = 1 if ctx.cfg.train.sft.replay else r
    rows = ctx.store.query(
        "WITH pr AS (SELECT problem_id, avg(CASE WHEN verified THEN 1.0 ELSE 0.0 END) AS pass_rate "
        "  FROM samples WHERE run_id = ? AND round <= ? AND round >= ? GROUP BY problem_id) "
        "SELECT s.problem_id, s.completion, s.extracted, p.question, p.answer, p.kind, pr.pass_rate, "
        "coalesce(TRY_CAST(json_extract(s.rewards, '$.strict_format') AS DOUBLE), 0) > 0 AS strict "
        "FROM samples s JOIN problems p USING (problem_id) JOIN pr USING (problem_id) "
        "WHERE s.run_id = ? AND s.verified AND s.round <= ? AND s.round >= ?",
        [ctx.run_id, r, first, ctx.run_id, r, first])
    return select_chains(rows, ctx.cfg.train.sft.select, ctx.round_seed(r, "select"))


def grpo_examples(ctx, r: int) -> list[dict]:
    lo, hi = ctx.cfg.train.grpo.band
    rows = ctx.store.query(
        "SELECT p.problem_id, p.question, p.answer, avg(CASE WHEN s.verified THEN 1.0 ELSE 0.0 END) AS pass_rate "
        "FROM samples s JOIN problems p USING (problem_id) WHERE s.run_id = ? AND s.round = ? "
        "GROUP BY ALL HAVING pass_rate > ? AND pass_rate < ? ORDER BY p.problem_id", [ctx.run_id, r, lo, hi])
    return [{"problem_id": x["problem_id"], "prompt": messages(x["question"]), "answer": x["answer"],
             "pass_rate": x["pass_rate"]} for x in rows]


def _train(ctx, r: int, method: str, examples: list[dict]) -> dict:
    from loop.models import model_hash
    cfg = ctx.cfg.train
    parent_version, parent_adapter = ctx.current_model()
    work = ctx.run_dir / "train" / f"round-{r:03d}-{method}"
    write_snapshot(examples, work / "data.parquet")
    out = ctx.run_dir / "models" / f"round-{r:03d}-{method}"
    job = {"method": method, "backend": getattr(getattr(cfg, method), "backend", None) or cfg.backend,
           "base": str(ctx.base_dir),
           "parent_adapter": str(parent_adapter) if parent_adapter else None,
           "data": str(work / "data.parquet"), "out": str(out), "seed": ctx.round_seed(r, method),
           "threads": ctx.cfg.run.threads, "lora": cfg.lora.model_dump(mode="json"),
           "gradient_checkpointing": cfg.gradient_checkpointing,
           method: getattr(cfg, method).model_dump(mode="json"),
           "rewards": [x.model_dump(mode="json") for x in ctx.cfg.verify.rewards]}
    with ctx.gpu_released():  # a sleeping vLLM engine leaves the GPU to the training child
        metrics = run_child(job, work / "job.json", ctx.cfg.run.threads, cfg.launcher)
    version = model_hash(out)
    info = {"model_version": version, "parent": parent_version, "examples": len(examples), **metrics}
    with ctx.store.transaction():
        ctx.store.insert_rows("models", [{
            "model_version": version, "parent": parent_version, "run_id": ctx.run_id, "round": r,
            "kind": "lora", "base_path": str(ctx.base_dir), "path": str(out),
            "data_hash": data_hash(examples), "config": {k: job[k] for k in ("method", "backend", "lora", method)},
            "metrics": {**metrics, "accepted": True}}])
        ctx.mark_done(r, f"train.{method}", info)
    return info


def _skip(ctx, r: int, step: str, why: str) -> dict:
    info = {"skipped": why}
    with ctx.store.transaction():
        ctx.mark_done(r, step, info)
    return info


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has.
    Only a child started by `run_child` (LOOP_PARENT_PID set) checks its parent; the variable
    is not passed on. Under a launcher (LOOP_DAEMON_PID set) the parent is the launcher, so a
    thread also watches the daemon and exits when it is gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    expected = os.environ.pop("LOOP_PARENT_PID", None)
    if expected and os.getppid() != int(expected):  # parent died before prctl took effect
        os._exit(1)
    if os.environ.get("LOOP_DAEMON_PID"):
        watch_daemon(int(os.environ["LOOP_DAEMON_PID"]))


def watch_daemon(pid: int, every_s: float = 1.0) -> None:
    """Exit this process (no cleanup: the restarted daemon redoes the job) once `pid` is gone."""
    import threading
    import time

    def watch():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, another user's
                pass
            time.sleep(every_s)

    threading.Thread(target=watch, name="loop-daemon-watch", daemon=True).start()


def _profiled(job: dict, path: str) -> None:
    """LOOP_TRAIN_PROFILE=FILE: the child's cProfile stats go to FILE (for slow-step hunts)."""
    import cProfile
    prof = cProfile.Profile()
    try:
        prof.runcall(train_job, job)
    finally:
        prof.dump_stats(path)


if __name__ == "__main__":
    die_with_parent()
    _job = json.loads(Path(sys.argv[1]).read_text())
    if os.environ.get("LOOP_TRAIN_PROFILE"):
        _profiled(_job, os.environ["LOOP_TRAIN_PROFILE"])
    else:
        train_job(_job)
