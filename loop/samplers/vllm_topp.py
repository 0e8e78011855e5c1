"""Exact top-p without a full-vocabulary sort, for vLLM's CPU sampler.

vLLM 0.32 applies top-p on CPU by sorting every row of the logits (49k entries for
SmolLM2) at every decode step: about a third of all decode time on these machines.
Top-p keeps, in descending order, each token whose exclusive prefix mass is < p.
So if the FIRST_K largest tokens of a row carry mass >= p, no token outside them is
kept, and `topk(FIRST_K)` decides the row exactly. Rows they do not cover
(flat distributions, p = 1) go through vLLM's own sort. The result is the same
kept set as vLLM's (up to float rounding at the exact boundary), so samples keep
their meaning; tests/test_vllm_topp.py checks it against the original.

`install()` patches `vllm.v1.sample.ops.topk_topp_sampler.apply_top_k_top_p`,
which vLLM's `forward_cpu` looks up at call time; `LOOP_VLLM_FAST_TOPP=0` keeps
vLLM's own. Only on the CPU platform: GPUs have their own kernels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

FIRST_K = 64  # most rows at T<=1 have their nucleus within the top 64 tokens
MARGIN = 1e-4  # mass beyond p that makes a row's cut certain despite rounding
_original: Callable[..., Any] | None = None  # vLLM's own apply_top_k_top_p, kept by install()


def top_k_top_p(logits, k, p, *, first_k: int = FIRST_K):
    """Same contract as vLLM's apply_top_k_top_p (may update `logits` in place)."""
    import torch

    vocab = logits.shape[-1]
    if p is None or first_k >= vocab or (k is not None and bool((k > first_k).any())):
        return _vllm(logits, k, p)
    vals, idx = logits.topk(first_k, dim=-1)  # descending
    if k is not None:  # top-k first, renormalized (as vLLM)
        vals = vals.masked_fill(torch.arange(first_k).unsqueeze(0) >= k.unsqueeze(1), float("-inf"))
        lse = vals.logsumexp(-1, keepdim=True)
    else:
        lse = logits.logsumexp(-1, keepdim=True)
    probs = (vals.float() - lse.float()).exp()
    cum = probs.cumsum(-1)
    # Covered rows: the first tokens hold mass >= p by a margin float rounding cannot cross;
    # p = 1 (no top-p for that request) keeps every token with non-zero mass: vLLM's sort.
    covered = (cum[:, -1] >= p + MARGIN) & (p < 1) if k is None else torch.ones_like(p, dtype=torch.bool)
    keep = (cum - probs) < p.unsqueeze(1)
    keep[:, 0] = True  # at least one token, as vLLM
    out = torch.full_like(logits, float("-inf"))
    out.scatter_(1, idx, vals.masked_fill(~keep, float("-inf")))
    if not bool(covered.all()):  # the rest: vLLM's sort, row by row subset
        rows = (~covered).nonzero().squeeze(1)
        out[rows] = _vllm(logits[rows].clone(), None, p[rows])
    logits.copy_(out)
    return logits


def _vllm(logits, k, p):
    """vLLM's own apply_top_k_top_p, which install() keeps before patching ours in."""
    assert _original is not None, "vllm_topp.install() has not run"
    return _original(logits, k, p)


def install() -> bool:
    """Patch vLLM's CPU top-k/top-p; idempotent. False where not applied."""
    global _original
    if os.environ.get("LOOP_VLLM_FAST_TOPP", "1") == "0":
        return False
    from vllm.platforms import current_platform
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    if not current_platform.is_cpu() or not hasattr(mod, "apply_top_k_top_p"):
        return False
    if _original is None:
        _original = mod.apply_top_k_top_p
    mod.apply_top_k_top_p = top_k_top_p
    return True
