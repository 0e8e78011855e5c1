"""The export error: a model or dataset export cannot be written; the message says why."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export request that cannot be served; the message says why and what exists."""
