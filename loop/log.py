"""Structured event log: one JSON object per line in `<run dir>/loop.log`, rotated.

Contract:
- `event(name, level="info", **fields)` writes one line
  `{"ts", "level", "event", "pid", **fields}` (ts: ISO-8601 UTC with ms); fields
  are e.g. round, stage, counts (an info dict's scalars), seconds. Values that are
  not JSON become strings. Logging never raises into a round: a failed write is
  reported by `logging`'s own error handler and the round goes on.
- Nothing is written until `configure(run_dir, max_bytes, backups)` attaches a
  `RotatingFileHandler` for `<run dir>/loop.log` (rotated at `max_bytes`, keeping
  `backups` old files); `configure` returns a closer; configuring the same file
  twice attaches it once. Only the one process that runs the loop writes the log.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_NAME = "loop.log"
_logger = logging.getLogger("loop.events")
_logger.setLevel(logging.DEBUG)
_logger.propagate = False
_logger.addHandler(logging.NullHandler())


class JsonLines(logging.Formatter):
    """Format a record made by `event` as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        line = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "pid": record.process,
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def event(name: str, level: str = "info", exc_info: bool = False, **fields: Any) -> dict:
    """Log one event; returns the fields (with `event`) for other consumers."""
    _logger.log(logging.getLevelName(level.upper()), name, extra={"fields": fields}, exc_info=exc_info)
    return {"event": name, "level": level, **fields}


def brief(info: dict) -> dict:
    """The scalar part of a stage's info dict (its counts), for a log line; one nested
    level is flattened (`sft.examples`), so sub-steps such as train's show too."""
    out = {}
    for k, v in info.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (list, dict))})
        elif not isinstance(v, list):
            out[k] = v
    return out


def configure(run_dir: str | Path, max_bytes: int = 10_000_000, backups: int = 3) -> Callable[[], None]:
    """Write events to `<run_dir>/loop.log`; returns a function that detaches and closes it."""
    path = os.path.abspath(Path(run_dir) / LOG_NAME)
    for h in _logger.handlers:
        if getattr(h, "baseFilename", None) == path:
            return lambda: None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(JsonLines())
    _logger.addHandler(handler)

    def close() -> None:
        _logger.removeHandler(handler)
        handler.close()

    return close


def read(run_dir: str | Path, last: int | None = None) -> list[dict]:
    """The events of `<run_dir>/loop.log` (current file only), oldest first; bad lines skipped."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out[-last:] if last else out
