"""The training process: `python -m loop.trainers.child JOB.json` runs one job with its backend.

Under `accelerate launch` / torchrun every process trains; only rank 0 publishes the
adapter and metrics.json (renamed into place when complete), the others write to a
scratch folder of their own, so no two processes touch the same path.
`LOOP_TRAIN_PROFILE=FILE` writes the child's cProfile stats to FILE.
A warm worker (loop.trainers.worker) runs each of its jobs through `run_job` too.
"""

from __future__ import annotations

import cProfile
import json
import os
import shutil
import sys
from pathlib import Path

from loop import tracking
from loop.trainers import instruct, load_backend, proposer, vision, vision_grpo
from loop.trainers.launch import die_with_parent


def train_job(job: dict) -> dict:
    """Run one job with its backend; publish adapter + metrics.json atomically. Under
    `accelerate launch` / torchrun every process trains; only rank 0 publishes, the others
    write to a scratch folder of their own (so no two processes touch the same path)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    tmp = Path(job["out"] + (".tmp" if rank == 0 else f".tmp.rank{rank}"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.environ.update(tracking.trainer_env(job))  # TRL's trackers write into the run folder
    backend = load_backend(job["backend"])
    methods = {
        "instruct": instruct.instruct,
        "vision": vision.vision,
        "vision-grpo": vision_grpo.grpo,
        "proposer": proposer.grpo,
    }
    run = methods.get(job["method"]) or getattr(backend, job["method"])
    metrics = run({**job, "tmp": str(tmp)})
    metrics["backend"], metrics["processes"] = backend.__name__.rsplit(".", 1)[-1], world
    if rank != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return metrics
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    (tmp / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(job["out"], ignore_errors=True)
    tmp.rename(job["out"])  # publish only a complete adapter
    return metrics


def run_job(job_path: Path) -> None:
    """One job from its JSON file, profiled when LOOP_TRAIN_PROFILE is set (this child's or a
    warm worker's job: the same code path)."""
    job = json.loads(Path(job_path).read_text())
    if os.environ.get("LOOP_TRAIN_PROFILE"):
        _profiled(job, os.environ["LOOP_TRAIN_PROFILE"])
    else:
        train_job(job)


def _profiled(job: dict, path: str) -> None:
    """LOOP_TRAIN_PROFILE=FILE: the job's cProfile stats go to FILE (for slow-step hunts)."""
    prof = cProfile.Profile()
    try:
        prof.runcall(train_job, job)
    finally:
        prof.dump_stats(path)


def main(argv: list[str]) -> None:
    die_with_parent()
    run_job(Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
