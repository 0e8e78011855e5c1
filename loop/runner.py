"""The round runner: runs rounds of stages (loop.stages), resumably.

A round is the stages in STAGES order. Each stage commits its outputs together
with its `steps` row; a stage whose step is done is skipped on restart. So
`loop start` after a crash (or kill) resumes the unfinished round at the
unfinished stage, and `--rounds N` means "this run has N rounds when done".
Round 0 holds only the baseline evaluation.

Stopping: `run_rounds(..., stop=StopToken())` checks the token before each stage, and
setting it also cancels the running stage within seconds (`loop.cancel`: checked in
sampling, scoring and budget loops); run_rounds returns with that stage uncommitted
(nothing half-done: a stage commits its outputs and its step in one transaction), so
the next start reruns it. A training child is ended with its process group (loop.trainers.launch).
Events: every stage start/end/error, round end (with the round's numbers) and run
start/end/stop go to the structured log (`loop.log`) and to `on_event(dict)`.

Invariants:
- One writer: `open_run` takes the store's lock (`store.lock`) before opening it and
  holds it until `RunContext.close()`; a second `loop start` is refused. The DuckDB file
  itself is held only inside the writer's queries and transactions (`Store(hold=False)`),
  so `loop inspect` reads it mid-round.
- A stage is marked 'running' (own transaction) before it starts and 'done' in the
  same transaction as its outputs; a round is marked done, idempotently, whenever
  all its stages are done, so a kill between the last stage and that mark heals.
- Every write is idempotent (content-hash keys, ON CONFLICT), so any prefix of a
  run followed by a restart ends in the same store as an uninterrupted run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loop import __version__, cancel, log, tracking
from loop.chat_templates import templated_folder
from loop.config import Config
from loop.context import RunContext, Stage
from loop.models import model_hash, resolve_model
from loop.problems.sources import validate_run_sources
from loop.progress import console
from loop.run_config import ConfigChanged, changed_keys, config_hash, describe_change, result_config
from loop.samplers import gpu_check
from loop.stages import STAGE_NAMES, STAGES, train
from loop.trainers.check_args import check_extra_args
from store import runs
from store.db import Store, StoreError
from store.lock import StoreLock, describe, holder

EventSink = Callable[[dict], None]


class StopToken:
    """A cooperative, thread-safe stop request; run_rounds checks it between stages."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self.reason: str | None = None

    def stop(self, reason: str = "requested") -> None:
        if not self._set.is_set():
            self.reason = reason
            self._set.set()
            if reason not in ("done", "failed"):  # a real request: the running stage ends within seconds
                cancel.request(reason)

    @property
    def stopped(self) -> bool:
        return self._set.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._set.wait(timeout)


def validate_run(cfg: Config) -> None:
    """What can be checked before anything is written: every file the run reads, `train.*extra_args`
    against TRL's config classes, that `train.report_to`'s trackers are installed."""
    validate_run_sources(cfg)  # a bad seed file fails here, in seconds
    check_extra_args(cfg)
    tracking.check_available(cfg.train.report_to)


