"""A warm training process: `python -m loop.trainers.worker FD` runs job after job.

`loop.trainers.launch.run_child` starts it on the first job that `train.worker` sends to a warm
worker (or `loop.trainers.launch.prestart` does, before the run's first round, with that job's
kind as `python -m loop.trainers.worker FD JOB.json`: the worker imports what such a job imports
while the round's first stages run), as it starts a fresh child: its own session, the child's
environment, the same tie to the daemon (die_with_parent: it dies with the daemon). It reads one
job a line from stdin (`{"job": PATH, "env": {...}}`: the environment that job's fresh child
would get; a bare PATH keeps the one it was started with), runs that job by the fresh child's
own code path (`loop.trainers.child.run_job`: the adapter published by rename only when complete,
LOOP_TRAIN_PROFILE honoured) and answers one JSON line on file descriptor FD once it takes it
(`{"started": PATH}`) and one when done: `{"ok": true}`, or `{"ok": false, "error": "..."}` with
the traceback on stderr, where a fresh child's goes. End of stdin: exit 0.

What stays loaded between jobs: the imported libraries (torch, transformers, trl, peft,
datasets: about 7 s of a fresh child's start on 2 cores), what they set up on first use, and on
CUDA a GRPO job's colocated vLLM engine (loop.trainers.gpu.KEPT: built once, its weights pushed
by TRL at each job's first generation). The
base model is loaded again per job: 0.5 s for SmolLM2-135M, where copying a cached one took 1.0 s.
Before each job the process is put back as a fresh child would start it: the environment it was
started with (a job's tracker variables gone), its peak-RSS counter reset (peak_memory_gb is the
job's, as a child's is), garbage collected. Seeds need nothing: the trainers seed torch, numpy and
random (set_seed, unsloth's random_state) before anything random is drawn, so a job trains the
same weights here as in a fresh child (tests/test_train_worker.py); a kept vLLM engine's sampling
stream goes on from the last job instead of starting again at seed 0.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback
from pathlib import Path

from loop.trainers import gpu, load_backend
from loop.trainers.child import run_job
from loop.trainers.launch import die_with_parent


def fresh_state(env: dict[str, str]) -> None:
    """Undo what the last job left in the process: its environment, the peak-RSS counter, garbage."""
    os.environ.clear()
    os.environ.update(env)
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def read_job(line: str, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """One stdin line: (the job's path, its environment); a bare path keeps `env`."""
    line = line.strip()
    if not line.startswith("{"):
        return line, env
    msg = json.loads(line)
    return msg["job"], msg.get("env") or env


def serve(jobs, reply, env: dict[str, str] | None = None) -> None:
    """Run each job read from `jobs`; one JSON line per job on `reply`."""
    env = dict(os.environ) if env is None else env
    for line in jobs:
        path, job_env = read_job(line, env)
        if not path:
            continue
        reply.write(json.dumps({"started": path}) + "\n")  # taken: a death from here on is the job's
        reply.flush()
        fresh_state(job_env)
        try:
            run_job(Path(path))
            answer: dict = {"ok": True}
        except BaseException as e:  # noqa: BLE001 - a job's failure is answered, the parent decides
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
            if not isinstance(e, Exception):  # SystemExit, KeyboardInterrupt: answer, then go
                reply.write(json.dumps(answer) + "\n")
                reply.flush()
                raise
        sys.stdout.flush()
        sys.stderr.flush()
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


def preload(job_path: str) -> None:
    """Import what the job at `job_path` (its kind: method, backend, settings) will import; a
    failure here is left for that job to report."""
    try:
        job = json.loads(Path(job_path).read_text())
        load_backend(job["backend"]).preload(job)
    except Exception as e:  # noqa: BLE001 - the job itself fails with the real error
        print(f"train worker: preload failed ({type(e).__name__}: {e}); the job will load it", file=sys.stderr)


def main(argv: list[str]) -> None:
    die_with_parent()
    env = dict(os.environ)  # before the preload's own settings: each job gets its child's environment
    gpu.KEPT.enabled = True  # a GRPO job's colocated vLLM engine stays for the next job (gpu.KeptEngine)
    with os.fdopen(int(argv[1]), "w") as reply:
        if len(argv) > 2:
            preload(argv[2])
        serve(sys.stdin, reply, env)


if __name__ == "__main__":
    main(sys.argv)
