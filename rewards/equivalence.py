"""Structured comparison (placeholder: numbers only in this first version)."""
from __future__ import annotations

from .verifier import Verdict


def compare(g: str, p: str, gn, pn, timeout_s: float) -> Verdict:
    if gn is None:
        return Verdict(None, "gold not understood", "unsupported")
    return Verdict(False, "prediction unreadable", "unreadable")