def open_run(cfg: Config, new_run: bool = False, need_template: bool = True) -> RunContext:
    """Lock and open (or create) the run in the configured store; resolve the base model (with
    `model.chat_template`, loop.chat_templates; `need_template`: a model without one is refused).
    Resuming a run whose result config (loop.run_config) differs raises ConfigChanged, before
    the run is written; `new_run` starts a fresh run in the same store instead."""
    validate_run(cfg)
    base_dir = resolve_model(cfg.model.name, cfg.model.cache_dir)
    base_dir = templated_folder(base_dir, cfg.model.chat_template, cfg.model.cache_dir, need_template)
    gpu_check.check_run(cfg, base_dir)  # vllm installed? the model fits the GPU share? (before round 0)
    base_version = model_hash(base_dir)
    lock = StoreLock(cfg.store_path).acquire()
    try:
        if lock.took_over:
            console.print(
                f"[yellow]took over a stale store lock[/] from a process that is gone "
                f"({describe(lock.took_over, held=False)})"
            )
        store = Store(cfg.store_path, hold=False)  # the file only inside its transactions: readers get in
        pinned = result_config(cfg)
        run_id = runs.register_run(
            store,
            cfg.model_dump(mode="json"),
            __version__,
            pinned,
            config_hash(pinned),
            new_run=new_run,
            check=lambda rid, old: check_same(rid, old, cfg),
        )
        run_dir = Path(cfg.run.dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    except BaseException:
        lock.release()
        raise
    return RunContext(cfg=cfg, store=store, run_id=run_id, base_dir=base_dir, base_version=base_version, lock=lock)


def check_same(run_id: str, pinned: dict[str, Any], cfg: Config) -> None:
    """Raise ConfigChanged naming the keys where `cfg` differs from the run's pinned config."""
    changes = changed_keys(result_config(pinned), result_config(cfg))
    if changes:
        raise ConfigChanged(f"{cfg.store_path}: {describe_change(run_id, changes)}")


def check_resume(cfg: Config) -> str | None:
    """Before anything is started: the run `loop start` would resume (None: a fresh store), read-only;
    ConfigChanged when its pinned config differs from `cfg`. Skipped while another process holds
    the writer lock (that start is refused anyway; open_run checks again under the lock)."""
    info = holder(cfg.store_path)
    if not cfg.store_path.exists() or (info and info.get("alive")):
        return None
    try:
        with Store(cfg.store_path, read_only=True) as st:
            row = runs.latest_pinned(st)
    except StoreError:
        return None  # e.g. an older schema a read-only open cannot migrate: open_run migrates, then checks
    if row:
        check_same(row["run_id"], row["pinned"], cfg)
    return row["run_id"] if row else None


def new_run(cfg: Config) -> str:
    """Register a fresh run in the configured store (the next `loop start` resumes it)."""
    ctx = open_run(cfg, new_run=True)
    ctx.close()
    return ctx.run_id


def run_rounds(
    cfg: Config,
    rounds: int | None,
    stop: StopToken | None = None,
    *,
    max_new: int | None = None,
    on_event: EventSink | None = None,
    tracker: tracking.RoundTracker | None = None,
) -> RunContext:
    """Run (or resume) until the run has `rounds` finished rounds (None = no bound), and at most
    `max_new` rounds more than it had; return early, between stages, once `stop` is set.
    `tracker`: the caller's (a daemon keeps one across its jobs), else one of this call's own."""
    if rounds is None and max_new is None:
        raise ValueError("run_rounds: give rounds, max_new or both")
    _set_threads(cfg.run.threads)
    if stop is None or not stop.stopped:  # a new run is not cancelled by an earlier stop
        cancel.clear()
    emit = _emitter(on_event)
    ctx = open_run(cfg)
    console.print(f"[bold]run[/] {ctx.run_id}  store {cfg.store_path}  model {cfg.model.name}")
    own = tracker is None
    if tracker is None:
        tracker = tracking.RoundTracker(cfg.train.report_to, ctx.run_dir, cfg.model_dump(mode="json"))
    try:
        _track(ctx, tracker)  # rounds a kill left unwritten
        done = finished_rounds(ctx.store, ctx.run_id)
        last = min(x for x in (rounds, None if max_new is None else done + max_new) if x is not None)
        emit("run_start", run_id=ctx.run_id, finished=done, target=max(last, done))
        if rounds is not None and done >= rounds and ctx.is_done(0, "evaluate"):
            console.print(
                f"run {ctx.run_id} already has {done} finished rounds (--rounds {rounds}): nothing to do; "
                f"`--rounds {done + 1}` adds a round"
            )
        if last > done:
            _prestart(ctx, done + 1)
        if not ctx.is_done(0, "evaluate") and not _run_stage(ctx, 0, "evaluate", STAGES["evaluate"], stop, emit):
            return ctx
        _track(ctx, tracker)
        for r in range(1, last + 1):
            with ctx.store.session():  # one open for the round's bookkeeping
                todo = [s for s in STAGE_NAMES if not ctx.is_done(r, s)]
                if todo:
                    _begin_round(ctx, r)
            for name in todo:
                if not _run_stage(ctx, r, name, STAGES[name], stop, emit):
                    return ctx
            if _end_round(ctx, r):  # also closes a round killed after its last stage committed
                emit("round_end", round=r, numbers=round_summary(ctx.store, ctx.run_id, r))
                _track(ctx, tracker)
        emit("run_end", run_id=ctx.run_id, finished=max(last, done))
    finally:
        if own:
            tracker.close()
        ctx.close()
    return ctx


def _prestart(ctx: RunContext, r: int) -> None:
    """The warm training workers of round r, importing while the stages before training run; a
    failure here is the train stage's to report."""
    try:
        started = train.prestart(ctx, r)
    except Exception as e:  # noqa: BLE001 - an early start only; the job itself says what is wrong
        console.print(f"train workers not started early ({type(e).__name__}: {e})")
        return
    if started:
        console.print(f"train workers starting: {', '.join(started)}")


def _track(ctx: RunContext, tracker: tracking.RoundTracker) -> None:
    """The finished rounds (0 = the baseline evaluation) to train.report_to's trackers."""
    if not tracker.names:
        return
    with ctx.store.session():
        rounds = [0] if ctx.is_done(0, "evaluate") else []
        rounds += range(1, finished_rounds(ctx.store, ctx.run_id) + 1)
    tracker.sync(ctx.store, ctx.run_id, rounds)


def _emitter(on_event: EventSink | None) -> Callable[..., None]:
    def emit(name: str, level: str = "info", **fields: Any) -> None:
        record = log.event(name, level, **fields)
        if on_event is not None:
            on_event(record)

    return emit


def _run_stage(ctx: RunContext, r: int, name: str, fn: Stage, stop: StopToken | None, emit) -> bool:
    """Run one stage unless a stop was requested (then emit `stopped`, return False)."""
    if stop is not None and stop.stopped:
        emit("stopped", round=r, stage=name, reason=stop.reason)
        return False
    emit("stage_start", round=r, stage=name)
    t0 = time.time()
    ctx.mark_running(r, name)
    console.print(f"  round {r} {name:<8} started", style="dim", highlight=False)
    try:
        info = fn(ctx, r)
    except cancel.Cancelled:  # stopped mid-stage: nothing of it was committed, the next start reruns it
        emit(
            "stopped",
            round=r,
            stage=name,
            reason=stop.reason if stop else "requested",
            seconds=round(time.time() - t0, 3),
            during=True,
        )
        return False
    except BaseException as e:
        emit(
            "stage_error",
            "error",
            round=r,
            stage=name,
            seconds=round(time.time() - t0, 3),
            error=f"{type(e).__name__}: {e}",
        )
        raise
    brief = log.brief(info)
    emit("stage_end", round=r, stage=name, seconds=round(time.time() - t0, 3), counts=brief)
    console.print(f"  round {r} {name:<8} {time.time() - t0:6.1f}s  {json.dumps(brief, default=str)}")
    return True


def finished_rounds(store: Store, run_id: str) -> int:
    """How many rounds (1..N) of the run have every stage done."""
    return runs.finished_rounds(store, run_id, STAGE_NAMES)


def round_summary(store: Store, run_id: str, r: int) -> dict[str, Any]:
    """A round's numbers from its steps' infos: problems, samples, verified %, held-out accuracy."""
    info = runs.step_infos(store, run_id, r)
    ver, ev = info.get("verify", {}), info.get("evaluate", {})
    out = {
        "round": r,
        "problems": info.get("propose", {}).get("problems"),
        "samples": ver.get("samples"),
        "verified": ver.get("verified"),
        "verified_frac": None,
        "heldout_accuracy": ev.get("accuracy"),
        "format_rate": ev.get("format_rate"),
        "model_version": ev.get("model_version"),
    }
    if ver.get("samples"):
        out["verified_frac"] = ver["verified"] / ver["samples"]
    if "skipped" in ev:
        out["evaluate_skipped"] = ev["skipped"]
    return out


def _begin_round(ctx: RunContext, r: int) -> None:
    runs.begin_round(ctx.store, ctx.run_id, r, ctx.current_model()[0])


def _end_round(ctx: RunContext, r: int) -> bool:
    return runs.end_round(ctx.store, ctx.run_id, r)


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
