"""One GPU, two users: the daemon's samplers and a training child process.

Contract: a sampler MAY have `release()` (free its accelerator memory; the vllm backend's
sleep mode) and `reacquire()` (take it back; also done lazily by its next `generate` or
`set_adapter`). `released(samplers)` releases each distinct one that has both before the
block (a training job) and reacquires them after it, in the same order, also when the block
raises. Samplers without the pair (hf, openai) and None entries are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager


def sharing(samplers: Iterable) -> list:
    """The distinct samplers (by identity, first seen first) that can release their memory."""
    out: list = []
    for s in samplers:
        if s is None or not (hasattr(s, "release") and hasattr(s, "reacquire")):
            continue
        if all(s is not t for t in out):
            out.append(s)
    return out


@contextmanager
def released(samplers: Iterable) -> Iterator[list]:
    """Release the samplers' GPU memory for the block, reacquire it after (see the contract)."""
    held = sharing(samplers)
    done: list = []
    try:
        for s in held:
            s.release()
            done.append(s)
        yield held
    finally:
        for s in done:
            s.reacquire()
