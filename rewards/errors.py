"""Exceptions shared by the parser and the evaluator (bottom layer: no imports).

Contract: ``ParseError`` means "this text is not an answer we can read";
``GuardError`` (a ``ParseError``) means "over a safety limit" (too long, too
deep, too large).  They live here, not in ``parse``, so that every layer can
raise or catch them without importing the parser.
"""

from __future__ import annotations

__all__ = ["ParseError", "GuardError"]


class ParseError(ValueError):
    pass


class GuardError(ParseError):
    """Input is over a safety limit (too long, too deep, too large)."""
