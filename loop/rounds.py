"""Round arithmetic shared by the stages: which rounds a cadence setting makes due."""

from __future__ import annotations


def due(every: int, r: int) -> bool:
    """True when round r is due under `every: N` (after every N-th round; 0 = never)."""
    return every > 0 and r % every == 0
