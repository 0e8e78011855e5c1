"""Trackers (`train.report_to`): the trainers' TRL logs and the loop's own per-round metrics.

Contract:
- `TRACKERS` names each tracker and the module it needs; `check_available(report_to)` raises
  ConfigError naming a missing one and how to install it, before round 0.
- The training child: `trainer_env(job)` is the environment under which TRL's callbacks write
  inside the run folder, `RUN_DIR/tracker/round-NNN-METHOD` (`trainer_dir`), not in the job's
  scratch folder: TENSORBOARD_LOGGING_DIR and WANDB_DIR point there, WANDB_MODE is offline
  unless the user set it, WANDB_PROJECT is `loop` unless set.
- The loop: `RoundTracker(report_to, run_dir).sync(store, run_id, rounds)` writes each given round not yet written
  (`round_metrics`: held-out and per-set accuracy, pass rate, mean reward, train loss, solved,
  stage seconds, the gate's verdict) as scalars at step = round, to TensorBoard (SummaryWriter
  under RUN_DIR/tracker/loop/RUN_ID) and/or one offline wandb run there. The rounds written are
  kept in `logged.json` beside them, so a resumed run writes what a kill left unwritten and
  never a round twice over (a kill between the write and the note repeats one round's point,
  with the same values). A failed write warns; the store keeps the numbers regardless. One
  tracker lives as long as its caller: a `loop start`, or a daemon across all its jobs.
Heavy imports (torch.utils.tensorboard, wandb) wait for the first writer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loop.config import ConfigError
from loop.progress import console
from store import queries
from store.db import Store

TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb"}  # report_to name -> module
ROUND_KEYS = {  # `loop inspect` rounds column -> scalar tag
    "heldout_accuracy": "loop/heldout_accuracy",
    "format_rate": "loop/format_rate",
    "verified_frac": "loop/pass_rate",
    "mean_reward": "loop/mean_reward",
    "train_loss": "loop/train_loss",
    "solved": "loop/solved",
    "problems": "loop/problems",
    "samples": "loop/samples",
    "train_examples": "loop/train_examples",
}


def trackers(report_to: Sequence[str]) -> list[str]:
    return [t for t in report_to if t != "none"]


def check_available(report_to: Sequence[str]) -> None:
    for name in trackers(report_to):
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(
                f"train.report_to: {name} is not installed in {sys.executable}; "
                f"`{sys.executable} -m pip install {TRACKERS[name]}` (or the `track` extra), "
                f"or leave {name} out of train.report_to"
            )


def trainer_dir(run_dir: Path, r: int, method: str) -> Path:
    return Path(run_dir) / "tracker" / f"round-{r:03d}-{method}"


def trainer_env(job: dict) -> dict[str, str]:
    """Environment variables for TRL's tracker callbacks in the training child (empty: none)."""
    names = trackers(job.get("report_to") or [])
    if not names or not job.get("tracker_dir"):
        return {}
    env = {}
    if "tensorboard" in names:
        env["TENSORBOARD_LOGGING_DIR"] = job["tracker_dir"]
    if "wandb" in names:
        env["WANDB_DIR"] = job["tracker_dir"]
        env["WANDB_MODE"] = os.environ.get("WANDB_MODE", "offline")
        env["WANDB_PROJECT"] = os.environ.get("WANDB_PROJECT", "loop")
    Path(job["tracker_dir"]).mkdir(parents=True, exist_ok=True)
    return env


def round_metrics(store: Store, run_id: str, r: int) -> dict[str, float]:
    """Round r's numbers from the store, as scalar tag -> value (missing ones left out)."""
    row = queries.round_row(store, run_id, r) or {}
    out = {tag: float(row[k]) for k, tag in ROUND_KEYS.items() if row.get(k) is not None}
    if row.get("accepted") is not None:
        out["loop/accepted"] = float(row["accepted"])
    out |= {f"accuracy/{split}": acc for split, acc in queries.split_accuracies(store, run_id, r).items()}
    out |= {f"seconds/{stage}": s for stage, s in queries.stage_seconds(store, run_id, r).items()}
    return out


class RoundTracker:
    """The loop's own metrics to `report_to`'s trackers, one point per round."""

    def __init__(self, report_to: Sequence[str], run_dir: Path, config: dict[str, Any] | None = None):
        self.names = trackers(report_to)
        self.run_dir, self.config = Path(run_dir), config or {}
        self.run_id: str | None = None  # the run written to; a daemon keeps one tracker across its jobs
        self._writers: dict[str, Any] = {}
        self.logged: set[int] = set()

    def _bind(self, run_id: str) -> None:
        """Write to `run_id`'s folder from now on (closing another run's writers)."""
        self.close()
        self.run_id, self.dir = run_id, self.run_dir / "tracker" / "loop" / run_id
        self._note = self.dir / "logged.json"
        self.logged = set(json.loads(self._note.read_text())) if self._note.exists() else set()

    def sync(self, store: Store, run_id: str, rounds: list[int]) -> list[int]:
        """Write each of `rounds` not written yet; return the ones written now."""
        if not self.names:
            return []
        if run_id != self.run_id:
            self._bind(run_id)
        todo = [r for r in rounds if r not in self.logged]
        if not todo:
            return []
        with store.session():  # read all, then write: the file is not held while writers start
            metrics = {r: round_metrics(store, run_id, r) for r in todo}
        try:
            for r in todo:
                self._write(r, metrics[r])
            self._flush()
            self.logged.update(todo)
            self._note.write_text(json.dumps(sorted(self.logged)))
        except OSError as e:  # a full disk must not stop the loop: the store has the numbers
            console.print(f"[yellow]tracker: could not write rounds {todo} to {self.dir}: {e}[/]")
            return []
        return todo

    def _write(self, r: int, metrics: dict[str, float]) -> None:
        for name in self.names:
            writer = self._writer(name)
            if name == "tensorboard":
                for tag, value in metrics.items():
                    writer.add_scalar(tag, value, global_step=r)
            else:
                writer.log(metrics, step=r)

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._writers[name] = _tensorboard(self.dir) if name == "tensorboard" else self._wandb()
        return self._writers[name]

    def _wandb(self) -> Any:
        import wandb

        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "loop"),
            name=self.run_id,
            group=self.run_id,  # one wandb run per process (a daemon's jobs share it), grouped by loop run
            job_type="loop",
            dir=str(self.dir),
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
            config=self.config,
        )

    def _flush(self) -> None:
        for name, writer in self._writers.items():
            if name == "tensorboard":
                writer.flush()

    def close(self) -> None:
        for name, writer in self._writers.items():
            if name == "tensorboard":
                writer.close()
            else:
                writer.finish()
        self._writers.clear()


def _tensorboard(log_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
