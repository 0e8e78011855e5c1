"""The store's error type, in a module of its own so every store module can import it
without importing `store.db` (and DuckDB): no import circle, nothing to import late."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message names the file."""
