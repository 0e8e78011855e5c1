"""What a run's results depend on: the config keys that change them, their hash, and the diff
that names what changed.

Contract:
- `result_config(cfg)` is the sub-tree of the resolved config whose values change what a run
  stores: `run.seed`, `model` (not `model.cache_dir`), `prompt`, `propose.sources`, `sample` (not the
  endpoint's credentials, timeouts and retries), `verify`, `evaluate` (not the `loop eval` sweep's
  budgets and waits). Where a run lives, threads,
  training cadence and the daemon's schedule are not in it.
- `config_hash(tree)` is the sha256 of its canonical JSON (sorted keys).
- `changed_keys(pinned, now)` lists `(dotted key, pinned value, new value)` for every leaf that
  differs; list items are addressed by index (`propose.sources.0.count`). A key present on one side
  only (a loop version added or removed it) is not a change: it was no choice of the user's.
- `ConfigChanged` (a ConfigError) is what resuming a run with a changed result config raises.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from loop.config import Config, ConfigError

RESULT_KEYS = ("run.seed", "model", "prompt", "propose.sources", "sample", "verify", "evaluate")
NOT_RESULT = (
    "model.cache_dir",
    "sample.openai.api_key_env",
    "sample.openai.timeout_s",
    "sample.openai.max_retries",
    "sample.openai.backoff_s",
    "evaluate.budgets",  # `loop eval` sweeps: nothing a round stores
    "evaluate.waits",
)


class ConfigChanged(ConfigError):
    """Resuming a run whose result config differs from the one it was started with."""


def result_config(cfg: Config | dict[str, Any]) -> dict[str, Any]:
    tree = cfg.model_dump(mode="json") if isinstance(cfg, Config) else cfg
    out: dict[str, Any] = {}
    for key in RESULT_KEYS:
        value = _get(tree, key.split("."))
        if value is not None:
            _put(out, key.split("."), json.loads(json.dumps(value)))
    for key in NOT_RESULT:
        _drop(out, key.split("."))
    return out


def config_hash(tree: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()


def changed_keys(pinned: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    a, b = _flatten(pinned), _flatten(now)
    return [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]


def describe_change(run_id: str, changes: list[tuple[str, Any, Any]]) -> str:
    keys = "; ".join(f"{k}: {json.dumps(old)} -> {json.dumps(new)}" for k, old, new in changes)
    return (
        f"run {run_id} was started with a different config ({keys}); resuming it would mix two configs "
        f"in one run. Start a fresh run in the same store with `loop start --new-run`, or resume with "
        f"the run's own values"
    )


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree and all(isinstance(x, dict) for x in tree):
        out = {k: v for i, sub in enumerate(tree) for k, v in _flatten(sub, f"{prefix}{i}.").items()}
        return {**out, prefix[:-1]: f"{len(tree)} item(s)"}  # items added or removed show as a count
    return {prefix[:-1]: tree}


def _get(tree: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _put(tree: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _drop(tree: dict, path: list[str]) -> None:
    node = _get(tree, path[:-1])
    if isinstance(node, dict):
        node.pop(path[-1], None)
