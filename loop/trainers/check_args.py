"""`train.extra_args` checked against TRL's real config classes, before round 0.

Contract: `check_extra_args(cfg)` raises ConfigError naming the dotted key when
- a key is not a field of the class it goes to (`train.extra_args`: SFTConfig and GRPOConfig;
  `train.sft.extra_args`: SFTConfig; `train.grpo.extra_args`: GRPOConfig), listing the closest
  valid names (difflib);
- a value has the wrong type for the field's default (a number for a number, a bool for a bool,
  text for text), or the class refuses the whole set when built with loop's own arguments for
  a CPU job (e.g. an unknown `lr_scheduler_type`).
Keys loop owns are refused earlier, at config load (loop.trainers.args.OWNED). Nothing is
imported when no extra_args are set; TRL (seconds) is imported only to check some.
"""

from __future__ import annotations

import dataclasses
import difflib
import tempfile
from typing import Any

from loop.config import Config, ConfigError
from loop.trainers.trl import grpo_args, sft_args


def check_extra_args(cfg: Config) -> None:
    t = cfg.train
    scopes = [
        ("train.extra_args", t.extra_args, ("sft", "grpo")),
        ("train.sft.extra_args", t.sft.extra_args, ("sft",)),
        ("train.grpo.extra_args", t.grpo.extra_args, ("grpo",)),
    ]
    if not any(extra for _, extra, _ in scopes):
        return
    classes = _classes()
    for scope, extra, methods in scopes:
        for method in methods:
            _check_keys(scope, extra, classes[method])
    for method in ("sft", "grpo"):
        if t.extra_args or getattr(t, method).extra_args:
            _check_built(cfg, method, classes[method])


def _classes() -> dict[str, type]:
    from trl import GRPOConfig, SFTConfig

    return {"sft": SFTConfig, "grpo": GRPOConfig}


def _check_keys(scope: str, extra: dict[str, Any], cls: type) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key, value in extra.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            both = scope == "train.extra_args"
            where = " (train.extra_args go to both; train.sft/grpo.extra_args to one)" if both else ""
            raise ConfigError(f"{scope}.{key}: not an argument of TRL's {cls.__name__}{hint}{where}")
        want = _kind(fields[key].default)
        if want and not _fits(value, want):
            raise ConfigError(
                f"{scope}.{key}: expected {want.__name__} (as {cls.__name__}.{key}'s default "
                f"{fields[key].default!r}), got {value!r}"
            )


def _kind(default: Any) -> type | None:
    """The type a value must have, judged by the field's default (None: not checked)."""
    for kind in (bool, int, float, str):  # bool first: it is an int
        if type(default) is kind:
            return float if kind is int else kind  # an int field takes a float too (warmup_steps: 0.1)
    return None


def _fits(value: Any, want: type) -> bool:
    if want is bool:
        return isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, want)


def _check_built(cfg: Config, method: str, cls: type) -> None:
    """Build the class as a CPU job of `method` would (loop's arguments + the extra ones)."""
    t = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        job = {
            "tmp": tmp,
            "seed": cfg.run.seed,
            "gradient_checkpointing": t.gradient_checkpointing,
            "extra_args": t.extra_args,
            method: getattr(t, method).model_dump(mode="json"),
            "rewards": [r.model_dump(mode="json") for r in cfg.verify.rewards],
        }
        args = sft_args(job, cuda=False) if method == "sft" else grpo_args(job, cuda=False)
        try:
            cls(**args)
        except (TypeError, ValueError) as e:
            extra = {**t.extra_args, **getattr(t, method).extra_args}
            scope = f"train.extra_args / train.{method}.extra_args"
            raise ConfigError(f"{scope}: TRL's {cls.__name__} refused {extra}: {e}") from None
