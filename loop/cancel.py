"""Cooperative cancellation: a stop request is honoured inside a stage within seconds.

Contract: `request(reason)` (called by `loop.runner.StopToken.stop`) sets one
process-wide flag; `check()` raises `Cancelled` once it is set. Long loops call
`check()` per item or batch: the sample and evaluate stages through the progress
callback they hand every sampler (`ticking(advance)`: hf per batch, openai per prompt,
budget forcing per phase), the vLLM backend itself per engine step (the call's unfinished
requests aborted), hf continuation per batch, the verify stage per problem group, the
self-proposer per judged proposal (each a sandbox run), and the train stage while it waits
for its child process (loop.trainers.launch.wait_cancellable: the child's process group is
ended). `run_rounds` clears the flag when a run starts and turns `Cancelled` into a
`stopped` event for that stage: nothing of it was committed (its step stays `running`),
so the next `loop start` reruns it. Not interruptible: loading a model or starting a vLLM
engine (the check follows it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Cancelled", "request", "clear", "requested", "check", "ticking"]

_flag = threading.Event()
_reason: list[str] = ["requested"]


class Cancelled(Exception):
    """A stop was requested while a stage ran; the stage's work is discarded, not committed."""


def request(reason: str = "requested") -> None:
    _reason[0] = reason
    _flag.set()


def clear() -> None:
    _flag.clear()


def requested() -> bool:
    return _flag.is_set()


def check() -> None:
    if _flag.is_set():
        raise Cancelled(f"stop requested ({_reason[0]})")


def ticking(progress: Callable[[int], None] | None) -> Callable[[int], None]:
    """A progress callback that first checks for a stop request (samplers call it in their loops)."""

    def tick(k: int) -> None:
        check()
        if progress is not None:
            progress(k)

    return tick
